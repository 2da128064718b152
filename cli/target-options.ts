import type { Command } from 'commander';
import type { TargetOptions } from './targets.ts';

/** The flags every storage command takes to reach its target. */
export function withTargetFlags(command: Command): Command {
  return command
    .option('--endpoint <url>', 'S3 endpoint (default: $FLEXMEM_S3_ENDPOINT or $AWS_ENDPOINT_URL)')
    .option('--region <name>', 'S3 region (default: $AWS_REGION or "auto")')
    .option('--persist-to <dir>', "wrangler dev's state folder, for local targets", '.wrangler/state/v3');
}

export const targetOptions = (opts: { endpoint?: string; region?: string; persistTo?: string }): TargetOptions => ({
  endpoint: opts.endpoint,
  region: opts.region,
  persistTo: opts.persistTo,
});
