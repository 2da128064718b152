import { basename } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
import { MODEL_NAME } from '../../src/storage/object-store.ts';
import { regionEndpoint, selectRegions } from '../../infra/regions.ts';
import { localBundle, publishVersion, type PublishResult } from '../publish.ts';
import { targetOptions, withTargetFlags } from '../target-options.ts';
import { withTarget } from '../targets.ts';

interface PublishFlags {
  to?: string;
  regions?: string;
  prefix: string;
  model?: string;
  endpoint?: string;
  region?: string;
  persistTo?: string;
  progress: boolean;
}

const describe = (r: PublishResult) =>
  r.alreadyPublished
    ? `version ${r.version} was already published: nothing uploaded`
    : `uploaded ${r.uploadedObjects} objects (${(r.uploadedBytes / 1e6).toFixed(2)} MB), ${r.skippedObjects} already there, all verified`;

export function registerPublish(program: Command): void {
  withTargetFlags(
    program
      .command('publish')
      .description('upload a bundle as an immutable version, verify it, then point the model at it')
      .argument('<bundle>', 'bundle folder')
      .option('--to <target>', 's3://bucket/prefix or local[://bucket]')
      .option('--regions <list>', 'all, or a comma-separated list of regions from infra/regions.json')
      .option('--prefix <prefix>', 'key prefix inside each region bucket (with --regions)', '')
      .option('--model <name>', 'model whose pointer to flip (default: the bundle folder name)')
      .option('--no-progress', 'no progress bar'),
  ).action(async (dir: string, flags: PublishFlags) => {
    if (!flags.to === !flags.regions) throw new InputError('give either --to <target> or --regions <all|list>');
    const model = flags.model ?? basename(dir.replace(/\/+$/, ''));
    if (!MODEL_NAME.test(model)) throw new InputError(`invalid model name ${JSON.stringify(model)} (letters, digits, . _ -)`);
    const { manifest, manifestBytes, payloads } = localBundle(dir);
    const progress = flags.progress && process.stderr.isTTY;
    if (flags.to) {
      const result = await withTarget(flags.to, targetOptions(flags), (t) =>
        publishVersion(t.store, manifest, manifestBytes, payloads, { model, progress }),
      );
      console.log(`${flags.to}: ${describe(result)}; ${model} -> ${result.version}`);
      return;
    }
    // Per region: each flips its own pointer only after its own upload verified.
    let failed = 0;
    for (const region of selectRegions(flags.regions!)) {
      const target = `s3://${region.bucket}/${flags.prefix}`;
      try {
        const options = { ...targetOptions(flags), endpoint: regionEndpoint(region, flags.endpoint) };
        const result = await withTarget(target, options, (t) =>
          publishVersion(t.store, manifest, manifestBytes, payloads, { model, progress }),
        );
        console.log(`${region.name}: ${describe(result)}; ${model} -> ${result.version}`);
      } catch (error) {
        failed++;
        console.log(`${region.name}: FAILED (${(error as Error).message}); pointer unchanged`);
      }
    }
    if (failed) throw new InputError(`${failed} region(s) failed; their pointers were not changed`);
  });
}
