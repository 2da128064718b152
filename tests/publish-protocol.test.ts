/**
 * The publish protocol (README, "Updating what the model knows"): publishing.json, every object
 * (each read back and verified), the manifest, published.json, publishing.json removed, and only
 * then the model's pointer. The publisher is stopped before each of these writes in turn, and the
 * store is read after each stop: the pointer still names the previous version, the new version is
 * listed only once its published.json exists, and a new publish resumes, writing only what is
 * missing. Stopped two ways: a store that refuses the write (in process, against s3rver and local
 * R2), and the real CLI killed with SIGKILL while the request of that write is held on the wire.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localBundle, ownObjects, publishBundle } from '../cli/publish.ts';
import { miniflareR2Store } from '../cli/stores/miniflare-r2.ts';
import { openTarget } from '../cli/targets.ts';
import { MANIFEST_FILE, type BundleManifest } from '../src/bundle/manifest.ts';
import { Catalog, PUBLISHED_FILE, PUBLISHING_FILE } from '../src/storage/catalog.ts';
import { bundleKey, pointerKey, type ObjectStore } from '../src/storage/object-store.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import {
  childEnv,
  recordingStore,
  snapshot,
  StoppedBeforeWrite,
  stoppingStore,
  WireProxy,
  type StoreWrite,
} from './helpers/storage-probes.ts';
import { until } from './helpers/deadline.ts';

const BUCKET = 'flexmem-protocol';
const MODEL = 'news';
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** Where the publisher is stopped: before this write of the protocol. */
interface Step {
  id: string;
  name: string;
  before: (m: BundleManifest) => StoreWrite;
}
const put = (key: string): StoreWrite => ({ op: 'put', key });
const STEPS: Step[] = [
  { id: 'no-object', name: 'after publishing.json, before any object', before: (m) => put(bundleKey(m.version, m.objects.compute.path)) },
  {
    id: 'some-objects',
    name: 'after some objects (graph, tokenizer, first table shard), before the second shard',
    before: (m) => put(bundleKey(m.version, m.tables!.shards[1].path)),
  },
  { id: 'all-objects', name: 'after all objects, before the manifest', before: (m) => put(bundleKey(m.version, MANIFEST_FILE)) },
  { id: 'manifest', name: 'after the manifest, before published.json', before: (m) => put(bundleKey(m.version, PUBLISHED_FILE)) },
  {
    id: 'published',
    name: 'after published.json, before publishing.json is removed',
    before: (m) => ({ op: 'delete', key: bundleKey(m.version, PUBLISHING_FILE) }),
  },
  { id: 'pointer', name: 'after published.json, before the pointer', before: () => put(pointerKey(MODEL)) },
];

const dir = tempDir();
let s3: RunningS3;
let proxy: WireProxy;
let mf: Miniflare;
/** The version the model serves before, and the bundle being published (several table shards). */
let previousDir: string;
let nextDir: string;
let previous: BundleManifest;
let next: BundleManifest;

const localBuckets = ['full', ...STEPS.map((s) => s.id)];
const binding = (name: string) => `B_${name.replace(/-/g, '_')}`;

beforeAll(async () => {
  s3 = await startS3(BUCKET);
  proxy = await WireProxy.start(s3.options.endpoint);
  mf = new Miniflare({
    modules: true,
    script: 'export default { fetch() { return new Response(null, { status: 404 }); } }',
    r2Buckets: Object.fromEntries(localBuckets.map((name) => [binding(name), `protocol-${name}`])),
  });
  previousDir = await buildTinyBundle(dir.path, 'meki', { reference: false }, 'previous');
  nextDir = await buildTinyBundle(dir.path, 'flex', { reference: false, shardBytes: 40_000 }, 'next');
  previous = localBundle(previousDir).manifest;
  next = localBundle(nextDir).manifest;
  expect(next.tables!.shards.length).toBeGreaterThanOrEqual(3);
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
  await mf?.dispose();
  dir.remove();
});

/** Every write of a complete publish of `next`, in order: the protocol. */
function protocol(): StoreWrite[] {
  const v = next.version;
  return [
    put(bundleKey(v, PUBLISHING_FILE)),
    ...ownObjects(next).map((o) => put(bundleKey(v, o.path))),
    put(bundleKey(v, MANIFEST_FILE)),
    put(bundleKey(v, PUBLISHED_FILE)),
    { op: 'delete', key: bundleKey(v, PUBLISHING_FILE) },
    put(pointerKey(MODEL)),
  ];
}

/** The keys of `next` after `writes` on top of `keys`. */
function apply(keys: string[], writes: StoreWrite[]): string[] {
  const out = new Set(keys);
  for (const w of writes) {
    if (!w.key.startsWith(bundleKey(next.version, ''))) continue;
    if (w.op === 'put') out.add(w.key);
    else out.delete(w.key);
  }
  return [...out].sort();
}

/** What the store holds once the publisher stopped before write `index` of the protocol. */
function stoppedState(index: number) {
  const done = protocol().slice(0, index);
  const keys = apply([], done);
  const complete = keys.includes(bundleKey(next.version, PUBLISHED_FILE));
  // A resumed publish: nothing but the pointer once complete; else the whole protocol except the
  // objects already there (read back and verified, not uploaded again).
  const objectKeys = new Set(ownObjects(next).map((o) => bundleKey(next.version, o.path)));
  const resume: StoreWrite[] = complete
    ? [put(pointerKey(MODEL))]
    : protocol().filter((w) => !(objectKeys.has(w.key) && keys.includes(w.key)));
  const objectsThere = ownObjects(next).filter((o) => keys.includes(bundleKey(next.version, o.path))).length;
  return { keys, complete, resume, objectsThere, finalKeys: apply(keys, resume) };
}

/** Reads the store after a stop: what `next` left, the pointer, the listing. */
async function expectStopped(store: ObjectStore, index: number, check = expect): Promise<void> {
  const state = stoppedState(index);
  const held = await snapshot(store, bundleKey(next.version, ''));
  check(Object.keys(held).sort()).toEqual(state.keys);
  for (const o of ownObjects(next)) {
    const key = bundleKey(next.version, o.path);
    if (key in held) check(held[key], `${key} is there, so it was verified`).toBe(o.sha256);
  }
  const catalog = new Catalog(store);
  check((await catalog.pointer(MODEL))?.version, 'the pointer still names the previous version').toBe(previous.version);
  const listed = await catalog.versions();
  check(listed.map((v) => v.version).sort(), 'listed iff published.json exists').toEqual(
    (state.complete ? [previous.version, next.version] : [previous.version]).sort(),
  );
  check(listed.find((v) => v.version === previous.version)?.currentFor).toEqual([MODEL]);
  const all = await catalog.allVersions();
  check(all.find((v) => v.version === next.version)?.complete ?? false).toBe(state.complete);
}

/** Reads the store after the resumed publish: everything verified, the pointer flipped. */
async function expectResumed(store: ObjectStore, index: number, check = expect): Promise<void> {
  const state = stoppedState(index);
  const held = await snapshot(store, bundleKey(next.version, ''));
  // Stopped before its removal, publishing.json stays: the resume finds the version complete and
  // only flips the pointer (harmless: completeness is published.json's).
  check(Object.keys(held).sort()).toEqual(state.finalKeys);
  for (const o of ownObjects(next)) check(held[bundleKey(next.version, o.path)], o.path).toBe(o.sha256);
  check(new TextDecoder().decode((await store.get(bundleKey(next.version, MANIFEST_FILE)))!)).toBe(
    readFileSync(join(nextDir, MANIFEST_FILE), 'utf8'),
  );
  const catalog = new Catalog(store);
  check((await catalog.pointer(MODEL))?.version).toBe(next.version);
  const listed = await catalog.versions();
  check(listed.map((v) => v.version).sort()).toEqual([previous.version, next.version].sort());
  check(listed.find((v) => v.version === next.version)?.currentFor).toEqual([MODEL]);
}

const s3Target = (name: string) =>
  openTarget(`s3://${BUCKET}/${name}`, { endpoint: s3.options.endpoint, region: 'us-east-1', credentials: CREDENTIALS });

describe.each([
  ['S3 protocol (s3rver)', async (name: string) => s3Target(`inproc-${name}`)],
  ['local R2', async (name: string) => ({ store: miniflareR2Store(await mf.getR2Bucket(binding(name))), close: async () => {} })],
])('in process, against %s', (_, open) => {
  it('a complete publish makes exactly the protocol writes, in order; publishing again writes only the pointer', async () => {
    const target = await open('full');
    try {
      await publishBundle(target.store, previousDir, { model: MODEL });
      const first = recordingStore(target.store);
      const result = await publishBundle(first.store, nextDir, { model: MODEL });
      expect(first.writes).toEqual(protocol());
      expect(result).toMatchObject({ uploadedObjects: ownObjects(next).length, skippedObjects: 0, alreadyPublished: false });
      await expectResumed(target.store, protocol().length);

      // Control for the counting: the recorder does see writes when there are some (above), and
      // here sees only the pointer, rewritten: nothing under bundles/.
      const again = recordingStore(target.store);
      const before = await snapshot(target.store, 'bundles/');
      expect((await publishBundle(again.store, nextDir, { model: MODEL })).alreadyPublished).toBe(true);
      expect(again.writes).toEqual([put(pointerKey(MODEL))]);
      expect(await snapshot(target.store, 'bundles/')).toEqual(before);
    } finally {
      await target.close();
    }
  });

  it.each(STEPS)('stopped $name: pointer and listing unchanged, then the publish resumes', async (step) => {
    const target = await open(step.id);
    try {
      await publishBundle(target.store, previousDir, { model: MODEL });
      const stop = step.before(next);
      const index = protocol().findIndex((w) => w.op === stop.op && w.key === stop.key);
      expect(index, 'the stop is a write of the protocol').toBeGreaterThan(0);
      const stopping = stoppingStore(target.store, (w) => w.op === stop.op && w.key === stop.key);
      await expect(publishBundle(stopping.store, nextDir, { model: MODEL })).rejects.toThrow(StoppedBeforeWrite);
      expect(stopping.stopped()).toBe(true);
      await expectStopped(target.store, index);

      const resume = recordingStore(target.store);
      const result = await publishBundle(resume.store, nextDir, { model: MODEL });
      const state = stoppedState(index);
      expect(resume.writes).toEqual(state.resume);
      expect(result.alreadyPublished).toBe(state.complete);
      if (!state.complete) {
        expect(result.skippedObjects).toBe(state.objectsThere);
        expect(result.uploadedObjects).toBe(ownObjects(next).length - state.objectsThere);
      }
      await expectResumed(target.store, index);
    } finally {
      await target.close();
    }
  });
});

describe('the real CLI, killed (SIGKILL) while the request of the next write is held', () => {
  /** Steps from which the CLI resumes (an incomplete version, a complete one); the others resume in process. */
  const CLI_RESUMES = ['some-objects', 'pointer'];
  const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it.concurrent.for(STEPS)('killed $name: pointer and listing unchanged, then the publish resumes', async (step, { expect }) => {
    const prefix = `kill-${step.id}`;
    const wire = `/${BUCKET}/${prefix}/`;
    const target = await s3Target(prefix);
    try {
      await publishBundle(target.store, previousDir, { model: MODEL });
      const stop = step.before(next);
      const index = protocol().findIndex((w) => w.op === stop.op && w.key === stop.key);
      const release = proxy.hold(new RegExp(`^${stop.op === 'put' ? 'PUT' : 'DELETE'} ${escapeRegExp(wire + stop.key)}(\\?|$)`));
      const args = ['publish', nextDir, '--to', `s3://${BUCKET}/${prefix}`, '--model', MODEL, '--endpoint', proxy.url];
      const env = childEnv({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });
      const child = spawn('node', ['bin/flexmem.js', ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      child.on('exit', (code, signal) => (exit = { code, signal }));
      try {
        // The child signals the step by sending that write's request, which the proxy holds.
        await until(
          () => proxy.log.some((r) => r.held && r.path.startsWith(wire + stop.key)),
          `the publisher's request to ${stop.op} ${stop.key}`,
          {
            timeoutMs: 60_000,
            giveUp: () => (exit ? `the publisher exited (${exit.code}) first: ${stderr}` : null),
          },
        );
      } finally {
        child.kill('SIGKILL');
        await until(() => exit !== undefined, 'the killed publisher to exit', { timeoutMs: 10_000 });
        release();
      }
      expect(exit!.signal).toBe('SIGKILL');
      expect(proxy.writes(wire).at(-1), 'the held write is the last one sent').toBe(`${stop.op === 'put' ? 'PUT' : 'DELETE'} ${stop.key}`);
      await expectStopped(target.store, index, expect);

      const state = stoppedState(index);
      if (!CLI_RESUMES.includes(step.id)) {
        // From the other states the publish resumes in process (cheaper), its writes counted at the store.
        const resume = recordingStore(target.store);
        await publishBundle(resume.store, nextDir, { model: MODEL });
        expect(resume.writes).toEqual(state.resume);
      } else {
        const since = proxy.log.length;
        const resumed = await flexmemAsync(args, env);
        expect(resumed.status, resumed.stderr).toBe(0);
        expect(proxy.writes(wire, since), 'the resume writes only what is missing').toEqual(
          state.resume.map((w) => `${w.op === 'put' ? 'PUT' : 'DELETE'} ${w.key}`),
        );
        if (state.complete)
          expect(resumed.stdout).toBe(
            `s3://${BUCKET}/${prefix}: version ${next.version} was already published: nothing uploaded; ${MODEL} -> ${next.version}\n`,
          );
        else
          expect(resumed.stdout).toMatch(
            new RegExp(
              `^s3://${BUCKET}/${prefix}: uploaded ${ownObjects(next).length - state.objectsThere} objects \\([\\d.]+ MB\\), ` +
                `${state.objectsThere} already there, all verified; ${MODEL} -> ${next.version}\\n$`,
            ),
          );
      }
      await expectResumed(target.store, index, expect);
    } finally {
      await target.close();
    }
  });
});
