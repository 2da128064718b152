/**
 * publish, versions, status and rollback through the real CLI, against the S3 protocol (s3rver,
 * behind a proxy that logs every request) and against local R2 (wrangler dev's state), verified
 * by reading storage back. Writes are counted where they land: on the wire for S3, from each R2
 * object's upload version for local R2; never read from what a command printed.
 * Elsewhere: patches by value (patch-values.test.ts), gc (gc-rules.test.ts), interrupted and
 * resumed publishes (publish-protocol.test.ts), regions (regions.test.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { publishPatch } from '../cli/patch.ts';
import { localBundle, ownObjects, publishBundle } from '../cli/publish.ts';
import { DEFAULT_LOCAL_BUCKET, openTarget, type OpenTarget } from '../cli/targets.ts';
import { InputError } from '../src/errors.ts';
import { Catalog, PUBLISHING_FILE } from '../src/storage/catalog.ts';
import { bundleKey, pointerKey } from '../src/storage/object-store.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { childEnv, recordingStore, WireProxy } from './helpers/storage-probes.ts';

const BUCKET = 'flexmem-store';
const dir = tempDir();
let s3: RunningS3;
let proxy: WireProxy;
let bundleA: string;
let bundleB: string;

beforeAll(async () => {
  s3 = await startS3(BUCKET);
  proxy = await WireProxy.start(s3.options.endpoint);
  bundleA = await buildTinyBundle(dir.path, 'meki', { reference: false }, 'bundle-a');
  const checkpointB = join(dir.path, 'checkpoint-b');
  writeTinyCheckpoint(checkpointB, 'meki', { rope_theta: 5000 });
  bundleB = join(dir.path, 'bundle-b');
  await buildBundle(checkpointB, bundleB, { dtype: 'int8', reference: false, progress: false });
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
  dir.remove();
});

const env = () => childEnv({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });

async function cli(args: string[]) {
  const result = await flexmemAsync(args, env());
  return { ...result, stderr: result.stderr.trim() };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

interface Target {
  spec: string;
  flags: string[];
  open(): Promise<OpenTarget>;
  /** Runs `body` and returns the writes it made to the store, as sorted `PUT key` / `DELETE key`. */
  writesDuring(body: () => Promise<unknown>): Promise<string[]>;
}

/** S3: the writes seen by the proxy in front of s3rver. */
function s3Target(prefix: string): Target {
  const wire = `/${BUCKET}/${prefix}/`;
  return {
    spec: `s3://${BUCKET}/${prefix}`,
    flags: ['--endpoint', proxy.url],
    open: () =>
      openTarget(`s3://${BUCKET}/${prefix}`, {
        endpoint: s3.options.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      }),
    async writesDuring(body) {
      const since = proxy.log.length;
      await body();
      return proxy.writes(wire, since).sort();
    },
  };
}

/**
 * Local R2: R2 gives every upload a new object version, so a key whose version changed was written
 * (an object put and deleted in between leaves no trace, e.g. publishing.json).
 */
function localTarget(state: string): Target {
  const versions = async () => {
    const mf = new Miniflare({
      modules: true,
      script: 'export default { fetch() { return new Response(null, { status: 404 }); } }',
      r2Buckets: { BUCKET: DEFAULT_LOCAL_BUCKET },
      defaultPersistRoot: state,
    });
    try {
      const r2 = await mf.getR2Bucket('BUCKET');
      const out = new Map<string, string>();
      let cursor: string | undefined;
      do {
        const page = await r2.list({ cursor });
        for (const o of page.objects) out.set(o.key, o.version);
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
      return out;
    } finally {
      await mf.dispose();
    }
  };
  return {
    spec: 'local',
    flags: ['--persist-to', state],
    open: () => openTarget('local', { persistTo: state }),
    async writesDuring(body) {
      const before = await versions();
      await body();
      const after = await versions();
      const puts = [...after].filter(([key, version]) => before.get(key) !== version).map(([key]) => `PUT ${key}`);
      const deletes = [...before.keys()].filter((key) => !after.has(key)).map((key) => `DELETE ${key}`);
      return [...puts, ...deletes].sort();
    },
  };
}

describe.each([
  ['S3 protocol (s3rver)', () => s3Target('team/models')],
  ['local R2', () => localTarget(join(dir.path, 'wrangler-state'))],
])('against %s', (_, setup) => {
  let target: Target;
  const run = (...args: string[]) => cli([...args, ...target.flags]);
  const a = () => localBundle(bundleA).manifest;
  const b = () => localBundle(bundleB).manifest;
  const withStore = async <T>(body: (t: OpenTarget) => Promise<T>): Promise<T> => {
    const opened = await target.open();
    try {
      return await body(opened);
    } finally {
      await opened.close();
    }
  };

  beforeAll(() => {
    target = setup();
  });

  it('publishes every object under its version, verified, then the pointer; publishing again uploads nothing', async () => {
    let first!: Awaited<ReturnType<typeof cli>>;
    const firstWrites = await target.writesDuring(async () => {
      first = await run('publish', bundleA, '--to', target.spec, '--model', 'news');
    });
    expect(first.status, first.stderr).toBe(0);
    const manifest = a();
    // Control for the counting: it sees every object, the manifest, published.json and the pointer.
    for (const key of [...ownObjects(manifest).map((o) => o.path), 'manifest.json', 'published.json'])
      expect(firstWrites).toContain(`PUT ${bundleKey(manifest.version, key)}`);
    expect(firstWrites).toContain(`PUT ${pointerKey('news')}`);
    await withStore(async ({ store }) => {
      for (const object of ownObjects(manifest)) {
        expect(sha256((await store.get(bundleKey(manifest.version, object.path)))!), object.path).toBe(object.sha256);
      }
      expect(new TextDecoder().decode((await store.get(bundleKey(manifest.version, 'manifest.json')))!)).toBe(
        readFileSync(join(bundleA, 'manifest.json'), 'utf8'),
      );
      expect((await new Catalog(store).pointer('news'))?.version).toBe(manifest.version);
      expect(await store.get(bundleKey(manifest.version, PUBLISHING_FILE))).toBeNull();
    });

    let again!: Awaited<ReturnType<typeof cli>>;
    const againWrites = await target.writesDuring(async () => {
      again = await run('publish', bundleA, '--to', target.spec, '--model', 'news');
    });
    expect(again.status, again.stderr).toBe(0);
    expect(againWrites, 'the only write is the pointer, rewritten').toEqual([`PUT ${pointerKey('news')}`]);
  });

  it('lists versions with size, date and what each serves; rolls back writing nothing but the pointer', async () => {
    const started = Date.now();
    expect((await run('publish', bundleB, '--to', target.spec, '--model', 'news')).status).toBe(0);
    const [listing, status] = await Promise.all([run('versions', '--at', target.spec, '--json'), run('status', '--at', target.spec)]);
    const versions = JSON.parse(listing.stdout) as { version: string; publishedAt: string; bytes: number; currentFor: string[] }[];
    expect(versions.map((v) => v.version)).toEqual([b().version, a().version]); // newest first
    for (const [v, m] of [
      [versions[0], b()],
      [versions[1], a()],
    ] as const) {
      expect(v.bytes).toBe(ownObjects(m).reduce((n, o) => n + o.bytes, 0));
      expect(Date.parse(v.publishedAt)).toBeLessThanOrEqual(Date.now());
    }
    expect(Date.parse(versions[0].publishedAt)).toBeGreaterThanOrEqual(started - 1000);
    expect(versions.map((v) => v.currentFor)).toEqual([['news'], []]);
    expect(status.stdout).toMatch(new RegExp(`^news: pointer -> ${b().version} \\(set .*\\); the worker serves ${b().version} within`));

    let rollback!: Awaited<ReturnType<typeof cli>>;
    const writes = await target.writesDuring(async () => {
      rollback = await run('rollback', '--at', target.spec, '--to', a().version, '--model', 'news');
    });
    expect(rollback.stdout).toBe(`news: ${b().version} -> ${a().version}\n`);
    expect(writes).toEqual([`PUT ${pointerKey('news')}`]);
    expect(await withStore(async ({ store }) => (await new Catalog(store).pointer('news'))!.version)).toBe(a().version);
  });
});

describe('refusals (S3)', () => {
  it('refuses unknown versions and malformed edits with one line, writing nothing', async () => {
    const t = s3Target('refusals');
    const opened = await t.open();
    const version = (await publishBundle(opened.store, bundleA, { model: 'news' })).version;
    await opened.close();
    const edits = (name: string, value: unknown) => {
      const path = join(dir.path, `${name}.json`);
      writeFileSync(path, JSON.stringify(value));
      return path;
    };
    const [unknownId, badLayer, badOp] = [
      edits('unknown-id', { edits: [{ token: 99999, op: 'ablate' }] }),
      edits('bad-layer', { edits: [{ token: 5, op: 'scale', factor: 2, layers: [4] }] }),
      edits('bad-op', { edits: [{ token: 5, op: 'melt' }] }),
    ];
    // The edits, in process: each refused before anything is written.
    const store = await t.open();
    try {
      const recording = recordingStore(store.store);
      const refusal = (file: string) =>
        publishPatch(recording.store, version, file, 'news').then(
          () => 'published',
          (e: unknown) => (e instanceof InputError ? e.message : `not an InputError: ${e}`),
        );
      expect(await refusal(badLayer)).toMatch(/edit 1: layer 4 is out of range \(memory layers: 0, 1, 2, 3\)$/);
      expect(await refusal(badOp)).toMatch(/edits\.0\.op: /);
      expect(recording.writes).toEqual([]);
    } finally {
      await store.close();
    }
    // Through the CLI: one line on stderr, exit 1, no write on the wire.
    let results!: Awaited<ReturnType<typeof cli>>[];
    const writes = await t.writesDuring(async () => {
      results = await Promise.all([
        cli(['patch', version, '--edits', unknownId, '--to', t.spec, ...t.flags]),
        cli(['rollback', '--at', t.spec, '--to', 'f00d', '--model', 'news', ...t.flags]),
      ]);
    });
    expect(results.map((r) => r.status)).toEqual([1, 1]);
    expect(results[0].stderr).toMatch(/^flexmem: .*edit 1: unknown token id 99999 \(vocabulary is 0-511\)$/);
    expect(results[1].stderr).toBe('flexmem: unknown version f00d (not a complete version in this store; see `flexmem versions`)');
    expect(writes).toEqual([]);
  });

  it('refuses a corrupted local object before sending anything', async () => {
    const t = s3Target('corrupt');
    await buildTinyBundle(dir.path, 'flex', { reference: false }, 'corrupt-bundle');
    const copy = join(dir.path, 'corrupt-bundle');
    const shard = join(copy, 'tables', 'rows-00000.bin');
    const bytes = readFileSync(shard);
    bytes[100] ^= 0xff;
    writeFileSync(shard, bytes);
    let result!: Awaited<ReturnType<typeof cli>>;
    const since = proxy.log.length;
    const writes = await t.writesDuring(async () => {
      result = await cli(['publish', copy, '--to', t.spec, '--model', 'corrupt', ...t.flags]);
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^flexmem: .*rows-00000\.bin does not match the sha256 in its manifest \(corrupted\?\); nothing was published$/,
    );
    expect(writes).toEqual([]);
    expect(
      proxy.log.slice(since).filter((r) => r.path.startsWith(`/${BUCKET}/corrupt/`)),
      'not even a read',
    ).toEqual([]);
    const opened = await t.open();
    expect(await opened.store.list('')).toEqual([]);
    await opened.close();
  });
});
