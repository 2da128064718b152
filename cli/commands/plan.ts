import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
import { ARCHITECTURES, parseConfig, type Architecture } from '../../src/model/config.ts';
import { formatPlan, planServing } from '../../src/model/plan.ts';
import { presetConfig, PRESETS } from '../../src/model/presets.ts';
import { readJsonFile } from '../checkpoint.ts';
import { numberInRange, oneOf } from '../options.ts';

export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('print what serving a model costs (params, table bytes, bytes per token) without building anything')
    .argument('[dir-or-config]', 'a checkpoint folder or a config.json')
    .option('--preset <name>', `a named shape: ${Object.keys(PRESETS).join(', ')}`, oneOf(Object.keys(PRESETS)))
    .option('--arch <arch>', 'override the architecture', oneOf(ARCHITECTURES))
    .option(
      '--beta <β>',
      'with --preset memoryllm-1b --arch flex: Flex-β·h², an FFN-C of β·d² params moved out of FFN-M (default 3)',
      numberInRange(0, 1000),
    )
    .option('--json', 'print JSON')
    .action((source: string | undefined, opts: { preset?: string; arch?: Architecture; beta?: number; json?: boolean }) => {
      if (!source === !opts.preset) throw new InputError('give either a checkpoint folder / config.json or --preset, not both or neither');
      if (opts.beta !== undefined && !opts.preset)
        throw new InputError("--beta sizes a preset's flex; a checkpoint's config gives its own widths");
      let raw: object;
      if (opts.preset) raw = presetConfig(opts.preset, opts.arch, opts.beta);
      else {
        if (!existsSync(source!)) throw new InputError(`not found: ${source}`);
        const path = statSync(source!).isDirectory() ? join(source!, 'config.json') : source!;
        raw = readJsonFile(path, 'config.json') as object;
        if (opts.arch) raw = { ...raw, architecture: opts.arch };
      }
      const plan = planServing(parseConfig(raw, source ?? `preset ${opts.preset}`));
      console.log(opts.json ? JSON.stringify(plan, null, 2) : formatPlan(plan));
    });
}
