/**
 * publish, versions, status, rollback, gc and patch through the real CLI, against the S3
 * protocol (s3rver) and against local R2 (wrangler dev's state), verified by reading storage back.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localBundle } from '../cli/publish.ts';
import { openTarget, type OpenTarget } from '../cli/targets.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { bundleKey, pointerKey } from '../src/storage/object-store.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { buildBundle } from '../cli/build-bundle.ts';

const dir = tempDir();
let s3: RunningS3;
let bundleA: string;
let bundleB: string;

beforeAll(async () => {
  s3 = await startS3('flexmem-store');
  bundleA = await buildTinyBundle(dir.path, 'meki', { reference: false }, 'bundle-a');
  const checkpointB = join(dir.path, 'checkpoint-b');
  writeTinyCheckpoint(checkpointB, 'meki', { rope_theta: 5000 });
  bundleB = join(dir.path, 'bundle-b');
  await buildBundle(checkpointB, bundleB, { dtype: 'int8', reference: false, progress: false });
});
afterAll(async () => {
  await s3?.close();
  dir.remove();
});

const s3Env = () => ({
  ...process.env,
  FLEXMEM_S3_ENDPOINT: s3.options.endpoint,
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
});

const s3TargetOptions = () => ({
  endpoint: s3.options.endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
});

async function cli(args: string[]) {
  const result = await flexmemAsync(args, s3Env());
  return { ...result, stderr: result.stderr.trim() };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe.each([
  [
    'S3 protocol (s3rver)',
    () => ({
      target: 's3://flexmem-store/team/models',
      flags: [] as string[],
      open: () => openTarget('s3://flexmem-store/team/models', s3TargetOptions()),
    }),
  ],
  [
    'local R2',
    () => ({
      target: 'local',
      flags: ['--persist-to', join(dir.path, 'wrangler-state')],
      open: () => openTarget('local', { persistTo: join(dir.path, 'wrangler-state') }),
    }),
  ],
])('against %s', (_, setup) => {
  let target: string;
  let flags: string[];
  const run = (...args: string[]) => cli([...args, ...flags]);
  const a = () => localBundle(bundleA).manifest;
  const b = () => localBundle(bundleB).manifest;

  beforeAll(async () => {
    ({ target, flags } = setup());
  });
  const withStore = async <T>(body: (t: OpenTarget) => Promise<T>): Promise<T> => {
    const opened = await setup().open();
    try {
      return await body(opened);
    } finally {
      await opened.close();
    }
  };

  it('publishes: every object under its version, verified, then the pointer; a second publish uploads nothing', async () => {
    const first = await run('publish', bundleA, '--to', target, '--model', 'news');
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/uploaded 4 objects .* all verified; news -> /); // graph, tokenizer, table, row checksums
    await withStore(async ({ store }) => {
      const manifest = a();
      for (const object of [manifest.objects.compute, manifest.objects.tokenizer, ...manifest.tables!.shards, manifest.tables!.checksums]) {
        expect(sha256((await store.get(bundleKey(manifest.version, object.path)))!)).toBe(object.sha256);
      }
      expect(JSON.parse(new TextDecoder().decode((await store.get(pointerKey('news')))!)).version).toBe(manifest.version);
      expect(await store.get(bundleKey(manifest.version, 'publishing.json'))).toBeNull();
    });
    const again = await run('publish', bundleA, '--to', target, '--model', 'news');
    expect(again.stdout).toMatch(/already published: nothing uploaded/);
  });

  it('lists versions with size and date, and rolls back without uploading', async () => {
    expect((await run('publish', bundleB, '--to', target, '--model', 'news')).status).toBe(0);
    const versions = JSON.parse((await run('versions', '--at', target, '--json')).stdout);
    expect(versions.map((v: { version: string }) => v.version).sort()).toEqual([a().version, b().version].sort());
    expect(versions.find((v: { version: string }) => v.version === b().version).currentFor).toEqual(['news']);
    expect((await run('status', '--at', target)).stdout).toMatch(new RegExp(`news: pointer -> ${b().version}.*serves ${b().version}`));
    const rollback = await run('rollback', '--at', target, '--to', a().version, '--model', 'news');
    expect(rollback.stdout).toBe(`news: ${b().version} -> ${a().version}\n`);
    expect(await withStore(async ({ store }) => (await new Catalog(store).pointer('news'))!.version)).toBe(a().version);
  });

  it('patches: a new version that uploads only the edited rows and shares the rest', async () => {
    const edits = join(dir.path, 'edits.json');
    writeFileSync(
      edits,
      JSON.stringify({
        edits: [
          { token: ' the', op: 'ablate' },
          { token: 7, op: 'copy', from: 8, layers: [1] },
        ],
      }),
    );
    const patch = await run('patch', a().version, '--edits', edits, '--to', target);
    expect(patch.status, patch.stderr).toBe(0);
    const version = /patch (\w+) of/.exec(patch.stdout)![1];
    await withStore(async ({ store }) => {
      expect((await store.list(bundleKey(version, ''))).sort()).toEqual([
        bundleKey(version, 'manifest.json'),
        bundleKey(version, 'overrides.bin'),
        bundleKey(version, 'published.json'),
      ]);
      const catalog = new Catalog(store);
      const manifest = await catalog.manifest(version);
      expect(manifest.base).toBe(a().version);
      expect(manifest.tables!.shards.every((s) => s.from === a().version)).toBe(true);
      expect(manifest.overrides!.tokens).toHaveLength(2);
      expect((await catalog.pointer('news'))!.version).toBe(version);
    });
  });

  it('gc keeps the current version, the base of a patch and the newest; refuses to delete the current one', async () => {
    const current = JSON.parse((await run('status', '--at', target, '--json')).stdout)[0].version;
    const refused = await run('gc', '--at', target, '--delete', current);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`^flexmem: refusing to delete ${current}: it is current for news$`));
    const gc = await run('gc', '--at', target, '--keep', '0', '--grace-minutes', '0');
    expect(gc.stdout).toMatch(new RegExp(`keep   ${a().version}  \\(base of ${current}\\)`));
    expect(gc.stdout).toMatch(new RegExp(`deleted ${b().version}`));
    await withStore(async ({ store }) => {
      expect(await store.list(bundleKey(b().version, ''))).toEqual([]);
      expect((await new Catalog(store).versions()).map((v) => v.version).sort()).toEqual([a().version, current].sort());
    });
  });

  it('refuses unknown versions and malformed edits with one line', async () => {
    const edits = join(dir.path, 'bad-edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ token: 99999, op: 'ablate' }] }));
    expect((await run('patch', a().version, '--edits', edits, '--to', target)).stderr).toMatch(
      /^flexmem: .*edit 1: unknown token id 99999 \(vocabulary is 0-511\)$/,
    );
    writeFileSync(edits, JSON.stringify({ edits: [{ token: 5, op: 'scale', factor: 2, layers: [4] }] }));
    expect((await run('patch', a().version, '--edits', edits, '--to', target)).stderr).toMatch(
      /^flexmem: .*edit 1: layer 4 is out of range \(memory layers: 0, 1, 2, 3\)$/,
    );
    writeFileSync(edits, JSON.stringify({ edits: [{ token: 5, op: 'melt' }] }));
    expect((await run('patch', a().version, '--edits', edits, '--to', target)).stderr).toMatch(/^flexmem: .*edits\.0\.op: /);
    expect((await run('rollback', '--at', target, '--to', 'f00d', '--model', 'news')).stderr).toBe(
      'flexmem: unknown version f00d (not a complete version in this store; see `flexmem versions`)',
    );
  });
});

describe('faults', () => {
  const target = 's3://flexmem-store/faults';

  it('refuses a corrupted local object before uploading anything', async () => {
    const copy = join(dir.path, 'corrupt-bundle');
    await buildTinyBundle(dir.path, 'flex', { reference: false }, 'corrupt-bundle');
    const shard = join(copy, 'tables', 'rows-00000.bin');
    const bytes = readFileSync(shard);
    bytes[100] ^= 0xff;
    writeFileSync(shard, bytes);
    const result = await cli(['publish', copy, '--to', target, '--model', 'corrupt']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^flexmem: .*rows-00000\.bin does not match the sha256 in its manifest \(corrupted\?\); nothing was published$/,
    );
    expect(JSON.parse((await cli(['versions', '--at', target, '--json'])).stdout)).toEqual([]);
  });

  it('a publisher killed halfway leaves the pointer and lists no new version; publishing again resumes', async () => {
    expect((await cli(['publish', bundleA, '--to', target, '--model', 'big'])).status).toBe(0);
    const checkpoint = join(dir.path, 'big-checkpoint');
    writeTinyCheckpoint(checkpoint, 'memoryllm', { vocab_size: 60000 });
    const big = join(dir.path, 'big-bundle');
    await buildBundle(checkpoint, big, { dtype: 'f32', reference: false, progress: false, shardBytes: 8 << 20 });
    const { version } = localBundle(big).manifest;
    const child = spawn('node', ['bin/flexmem.js', 'publish', big, '--to', target, '--model', 'big'], { env: s3Env(), stdio: 'ignore' });
    const store = (await openTarget(target, s3TargetOptions())).store;
    // Kill it once the first table shard has landed, while the others are still to come.
    while (!(await store.list(bundleKey(version, 'tables/'))).length) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const catalog = new Catalog(store);
    expect((await catalog.pointer('big'))!.version).toBe(localBundle(bundleA).manifest.version);
    expect((await catalog.versions()).map((v) => v.version)).not.toContain(version);
    const resumed = await cli(['publish', big, '--to', target, '--model', 'big']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/[1-9]\d* already there, all verified; big -> /);
    expect((await catalog.pointer('big'))!.version).toBe(version);
  });
});
