/** Regions: one source of truth, wrangler environments that match it and build, per-region publishing. */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localBundle, ownObjects, publishBundle } from '../cli/publish.ts';
import { openTarget, type OpenTarget } from '../cli/targets.ts';
import { provisioningPlan } from '../infra/provision.ts';
import { loadRegions, regionEndpoint, selectRegions, type Region } from '../infra/regions.ts';
import { syncedWranglerToml, WRANGLER_TOML } from '../infra/sync-wrangler.ts';
import { InputError } from '../src/errors.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { bundleKey } from '../src/storage/object-store.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { childEnv, snapshot, WireProxy } from './helpers/storage-probes.ts';

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

describe('regionEndpoint and selectRegions, with R2_ACCOUNT_ID set and unset here', () => {
  const saved = process.env.R2_ACCOUNT_ID;
  afterAll(() => {
    if (saved === undefined) delete process.env.R2_ACCOUNT_ID;
    else process.env.R2_ACCOUNT_ID = saved;
  });
  const eu = regions.find((r) => r.jurisdiction === 'eu')!;
  const us = regions.find((r) => r.name === 'us')!;

  it('derives the endpoint from the account (the jurisdiction on its own host) only when R2_ACCOUNT_ID is set', () => {
    delete process.env.R2_ACCOUNT_ID;
    expect(regionEndpoint(eu, 'http://fallback:1')).toBe('http://fallback:1');
    expect(regionEndpoint(us)).toBeUndefined();
    process.env.R2_ACCOUNT_ID = 'acct1234';
    expect(regionEndpoint(eu, 'http://fallback:1')).toBe('https://acct1234.eu.r2.cloudflarestorage.com');
    expect(regionEndpoint(us, 'http://fallback:1')).toBe('https://acct1234.r2.cloudflarestorage.com');
    process.env.R2_ACCOUNT_ID = '';
    expect(regionEndpoint(eu, 'http://fallback:1'), 'empty counts as unset').toBe('http://fallback:1');
  });

  it('selects all regions, or the ones named in the order given; an unknown name is refused with the list', () => {
    expect(selectRegions('all', regions).map((r) => r.name)).toEqual(['eu', 'us', 'apac']);
    expect(selectRegions('apac, eu', regions).map((r) => r.name)).toEqual(['apac', 'eu']);
    expect(() => selectRegions('eu,mars', regions)).toThrow(InputError);
    expect(() => selectRegions('eu,mars', regions)).toThrow('unknown region "mars" (regions: eu, us, apac)');
  });
});

describe.concurrent('flexmem publish --regions (every region bucket in s3rver, behind a logging proxy)', () => {
  const dir = tempDir();
  let s3: RunningS3;
  let proxy: WireProxy;
  let previousDir: string;
  let bundle: string;
  let previous: string;
  let next: string;
  /** A preload for the child: resolves nothing under r2.cloudflarestorage.com, and records what was asked. */
  let dnsHook: string;
  // The parent's environment names an account, as a developer's shell may: the children must not inherit it.
  const saved = process.env.R2_ACCOUNT_ID;

  beforeAll(async () => {
    process.env.R2_ACCOUNT_ID = 'inherited-from-the-parent';
    s3 = await startS3('flexmem-bundles-eu', '', ['flexmem-bundles-us', 'flexmem-bundles-apac']);
    proxy = await WireProxy.start(s3.options.endpoint);
    previousDir = await buildTinyBundle(dir.path, 'meki', { reference: false }, 'previous');
    bundle = await buildTinyBundle(dir.path, 'flex', { reference: false }, 'regional');
    previous = localBundle(previousDir).manifest.version;
    next = localBundle(bundle).manifest.version;
    dnsHook = join(dir.path, 'r2-dns-hook.mjs');
    writeFileSync(
      dnsHook,
      `import dns from 'node:dns';
import { appendFileSync } from 'node:fs';
const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  if (typeof options === 'function') [options, callback] = [{}, options];
  if (!String(hostname).endsWith('.r2.cloudflarestorage.com')) return lookup.call(this, hostname, options, callback);
  appendFileSync(process.env.FLEXMEM_TEST_DNS_LOG, hostname + '\\n');
  const error = Object.assign(new Error('getaddrinfo ENOTFOUND ' + hostname), { code: 'ENOTFOUND', hostname });
  process.nextTick(callback, error);
};
`,
    );
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env.R2_ACCOUNT_ID;
    else process.env.R2_ACCOUNT_ID = saved;
    await proxy?.close();
    await s3?.close();
    dir.remove();
  });

  const credentials = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
  /** The CLI with exactly these variables (childEnv: no AWS_*, FLEXMEM_* or R2_* inherited). */
  const publish = (args: string[], vars: Record<string, string> = {}) =>
    flexmemAsync(['publish', bundle, '--model', 'news', '--endpoint', proxy.url, ...args], childEnv({ ...credentials, ...vars }));

  async function withRegion<T>(region: Region, prefix: string, body: (t: OpenTarget) => Promise<T>): Promise<T> {
    const target = await openTarget(`s3://${region.bucket}/${prefix}/`, {
      endpoint: s3.options.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    try {
      return await body(target);
    } finally {
      await target.close();
    }
  }

  /** Every region serves `previous` under `prefix` before the test publishes. */
  async function servePrevious(prefix: string, only = regions): Promise<void> {
    for (const region of only) await withRegion(region, prefix, ({ store }) => publishBundle(store, previousDir, { model: 'news' }));
  }

  /** What a region holds under `prefix`: the pointer, the listed versions, and whether `next` verified. */
  const regionState = (region: Region, prefix: string) =>
    withRegion(region, prefix, async ({ store }) => {
      const catalog = new Catalog(store);
      const held = await snapshot(store, bundleKey(next, ''));
      const manifest = localBundle(bundle).manifest;
      return {
        pointer: (await catalog.pointer('news'))?.version ?? null,
        listed: (await catalog.versions()).map((v) => v.version).sort(),
        nextVerified: ownObjects(manifest).every((o) => held[bundleKey(next, o.path)] === o.sha256),
      };
    });

  const flipped = () => ({ pointer: next, listed: [previous, next].sort(), nextVerified: true });
  // Graph, optimized graph and its weights, tokenizer, table shard, row checksums and lens: every object the version owns.
  const line = (name: string) =>
    new RegExp(`^${name}: uploaded 7 objects \\([\\d.]+ MB\\), 0 already there, all verified; news -> ${next}$`);

  it('a subset of regions: only those, in the order given; the others are not touched', async ({ expect }) => {
    // The parent names an account; the child's environment does not (the endpoint given is used).
    expect(process.env.R2_ACCOUNT_ID).toBe('inherited-from-the-parent');
    expect(childEnv(credentials).R2_ACCOUNT_ID).toBeUndefined();
    await servePrevious('subset');
    const since = proxy.log.length;
    const result = await publish(['--regions', 'apac,eu', '--prefix', 'subset']);
    expect(result.status, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(line('apac'));
    expect(lines[1]).toMatch(line('eu'));
    const us = regions.find((r) => r.name === 'us')!;
    expect(
      proxy.log.slice(since).filter((r) => r.path.startsWith(`/${us.bucket}/subset/`)),
      'no request to us',
    ).toEqual([]);
    expect(await regionState(us, 'subset')).toEqual({ pointer: previous, listed: [previous], nextVerified: false });
    for (const name of ['apac', 'eu']) expect(await regionState(regions.find((r) => r.name === name)!, 'subset')).toEqual(flipped());
  });

  it('all regions (R2_ACCOUNT_ID unset: the endpoint given): one whose read-back does not verify keeps its pointer and lists nothing new; the others flip; the summary says which', async ({
    expect,
  }) => {
    const us = regions.find((r) => r.name === 'us')!;
    await servePrevious('verify');
    // Every object us reads back under this prefix arrives with its first byte flipped.
    const honest = proxy.corrupt(new RegExp(`^/${us.bucket}/verify/bundles/`));
    const result = await publish(['--regions', 'all', '--prefix', 'verify']);
    expect(result.status).toBe(1);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(line('eu'));
    expect(lines[1]).toBe(
      `us: FAILED (bundles/${next}/compute.onnx does not match its sha256 after upload (corrupted in transit?); the pointer was not changed); pointer unchanged`,
    );
    expect(lines[2]).toMatch(line('apac'));
    expect(result.stderr.trim()).toBe('flexmem: 1 region(s) failed; their pointers were not changed');
    expect(await regionState(us, 'verify')).toEqual({ pointer: previous, listed: [previous], nextVerified: false });
    // us stopped right after its first object's read-back: the marker and that object (whose stored bytes are right).
    const held = await withRegion(us, 'verify', ({ store }) => snapshot(store, bundleKey(next, '')));
    expect(Object.keys(held).sort()).toEqual([bundleKey(next, 'compute.onnx'), bundleKey(next, 'publishing.json')]);
    expect(held[bundleKey(next, 'compute.onnx')]).toBe(localBundle(bundle).manifest.objects.compute.sha256);
    for (const name of ['eu', 'apac']) expect(await regionState(regions.find((r) => r.name === name)!, 'verify')).toEqual(flipped());

    // Control: the failure was the read-back. Publishing us again with honest reads: the object
    // that did land is verified and kept, the rest uploaded, the pointer flipped.
    honest();
    const again = await publish(['--regions', 'us', '--prefix', 'verify']);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(
      new RegExp(`^us: uploaded 6 objects \\([\\d.]+ MB\\), 1 already there, all verified; news -> ${next}\\n$`),
    );
    expect(await regionState(us, 'verify')).toEqual(flipped());
  });

  it('R2_ACCOUNT_ID set explicitly: each region goes to its account endpoint (eu to its jurisdiction host), not the one given', async ({
    expect,
  }) => {
    const log = join(dir.path, 'dns.log');
    writeFileSync(log, '');
    const since = proxy.log.length;
    const result = await publish(['--regions', 'all', '--prefix', 'account'], {
      R2_ACCOUNT_ID: 'acct1234',
      NODE_OPTIONS: `--import ${dnsHook}`,
      FLEXMEM_TEST_DNS_LOG: log,
    });
    expect(result.status).toBe(1);
    const lines = result.stdout.trim().split('\n');
    expect(lines.map((l) => l.replace(/ \(.*\)/, ''))).toEqual(regions.map((r) => `${r.name}: FAILED; pointer unchanged`));
    expect(lines[0]).toContain('acct1234.eu.r2.cloudflarestorage.com');
    expect(result.stderr.trim()).toBe('flexmem: 3 region(s) failed; their pointers were not changed');
    const asked = [...new Set(readFileSync(log, 'utf8').trim().split('\n'))];
    expect(asked).toEqual(['acct1234.eu.r2.cloudflarestorage.com', 'acct1234.r2.cloudflarestorage.com']);
    expect(
      proxy.log.slice(since).filter((r) => r.path.includes('/account/')),
      'nothing went to the endpoint given',
    ).toEqual([]);
  });
});
