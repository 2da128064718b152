/** Regions: one source of truth, wrangler environments that match it and build, per-region publishing. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTarget } from '../cli/targets.ts';
import { provisioningPlan } from '../infra/provision.ts';
import { loadRegions } from '../infra/regions.ts';
import { syncedWranglerToml, WRANGLER_TOML } from '../infra/sync-wrangler.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';

const regions = loadRegions();

function run(command: string, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args);
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c));
    child.stderr.on('data', (c: Buffer) => (output += c));
    child.on('close', (status) => resolve({ status, output }));
  });
}

describe('wrangler.toml', () => {
  it('has one environment per region, generated from infra/regions.json', () => {
    expect(readFileSync(WRANGLER_TOML, 'utf8')).toBe(syncedWranglerToml());
    for (const r of regions) expect(readFileSync(WRANGLER_TOML, 'utf8')).toContain(`[env.${r.name}]`);
  });

  it.each(regions.map((r) => r.name))('builds the %s environment (wrangler deploy --dry-run --env)', async (name) => {
    const result = await run('npx', ['wrangler', 'deploy', '--dry-run', '--env', name]);
    expect(result.status, result.output).toBe(0);
    const region = regions.find((r) => r.name === name)!;
    expect(result.output).toContain(`env.BUNDLES (${region.bucket}${region.jurisdiction ? ` (${region.jurisdiction})` : ''})`);
    expect(result.output).toContain(`env.ROWS_KV (${region.kvNamespaceId})`);
  });

  it('has a provisioning plan that creates every bucket (with its jurisdiction) and KV namespace', async () => {
    const plan = provisioningPlan(regions).map((c) => c.join(' '));
    expect(plan).toContain('wrangler r2 bucket create flexmem-bundles-eu --jurisdiction eu');
    expect(plan.filter((c) => c.startsWith('wrangler kv namespace create'))).toHaveLength(regions.length);
    const dry = await run('npx', ['tsx', 'infra/provision.ts', '--dry-run']);
    expect(dry.status).toBe(0);
    expect(dry.output).toContain('nothing is created');
  });
});

describe('flexmem publish --regions', () => {
  const dir = tempDir();
  let s3: RunningS3;
  let bundle: string;
  // The apac bucket is missing: that region must fail alone and keep its pointer.
  beforeAll(async () => {
    s3 = await startS3('flexmem-bundles-eu', '', ['flexmem-bundles-us']);
    bundle = await buildTinyBundle(dir.path, 'flex', { reference: false }, 'regional');
  });
  afterAll(async () => {
    await s3?.close();
    dir.remove();
  });

  it('replicates to each region and flips each pointer only after that region verified', async () => {
    const env = {
      ...process.env,
      FLEXMEM_S3_ENDPOINT: s3.options.endpoint,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_REGION: 'us-east-1',
    };
    const result = await flexmemAsync(['publish', bundle, '--regions', 'all', '--model', 'news'], env);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/^eu: uploaded 4 objects .* all verified; news -> \w+$/m);
    expect(result.stdout).toMatch(/^us: uploaded 4 objects .* all verified; news -> \w+$/m);
    expect(result.stdout).toMatch(/^apac: FAILED \(.*\); pointer unchanged$/m);
    expect(result.stderr.trim()).toBe('flexmem: 1 region(s) failed; their pointers were not changed');
    for (const bucket of ['flexmem-bundles-eu', 'flexmem-bundles-us']) {
      const target = await openTarget(`s3://${bucket}`, {
        endpoint: s3.options.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      });
      expect((await new Catalog(target.store).pointer('news'))?.version).toMatch(/^\w{20}$/);
      await target.close();
    }
  });
});
