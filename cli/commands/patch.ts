import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { Catalog } from '../../src/storage/catalog.ts';
import { publishPatch } from '../patch.ts';
import { publishBundle } from '../publish.ts';
import { targetOptions, withTargetFlags } from '../target-options.ts';
import { withTarget } from '../targets.ts';

export function registerPatch(program: Command): void {
  withTargetFlags(
    program
      .command('patch')
      .description("publish a knowledge edit: a version overriding a few tokens' memory rows, sharing everything else with its base")
      .argument('<bundle-or-version>', 'a version in the target, or a local bundle folder (published first if needed)')
      .requiredOption('--edits <file>', 'edits.json (see src/memory/memory-edits.ts for the format)')
      .requiredOption('--to <target>', 's3://bucket/prefix or local[://bucket]')
      .option('--model <name>', 'model to point at the patch (default: the models serving the base)'),
  ).action(
    async (base: string, flags: { edits: string; to: string; model?: string; endpoint?: string; region?: string; persistTo?: string }) => {
      await withTarget(flags.to, targetOptions(flags), async ({ store }) => {
        const baseVersion = existsSync(join(base, 'manifest.json')) ? (await publishBundle(store, base)).version : base;
        const catalog = new Catalog(store);
        const models = flags.model
          ? [flags.model]
          : (await catalog.pointers()).filter((p) => p.version === baseVersion).map((p) => p.model);
        const result = await publishPatch(store, baseVersion, flags.edits, models[0]);
        for (const model of models.slice(1)) await catalog.setPointer(model, result.version);
        const pointed = models.length
          ? `; ${models.join(', ')} -> ${result.version}`
          : ' (no model points at it yet; use rollback --to to serve it)';
        console.log(`patch ${result.version} of ${baseVersion}: uploaded ${(result.uploadedBytes / 1e3).toFixed(1)} KB of rows${pointed}`);
      });
    },
  );
}
