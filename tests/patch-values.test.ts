/**
 * Knowledge edits checked by value: the override rows a patch stores are read back from the store,
 * decoded (src/bundle/row-codec.ts) and compared, value by value and layer by layer, with what each
 * edit makes of the base rows, also read from the store. All four ops (ablate, scale, copy, set from
 * a JSON file and from raw float32), each for every memory layer and for a subset. The comparison
 * itself is shown to fail when handed the wrong rows.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishPatch } from '../cli/patch.ts';
import { localBundle, publishBundle } from '../cli/publish.ts';
import { miniflareR2Store } from '../cli/stores/miniflare-r2.ts';
import { openTarget, type OpenTarget } from '../cli/targets.ts';
import type { BundleManifest } from '../src/bundle/manifest.ts';
import { decodeRow, type RowLayout } from '../src/bundle/row-codec.ts';
import { InputError } from '../src/errors.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { bundleKey, objectKey, type ObjectStore } from '../src/storage/object-store.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { childEnv, recordingStore } from './helpers/storage-probes.ts';

const BUCKET = 'flexmem-patch';
const MODEL = 'news';
const dir = tempDir();
let s3: RunningS3;
let mf: Miniflare;
let bundle: string;
let base: BundleManifest;
let layout: RowLayout;
/** Token id of " the", an edit given as a string. */
let theId: number;

type Op = { op: 'ablate' } | { op: 'scale'; factor: number } | { op: 'copy'; from: number } | { op: 'set'; values: Float32Array };
/** An edit as this test understands it: token ids, the chosen layers, the values of a `set`. */
type TestEdit = Op & { token: number; layers?: number[] };
type Rows = Map<number, Float32Array>;

const s3Target = (prefix: string) =>
  openTarget(`s3://${BUCKET}/${prefix}`, {
    endpoint: s3.options.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });

beforeAll(async () => {
  s3 = await startS3(BUCKET);
  mf = new Miniflare({
    modules: true,
    script: 'export default { fetch() { return new Response(null, { status: 404 }); } }',
    r2Buckets: { BUCKET: 'flexmem-patch-local' },
  });
  // Several table shards, so that edits read rows from different shards.
  bundle = await buildTinyBundle(dir.path, 'meki', { reference: false, shardBytes: 40_000 }, 'base');
  base = localBundle(bundle).manifest;
  layout = base.tables!.layout;
  expect(base.tables!.shards.length).toBeGreaterThan(2);
  expect(layout.dtype, 'f32 tables: every value is compared exactly').toBe('f32');
  expect(layout.slices.map((s) => s.layer)).toEqual([0, 1, 2, 3]);
  const tokenizer = new TextTokenizer(JSON.parse(new TextDecoder().decode(localBundleFile('tokenizer.json'))));
  [theId] = tokenizer.encode(' the');
  expect(tokenizer.encode(' the')).toHaveLength(1);
});
afterAll(async () => {
  await s3?.close();
  await mf?.dispose();
  dir.remove();
});

function localBundleFile(path: string): Uint8Array {
  const { payloads } = localBundle(bundle);
  return payloads.find((p) => p.ref.path === path)!.read();
}

/** Values for `set`: distinct, not zero, not any table value. */
const setValues = (count: number, seed: number) => Float32Array.from({ length: count }, (_, i) => Math.fround((i - count / 2 + seed) / 7));

/** Writes edits.json (and the values files of its `set` edits) for `edits`; returns its path. */
function writeEdits(name: string, edits: TestEdit[], tokenAsString: Record<number, string> = {}): string {
  const json = edits.map((e, i) => {
    const token = tokenAsString[e.token] ?? e.token;
    const layers = e.layers ? { layers: e.layers } : {};
    if (e.op === 'set') {
      // One as JSON numbers, one as raw little-endian float32, alternately.
      const file = `${name}-values-${i}.${i % 2 ? 'f32' : 'json'}`;
      if (i % 2) writeFileSync(join(dir.path, file), new Uint8Array(e.values.buffer.slice(0)));
      else writeFileSync(join(dir.path, file), JSON.stringify([...e.values]));
      return { token, op: 'set', file, ...layers };
    }
    if (e.op === 'scale') return { token, op: 'scale', factor: e.factor, ...layers };
    if (e.op === 'copy') return { token, op: 'copy', from: e.from, ...layers };
    return { token, op: 'ablate', ...layers };
  });
  const path = join(dir.path, `${name}.json`);
  writeFileSync(path, JSON.stringify({ edits: json }));
  return path;
}

/** Rows of `ids` as the table of `manifest` stores them, range-read from the store and decoded. */
async function tableRows(store: ObjectStore, manifest: BundleManifest, ids: number[]): Promise<Rows> {
  const rows: Rows = new Map();
  const tables = manifest.tables!;
  for (const id of ids) {
    const shard = tables.shards.find((s) => id >= s.firstToken && id < s.firstToken + s.tokenCount)!;
    const bytes = await store.get(objectKey(manifest.version, shard), {
      offset: (id - shard.firstToken) * tables.layout.rowBytes,
      length: tables.layout.rowBytes,
    });
    const row = new Float32Array(tables.layout.rowValues);
    decodeRow(bytes!, tables.layout, row, 0);
    rows.set(id, row);
  }
  return rows;
}

/** The override rows of a patch, from the store: its overrides.bin, checked against its manifest, decoded. */
async function storedOverrides(store: ObjectStore, version: string): Promise<{ manifest: BundleManifest; rows: Rows }> {
  const manifest = await new Catalog(store).manifest(version);
  const ref = manifest.overrides!;
  const bytes = (await store.get(objectKey(version, ref)))!;
  expect(createHash('sha256').update(bytes).digest('hex')).toBe(ref.sha256);
  expect(bytes.byteLength).toBe(ref.tokens.length * manifest.tables!.layout.rowBytes);
  const rows: Rows = new Map();
  ref.tokens.forEach((id, i) => {
    const row = new Float32Array(manifest.tables!.layout.rowValues);
    decodeRow(bytes.subarray(i * layout.rowBytes), manifest.tables!.layout, row, 0);
    rows.set(id, row);
  });
  return { manifest, rows };
}

/**
 * What each edit makes of `current` (the rows before the patch), written independently of
 * cli/patch.ts: per memory layer, the chosen ones edited, the others left as they were.
 */
function expectedRows(current: Rows, edits: TestEdit[]): Rows {
  const out: Rows = new Map();
  for (const e of edits) {
    const row = current.get(e.token)!.slice();
    let used = 0;
    for (const s of layout.slices) {
      if (e.layers && !e.layers.includes(s.layer)) continue;
      for (let i = 0; i < s.width; i++) {
        const at = s.valueOffset + i;
        if (e.op === 'ablate') row[at] = 0;
        else if (e.op === 'scale') row[at] = Math.fround(row[at] * e.factor);
        else if (e.op === 'copy') row[at] = current.get(e.from)![at];
        else row[at] = e.values[used + i];
      }
      used += s.width;
    }
    out.set(e.token, row);
  }
  return out;
}

/** Every difference between expected and actual rows, one line per token and layer (exact float32 equality). */
function rowDifferences(expected: Rows, actual: Rows): string[] {
  const out: string[] = [];
  for (const id of expected.keys()) if (!actual.has(id)) out.push(`token ${id}: no override row`);
  for (const id of actual.keys()) if (!expected.has(id)) out.push(`token ${id}: an override row nobody asked for`);
  for (const [id, want] of expected) {
    const got = actual.get(id);
    if (!got) continue;
    for (const s of layout.slices) {
      for (let i = 0; i < s.width; i++) {
        const at = s.valueOffset + i;
        if (got[at] !== want[at]) {
          out.push(`token ${id} layer ${s.layer}: value ${i} is ${got[at]}, expected ${want[at]}`);
          break;
        }
      }
    }
  }
  return out;
}

/** Every op, each for all memory layers and for a subset; tokens in different table shards. */
function allOps(): TestEdit[] {
  return [
    { token: 10, op: 'ablate' },
    { token: 11, op: 'ablate', layers: [1, 3] },
    { token: 12, op: 'scale', factor: 0.5 },
    { token: 170, op: 'scale', factor: -2.5, layers: [0, 2] },
    { token: 171, op: 'copy', from: 400 },
    { token: 330, op: 'copy', from: 15, layers: [2] },
    { token: 331, op: 'set', values: setValues(64, 1) },
    { token: theId, op: 'set', values: setValues(32, 2), layers: [0, 3] },
  ];
}
const tokensRead = (edits: TestEdit[]) => [...new Set(edits.flatMap((e) => (e.op === 'copy' ? [e.token, e.from] : [e.token])))];

describe.each([
  [
    'the CLI against S3 (s3rver)',
    async () => s3Target('values'),
    async (_target: OpenTarget, editsPath: string) => {
      const env = childEnv({ AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' });
      const result = await flexmemAsync(
        ['patch', base.version, '--edits', editsPath, '--to', `s3://${BUCKET}/values`, '--endpoint', s3.options.endpoint],
        env,
      );
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^patch \\w{20} of ${base.version}: uploaded [\\d.]+ KB of rows; ${MODEL} -> \\w{20}\\n$`));
      return /^patch (\w+)/.exec(result.stdout)![1];
    },
  ],
  [
    'publishPatch against local R2',
    async (): Promise<OpenTarget> => ({ label: 'local', store: miniflareR2Store(await mf.getR2Bucket('BUCKET')), close: async () => {} }),
    async (target: OpenTarget, editsPath: string) => (await publishPatch(target.store, base.version, editsPath, MODEL)).version,
  ],
])('patched with %s', (_, open, patch) => {
  let patchVersion: string;

  it('stores, for every op on all layers and on a subset, exactly the rows each edit makes of the base rows', async () => {
    const target = await open();
    try {
      await publishBundle(target.store, bundle, { model: MODEL });
      const edits = allOps();
      expect(new Set(edits.map((e) => e.token)).size, 'one edit per token').toBe(edits.length);
      patchVersion = await patch(target, writeEdits('all-ops', edits, { [theId]: ' the' }));

      const before = await tableRows(target.store, base, tokensRead(edits));
      const { manifest, rows } = await storedOverrides(target.store, patchVersion);
      expect(manifest.overrides!.tokens).toEqual(edits.map((e) => e.token).sort((a, b) => a - b));
      expect(rowDifferences(expectedRows(before, edits), rows)).toEqual([]);

      // Only the rows (and the inspector's records of the edited tokens) were uploaded; everything else is the base's.
      expect((await target.store.list(bundleKey(patchVersion, ''))).sort()).toEqual(
        ['lens/overrides.bin', 'manifest.json', 'overrides.bin', 'published.json'].map((f) => bundleKey(patchVersion, f)),
      );
      expect(manifest.lens?.entries.from).toBe(base.version);
      expect(manifest.base).toBe(base.version);
      expect(
        [
          manifest.objects.compute,
          manifest.objects.computeOptimized!,
          manifest.objects.computeWeights!,
          manifest.objects.tokenizer,
          manifest.tables!.checksums,
          ...manifest.tables!.shards,
        ].map((o) => o.from),
      ).toEqual(Array(5 + base.tables!.shards.length).fill(base.version));
      const catalog = new Catalog(target.store);
      expect((await catalog.pointer(MODEL))?.version).toBe(patchVersion);
      expect((await catalog.published(patchVersion))?.base).toBe(base.version);
    } finally {
      await target.close();
    }
  });

  it('the comparison fails when given the wrong rows (negative controls)', async () => {
    const target = await open();
    try {
      const edits = allOps();
      const before = await tableRows(target.store, base, tokensRead(edits));
      const { rows } = await storedOverrides(target.store, patchVersion);
      const expected = expectedRows(before, edits);
      const edited = (diffs: string[]) => [...new Set(diffs.map((d) => Number(/^token (\d+)/.exec(d)![1])))].sort((a, b) => a - b);

      // The base rows instead of the patched ones: every edited token differs.
      const baseInstead: Rows = new Map(edits.map((e) => [e.token, before.get(e.token)!]));
      expect(edited(rowDifferences(expected, baseInstead))).toEqual(edits.map((e) => e.token).sort((a, b) => a - b));

      // Each subset edit applied to every layer instead: caught at a layer that should be untouched.
      const everyLayer = expectedRows(
        before,
        edits.map((e) => ({ ...e, layers: undefined, ...(e.op === 'set' ? { values: setValues(64, 2) } : {}) })),
      );
      for (const e of edits.filter((x) => x.layers)) {
        const wrong = new Map(rows).set(e.token, everyLayer.get(e.token)!);
        const untouched = layout.slices.map((s) => s.layer).filter((l) => !e.layers!.includes(l));
        expect(rowDifferences(expected, wrong).some((d) => untouched.some((l) => d.startsWith(`token ${e.token} layer ${l}:`)))).toBe(true);
      }

      // One value one float32 step off, a row missing, a row too many.
      const off = rows.get(12)!.slice();
      off[layout.slices[2].valueOffset + 5] = Math.fround(off[layout.slices[2].valueOffset + 5] * (1 + 2 ** -23));
      expect(rowDifferences(expected, new Map(rows).set(12, off))).toEqual([
        `token 12 layer 2: value 5 is ${off[layout.slices[2].valueOffset + 5]}, expected ${expected.get(12)![layout.slices[2].valueOffset + 5]}`,
      ]);
      const missing = new Map(rows);
      missing.delete(10);
      expect(rowDifferences(expected, missing)).toEqual(['token 10: no override row']);
      expect(rowDifferences(expected, new Map(rows).set(99, before.get(10)!))).toEqual(['token 99: an override row nobody asked for']);
    } finally {
      await target.close();
    }
  });
});

describe('patches of patches, and refused edits (S3, in process)', () => {
  it('a patch of a patch starts from its base’s override rows and keeps them', async () => {
    const target = await s3Target('chain');
    try {
      await publishBundle(target.store, bundle, { model: MODEL });
      const first: TestEdit[] = [
        { token: 20, op: 'set', values: setValues(64, 3) },
        { token: 21, op: 'scale', factor: 3 },
      ];
      const p1 = (await publishPatch(target.store, base.version, writeEdits('chain-1', first), MODEL)).version;
      const second: TestEdit[] = [
        { token: 22, op: 'copy', from: 20 }, // 20 is overridden in p1: the copy takes p1's row, not the table's
        { token: 21, op: 'scale', factor: 0.5, layers: [0] }, // composes with p1's scale
      ];
      const p2 = (await publishPatch(target.store, p1, writeEdits('chain-2', second), MODEL)).version;

      const table = await tableRows(target.store, base, [20, 21, 22]);
      const afterP1 = expectedRows(table, first);
      const { manifest, rows } = await storedOverrides(target.store, p2);
      const current: Rows = new Map([...table, ...afterP1]);
      const expected: Rows = new Map([...afterP1, ...expectedRows(current, second)]);
      expect(manifest.overrides!.tokens).toEqual([20, 21, 22]);
      expect(rowDifferences(expected, rows)).toEqual([]);
      // Control: rows made from the table, ignoring p1, differ from the stored ones at both edited tokens.
      const ignoringP1 = rowDifferences(expectedRows(table, second), new Map([...rows].filter(([id]) => id !== 20)));
      expect(new Set(ignoringP1.map((d) => /^token (\d+)/.exec(d)![1]))).toEqual(new Set(['21', '22']));

      expect(manifest.base).toBe(p1);
      expect(manifest.tables!.shards.every((s) => s.from === base.version)).toBe(true);
      expect((await new Catalog(target.store).published(p2))?.base).toBe(p1);
    } finally {
      await target.close();
    }
  });

  it('a `set` file of the wrong length is refused with its sizes, and nothing is written', async () => {
    const target = await s3Target('refused');
    try {
      await publishBundle(target.store, bundle, { model: MODEL });
      const path = writeEdits('short', [{ token: 5, op: 'set', values: setValues(16, 0), layers: [1, 2] }]);
      const recording = recordingStore(target.store);
      const error = await publishPatch(recording.store, base.version, path, MODEL).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InputError);
      expect((error as Error).message).toMatch(/edit 1: .*short-values-0\.json holds 16 values; the chosen layers need 32 finite numbers$/);
      expect(recording.writes).toEqual([]);
    } finally {
      await target.close();
    }
  });
});
