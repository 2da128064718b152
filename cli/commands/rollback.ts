import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
import { Catalog } from '../../src/storage/catalog.ts';
import { targetOptions, withTargetFlags } from '../target-options.ts';
import { withTarget } from '../targets.ts';

/** The model a command means: the one given, or the only one in the store. */
export async function chooseModel(catalog: Catalog, model: string | undefined): Promise<string> {
  if (model) return model;
  const models = (await catalog.pointers()).map((p) => p.model);
  if (models.length !== 1)
    throw new InputError(`the store has ${models.length} models (${models.join(', ') || 'none'}); say which with --model`);
  return models[0];
}

export function registerRollback(program: Command): void {
  withTargetFlags(
    program
      .command('rollback')
      .description('point a model back at an earlier complete version (no upload, no redeploy)')
      .requiredOption('--at <target>', 's3://bucket/prefix or local[://bucket]')
      .requiredOption('--to <version>', 'a complete version in the store')
      .option('--model <name>', 'the model (default: the only one)'),
  ).action(async (flags: { at: string; to: string; model?: string; endpoint?: string; region?: string; persistTo?: string }) => {
    await withTarget(flags.at, targetOptions(flags), async ({ store }) => {
      const catalog = new Catalog(store);
      const model = await chooseModel(catalog, flags.model);
      const before = await catalog.pointer(model);
      await catalog.setPointer(model, flags.to);
      console.log(`${model}: ${before?.version ?? '(none)'} -> ${flags.to}`);
    });
  });
}
