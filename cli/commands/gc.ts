import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
import { Catalog } from '../../src/storage/catalog.ts';
import { integerAtLeast, numberInRange } from '../options.ts';
import { targetOptions, withTargetFlags } from '../target-options.ts';
import { withTarget } from '../targets.ts';

interface GcFlags {
  at: string;
  keep: number;
  graceMinutes: number;
  delete?: string[];
  dryRun?: boolean;
  endpoint?: string;
  region?: string;
  persistTo?: string;
}

export function registerGc(program: Command): void {
  withTargetFlags(
    program
      .command('gc')
      .description('delete old versions; never the current one, a base a patch builds on, or anything in the grace period')
      .requiredOption('--at <target>', 's3://bucket/prefix or local[://bucket]')
      .option('--keep <n>', 'keep the n newest complete versions', integerAtLeast(0), 3)
      .option('--grace-minutes <m>', 'never touch versions or uploads younger than this', numberInRange(0, 1e7), 60)
      .option('--delete <versions...>', 'delete exactly these versions (refused if any must be kept)')
      .option('--dry-run', 'print the plan, delete nothing'),
  ).action(async (flags: GcFlags) => {
    await withTarget(flags.at, targetOptions(flags), async ({ store }) => {
      const catalog = new Catalog(store);
      const plan = await catalog.planGc(flags.keep, flags.graceMinutes * 60_000);
      let deletions = plan.delete;
      if (flags.delete) {
        const known = new Set((await catalog.allVersions()).map((v) => v.version));
        for (const version of flags.delete) {
          if (!known.has(version)) throw new InputError(`unknown version ${version}`);
          const kept = plan.keep.find((k) => k.version === version);
          if (kept) throw new InputError(`refusing to delete ${version}: it is ${kept.reason}`);
        }
        deletions = flags.delete;
      }
      for (const k of plan.keep) console.log(`keep   ${k.version}  (${k.reason})`);
      for (const version of deletions) {
        if (!flags.dryRun) await catalog.deleteVersion(version);
        console.log(`${flags.dryRun ? 'would delete' : 'deleted'} ${version}`);
      }
      if (!deletions.length) console.log('nothing to delete');
    });
  });
}
