import type { Command } from 'commander';
import { Catalog } from '../../src/storage/catalog.ts';
import { targetOptions, withTargetFlags } from '../target-options.ts';
import { withTarget } from '../targets.ts';

export function registerVersions(program: Command): void {
  withTargetFlags(
    program
      .command('versions')
      .description('list the complete versions in a store: size, date, which model serves each')
      .requiredOption('--at <target>', 's3://bucket/prefix or local[://bucket]')
      .option('--model <name>', 'mark only what this model serves')
      .option('--json', 'print JSON'),
  ).action(async (flags: { at: string; model?: string; json?: boolean; endpoint?: string; region?: string; persistTo?: string }) => {
    await withTarget(flags.at, targetOptions(flags), async ({ store }) => {
      const versions = (await new Catalog(store).versions()).map((v) => ({
        ...v,
        currentFor: v.currentFor.filter((m) => !flags.model || m === flags.model),
      }));
      if (flags.json) return console.log(JSON.stringify(versions, null, 2));
      if (!versions.length) return console.log('no complete versions');
      for (const v of versions) {
        const current = v.currentFor.length ? `  <- current for ${v.currentFor.join(', ')}` : '';
        const base = v.base ? `  (patch of ${v.base})` : '';
        console.log(`${v.version}  ${v.publishedAt}  ${(v.bytes / 1e6).toFixed(2)} MB${base}${current}`);
      }
    });
  });

  withTargetFlags(
    program
      .command('status')
      .description('per model: the version its pointer names and what the worker will serve')
      .requiredOption('--at <target>', 's3://bucket/prefix or local[://bucket]')
      .option('--json', 'print JSON'),
  ).action(async (flags: { at: string; json?: boolean; endpoint?: string; region?: string; persistTo?: string }) => {
    await withTarget(flags.at, targetOptions(flags), async ({ store }) => {
      const catalog = new Catalog(store);
      const rows = await Promise.all(
        (await catalog.pointers()).map(async (p) => {
          const published = await catalog.published(p.version);
          return {
            model: p.model,
            version: p.version,
            pointerUpdatedAt: p.updatedAt,
            serves: published ? p.version : null,
            base: published?.base ?? null,
          };
        }),
      );
      if (flags.json) return console.log(JSON.stringify(rows, null, 2));
      if (!rows.length) return console.log('no models');
      for (const r of rows) {
        const serves = r.serves
          ? `serves ${r.serves}${r.base ? ` (patch of ${r.base})` : ''}`
          : 'serves NOTHING: the pointer names an incomplete version';
        console.log(`${r.model}: pointer -> ${r.version} (set ${r.pointerUpdatedAt}); the worker ${serves} within its pointer TTL`);
      }
    });
  });
}
