/**
 * gc, rule by rule, read from the store: the `--keep` newest, the grace period (a fixed clock for
 * the plan; timestamps hours away from the boundary for the CLI), incomplete uploads, versions a
 * model serves, bases of kept patches (transitively), `--dry-run` deleting nothing (no write on the
 * wire, the store unchanged), and `--delete` refused with the reason for any version that must stay.
 * Each rule has its control: the same versions without the rule are deleted.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishPatch } from '../cli/patch.ts';
import { publishBundle } from '../cli/publish.ts';
import { openTarget, type OpenTarget } from '../cli/targets.ts';
import { Catalog, PUBLISHED_FILE, PUBLISHING_FILE, type GcPlan } from '../src/storage/catalog.ts';
import { bundleKey, type ObjectStore } from '../src/storage/object-store.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { childEnv, recordingStore, snapshot, WireProxy } from './helpers/storage-probes.ts';

const BUCKET = 'flexmem-gc';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const dir = tempDir();
let s3: RunningS3;
let proxy: WireProxy;

beforeAll(async () => {
  s3 = await startS3(BUCKET);
  proxy = await WireProxy.start(s3.options.endpoint);
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
  dir.remove();
});

const target = (prefix: string) =>
  openTarget(`s3://${BUCKET}/${prefix}`, {
    endpoint: s3.options.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });

async function withTarget<T>(prefix: string, body: (t: OpenTarget) => Promise<T>): Promise<T> {
  const t = await target(prefix);
  try {
    return await body(t);
  } finally {
    await t.close();
  }
}

/** A version id (20 hex digits) from a short name, so that plans read: v('a') = 'a000…'. */
const v = (name: string) => name.padEnd(20, '0');

interface FakeVersion {
  /** Complete, published this long before `now`. */
  age?: number;
  base?: string;
  /** Incomplete: its publishing.json says it started this long before `now` (undefined: no marker). */
  startedAgo?: number;
}

/**
 * Writes a version as a publisher leaves it: a manifest and a table object, then published.json
 * (complete) or publishing.json (an upload in progress, or none: a crashed one). gc reads only
 * the keys and these two records.
 */
async function addVersion(store: ObjectStore, name: string, spec: FakeVersion, now: number): Promise<string> {
  const version = v(name);
  const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  await store.put(bundleKey(version, 'manifest.json'), json({ version }));
  await store.put(bundleKey(version, 'tables/rows-00000.bin'), new Uint8Array(64).fill(7));
  if (spec.age !== undefined) {
    const record = {
      version,
      publishedAt: new Date(now - spec.age).toISOString(),
      bytes: 64,
      ...(spec.base ? { base: v(spec.base) } : {}),
    };
    await store.put(bundleKey(version, PUBLISHED_FILE), json(record));
  } else if (spec.startedAgo !== undefined) {
    await store.put(bundleKey(version, PUBLISHING_FILE), json({ version, startedAt: new Date(now - spec.startedAgo).toISOString() }));
  }
  return version;
}

async function addVersions(store: ObjectStore, specs: Record<string, FakeVersion>, now: number): Promise<void> {
  for (const [name, spec] of Object.entries(specs)) await addVersion(store, name, spec, now);
}

/** A plan in short names: what is deleted, and why each other version is kept. */
const named = (plan: GcPlan) => ({
  delete: plan.delete.map((x) => x.replace(/0+$/, '')).sort(),
  keep: Object.fromEntries(plan.keep.map((k) => [k.version.replace(/0+$/, ''), k.reason.replace(/\b([0-9a-f])0{19}\b/g, '$1')])),
});

describe('the plan, rule by rule, with a fixed clock', () => {
  const now = new Date('2031-05-04T12:00:00.000Z');
  const at = now.getTime();

  it('keeps the N newest complete versions by publication time (not by id); keep 0 keeps none', async () => {
    await withTarget('plan-keep', async ({ store }) => {
      // Ids in an order that is neither the time order nor its reverse.
      await addVersions(store, { b: { age: 1 * HOUR }, d: { age: 2 * HOUR }, a: { age: 3 * HOUR }, c: { age: 4 * HOUR } }, at);
      const catalog = new Catalog(store);
      expect(named(await catalog.planGc(2, 0, now))).toEqual({
        delete: ['a', 'c'],
        keep: { b: 'one of the 2 newest', d: 'one of the 2 newest' },
      });
      expect(named(await catalog.planGc(3, 0, now)).delete).toEqual(['c']);
      expect(named(await catalog.planGc(0, 0, now))).toEqual({ delete: ['a', 'b', 'c', 'd'], keep: {} });
    });
  });

  it('keeps what is younger than the grace period, to the millisecond; grace 0 keeps nothing', async () => {
    await withTarget('plan-grace', async ({ store }) => {
      await addVersions(
        store,
        { a: { age: 10 * MINUTE }, b: { age: HOUR - 1 }, c: { age: HOUR }, d: { age: HOUR + 1 }, e: { age: 3 * HOUR } },
        at,
      );
      const catalog = new Catalog(store);
      expect(named(await catalog.planGc(0, HOUR, now))).toEqual({
        delete: ['c', 'd', 'e'],
        keep: { a: 'newer than the grace period', b: 'newer than the grace period' },
      });
      expect(named(await catalog.planGc(0, 0, now)).delete).toEqual(['a', 'b', 'c', 'd', 'e']);
      // The clock moves on: `a` is kept until it is exactly an hour old.
      expect(named(await catalog.planGc(0, HOUR, new Date(at + 50 * MINUTE - 1))).delete).toEqual(['b', 'c', 'd', 'e']);
      expect(named(await catalog.planGc(0, HOUR, new Date(at + 50 * MINUTE))).delete).toEqual(['a', 'b', 'c', 'd', 'e']);
    });
  });

  it('keeps an upload younger than the grace period; deletes an older one, one without its marker, and never counts them among the newest', async () => {
    await withTarget('plan-uploads', async ({ store }) => {
      await addVersions(store, { a: { startedAgo: 5 * MINUTE }, b: { startedAgo: 2 * HOUR }, c: {}, d: { age: 5 * HOUR } }, at);
      const catalog = new Catalog(store);
      expect(named(await catalog.planGc(0, HOUR, now))).toEqual({
        delete: ['b', 'c', 'd'],
        keep: { a: 'an upload newer than the grace period' },
      });
      expect(named(await catalog.planGc(10, 0, now))).toEqual({ delete: ['a', 'b', 'c'], keep: { d: 'one of the 10 newest' } });
      expect((await catalog.versions()).map((x) => x.version)).toEqual([v('d')]);
    });
  });

  it('keeps what a model serves, with every model that serves it, however old', async () => {
    await withTarget('plan-served', async ({ store }) => {
      await addVersions(store, { a: { age: 50 * HOUR }, b: { age: 40 * HOUR } }, at);
      const catalog = new Catalog(store);
      await catalog.setPointer('zeta', v('a'));
      await catalog.setPointer('alpha', v('a'));
      expect(named(await catalog.planGc(0, 0, now))).toEqual({ delete: ['b'], keep: { a: 'current for alpha, zeta' } });
      // Control: pointed elsewhere, it goes.
      await catalog.setPointer('zeta', v('b'));
      await catalog.setPointer('alpha', v('b'));
      expect(named(await catalog.planGc(0, 0, now)).delete).toEqual(['a']);
    });
  });

  it('keeps the bases of kept patches, transitively; the base of a deleted patch is deleted with it', async () => {
    await withTarget('plan-bases', async ({ store }) => {
      await addVersions(
        store,
        {
          a: { age: 9 * HOUR }, // ← b ← c (served)
          b: { age: 8 * HOUR, base: 'a' },
          c: { age: 7 * HOUR, base: 'b' },
          d: { age: 9 * HOUR }, // ← e, a patch nobody keeps
          e: { age: 8 * HOUR, base: 'd' },
          '1': { age: 9 * HOUR }, // ← 2, a patch kept by the grace period
          '2': { age: 10 * MINUTE, base: '1' },
        },
        at,
      );
      const catalog = new Catalog(store);
      await catalog.setPointer('news', v('c'));
      expect(named(await catalog.planGc(0, HOUR, now))).toEqual({
        delete: ['d', 'e'],
        keep: { a: 'base of c', b: 'base of c', c: 'current for news', '1': 'base of 2', '2': 'newer than the grace period' },
      });
    });
  });

  it('deletes a version published.json first, so that it is never listed half-deleted', async () => {
    await withTarget('plan-delete', async ({ store }) => {
      await addVersions(store, { a: { age: HOUR }, b: { age: HOUR } }, at);
      const recording = recordingStore(store);
      await new Catalog(recording.store).deleteVersion(v('a'));
      expect(recording.writes[0]).toEqual({ op: 'delete', key: bundleKey(v('a'), PUBLISHED_FILE) });
      expect(recording.writes.map((w) => w.key).sort()).toEqual(
        ['manifest.json', PUBLISHED_FILE, 'tables/rows-00000.bin'].map((f) => bundleKey(v('a'), f)).sort(),
      );
      expect(Object.keys(await snapshot(store, 'bundles/'))).toEqual(
        ['manifest.json', PUBLISHED_FILE, 'tables/rows-00000.bin'].map((f) => bundleKey(v('b'), f)),
      );
    });
  });
  it('with real bundles and a real patch: keeps the served patch and its base, deletes the other version', async () => {
    const [a, b] = [
      await buildTinyBundle(dir.path, 'meki', { reference: false }, 'real-a'),
      await buildTinyBundle(dir.path, 'flex', { reference: false }, 'real-b'),
    ];
    await withTarget('plan-real', async ({ store }) => {
      const versionA = (await publishBundle(store, a, { model: 'news' })).version;
      const versionB = (await publishBundle(store, b, { model: 'news' })).version;
      const edits = join(dir.path, 'gc-edits.json');
      writeFileSync(edits, JSON.stringify({ edits: [{ token: 7, op: 'ablate' }] }));
      const patch = (await publishPatch(store, versionA, edits, 'news')).version;
      const catalog = new Catalog(store);
      const plan = await catalog.planGc(0, 0);
      expect(plan.delete).toEqual([versionB]);
      expect(plan.keep).toEqual([
        { version: patch, reason: 'current for news' },
        { version: versionA, reason: `base of ${patch}` },
      ]);
      for (const version of plan.delete) await catalog.deleteVersion(version);
      expect(await store.list(bundleKey(versionB, ''))).toEqual([]);
      expect((await catalog.versions()).map((x) => x.version).sort()).toEqual([versionA, patch].sort());
      // The patch still reads: its shards are the base's.
      expect((await catalog.manifest(patch)).tables!.shards.every((s) => s.from === versionA)).toBe(true);
    });
  });
});

describe.concurrent('the CLI (S3 through a proxy that logs every request)', () => {
  const env = () => childEnv({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });
  const gc = (prefix: string, ...args: string[]) =>
    flexmemAsync(['gc', '--at', `s3://${BUCKET}/${prefix}`, '--endpoint', proxy.url, ...args], env());
  const lines = (text: string) =>
    text
      .trim()
      .split('\n')
      .map((l) => l.replace(/\b([0-9a-f])0{19}\b/g, '$1'))
      .sort();

  it('--dry-run deletes nothing (no write reaches the store); the real run deletes exactly what it announced', async ({ expect }) => {
    const prefix = 'cli-dry';
    const wire = `/${BUCKET}/${prefix}/`;
    await withTarget(prefix, async ({ store }) => {
      const now = Date.now();
      await addVersions(
        store,
        {
          a: { age: 3 * HOUR },
          b: { age: 2 * HOUR },
          c: { age: 45 * MINUTE },
          d: { age: 10 * MINUTE },
          e: { age: 5 * HOUR }, // served
          f: { startedAgo: 3 * HOUR },
          '1': { startedAgo: 5 * MINUTE },
        },
        now,
      );
      await new Catalog(store).setPointer('news', v('e'));
      const before = await snapshot(store);
      const since = proxy.log.length;
      const [sixty, thirty] = await Promise.all([
        gc(prefix, '--keep', '0', '--grace-minutes', '60', '--dry-run'),
        gc(prefix, '--keep', '0', '--grace-minutes', '30', '--dry-run'),
      ]);
      expect(sixty.status, sixty.stderr).toBe(0);
      expect(thirty.status, thirty.stderr).toBe(0);
      const kept = [
        'keep   e  (current for news)',
        'keep   d  (newer than the grace period)',
        'keep   1  (an upload newer than the grace period)',
      ];
      expect(lines(sixty.stdout)).toEqual(
        [...kept, 'keep   c  (newer than the grace period)', 'would delete a', 'would delete b', 'would delete f'].sort(),
      );
      expect(lines(thirty.stdout)).toEqual([...kept, 'would delete a', 'would delete b', 'would delete c', 'would delete f'].sort());
      expect(proxy.writes(wire, since), 'a dry run writes nothing').toEqual([]);
      expect(
        proxy.log.slice(since).some((r) => r.path.startsWith(wire)),
        'control: the dry runs did go through the proxy',
      ).toBe(true);
      expect(await snapshot(store)).toEqual(before);

      const real = await gc(prefix, '--keep', '0', '--grace-minutes', '60');
      expect(real.status, real.stderr).toBe(0);
      expect(lines(real.stdout)).toEqual(lines(sixty.stdout.replace(/would delete/g, 'deleted')));
      const after = await snapshot(store);
      const gone = ['a', 'b', 'f'].map(v);
      expect(after).toEqual(
        Object.fromEntries(Object.entries(before).filter(([key]) => !gone.some((x) => key.startsWith(bundleKey(x, ''))))),
      );
      expect(proxy.writes(wire, since).every((w) => w.startsWith('DELETE bundles/') && gone.some((x) => w.includes(x)))).toBe(true);
    });
  });

  it('--delete is refused, with the reason, for a served version, a kept patch’s base, a young one and one of the newest; nothing is deleted', async ({
    expect,
  }) => {
    const prefix = 'cli-refuse';
    const wire = `/${BUCKET}/${prefix}/`;
    await withTarget(prefix, async ({ store }) => {
      const now = Date.now();
      await addVersions(
        store,
        {
          a: { age: 10 * MINUTE }, // young
          b: { age: 2 * HOUR },
          c: { age: 5 * HOUR }, // served by news
          d: { age: 6 * HOUR, base: 'e' }, // a patch served by legacy
          e: { age: 7 * HOUR },
          f: { age: 9 * HOUR }, // nothing keeps it
        },
        now,
      );
      const catalog = new Catalog(store);
      await catalog.setPointer('news', v('c'));
      await catalog.setPointer('legacy', v('d'));
      const before = await snapshot(store);
      const since = proxy.log.length;
      const refusals = await Promise.all([
        gc(prefix, '--delete', v('c'), '--keep', '0', '--grace-minutes', '0'),
        gc(prefix, '--delete', v('e'), '--keep', '0', '--grace-minutes', '0'),
        gc(prefix, '--delete', v('a'), '--keep', '0'), // the default grace: 60 minutes
        // f alone could go; b is one of the 3 newest (a, b, c: the default keep), so neither goes.
        gc(prefix, '--delete', v('f'), v('b'), '--grace-minutes', '0'),
      ]);
      expect(refusals.map((r) => r.status)).toEqual([1, 1, 1, 1]);
      expect(refusals.map((r) => r.stderr)).toEqual([
        `flexmem: refusing to delete ${v('c')}: it is current for news\n`,
        `flexmem: refusing to delete ${v('e')}: it is base of ${v('d')}\n`,
        `flexmem: refusing to delete ${v('a')}: it is newer than the grace period\n`,
        `flexmem: refusing to delete ${v('b')}: it is one of the 3 newest\n`,
      ]);
      expect(refusals.map((r) => r.stdout)).toEqual(['', '', '', '']);
      expect(proxy.writes(wire, since)).toEqual([]);
      expect(await snapshot(store)).toEqual(before);

      // Control: f alone is deleted, and only f (the plan would take b too).
      const alone = await gc(prefix, '--delete', v('f'), '--keep', '0', '--grace-minutes', '0');
      expect(alone.status, alone.stderr).toBe(0);
      expect(alone.stdout).toMatch(new RegExp(`^deleted ${v('f')}$`, 'm'));
      expect(alone.stdout).not.toMatch(/deleted (?!f)/);
      expect(Object.keys(await snapshot(store)).sort()).toEqual(
        Object.keys(before)
          .filter((k) => !k.startsWith(bundleKey(v('f'), '')))
          .sort(),
      );
    });
  });
});
