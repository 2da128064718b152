/**
 * The memory hierarchy on a table of two shards with 8-byte rows (row v decodes to [v, v]): which
 * reads it makes, which tier serves each row, and how it treats corrupt or short data.
 */
import { describe, expect, it } from 'vitest';
import type { BundleManifest, TableShard } from '../bundle/manifest.ts';
import { decodeRowChecksums, encodeRowChecksums } from '../bundle/row-checksums.ts';
import { encodeRows, type RowLayout } from '../bundle/row-codec.ts';
import type { RangeReader } from '../bundle/row-source.ts';
import { InternalError } from '../errors.ts';
import { DEFAULT_HIERARCHY, type HierarchyConfig, MemoryHierarchy } from './memory-hierarchy.ts';
import type { PageCache } from './page-cache.ts';
import { MapCache } from './test-support.ts';

const layout: RowLayout = {
  dtype: 'f32',
  rowBytes: 8,
  rowValues: 2,
  slices: [{ layer: 0, kind: 'additive', width: 2, byteOffset: 0, valueOffset: 0 }],
};
const V = 40;
const SPLIT = 18; // shard 0 holds tokens [0, 18), shard 1 [18, 40): neither a whole number of 4-row pages
const table = encodeRows(
  Float32Array.from({ length: V * 2 }, (_, i) => Math.floor(i / 2)),
  V,
  layout,
);
const stored: Record<string, Uint8Array> = {
  'tables/rows-00000.bin': table.slice(0, SPLIT * 8),
  'tables/rows-00001.bin': table.slice(SPLIT * 8),
};
const shard = (path: string, firstToken: number, tokenCount: number): TableShard => ({
  path,
  bytes: tokenCount * 8,
  sha256: '0'.repeat(64),
  firstToken,
  tokenCount,
});
const tables: NonNullable<BundleManifest['tables']> = {
  layout,
  shards: [shard('tables/rows-00000.bin', 0, SPLIT), shard('tables/rows-00001.bin', SPLIT, V - SPLIT)],
  checksums: { path: 'tables/rows.crc32c', bytes: 4 * V, sha256: '0'.repeat(64), algorithm: 'crc32c' },
};
const rowChecksums = decodeRowChecksums(encodeRowChecksums(table, 8), V);

/** Byte `at` of token `id`'s row, in its shard. */
const byteOf = (id: number, at = 3) => ({
  path: id < SPLIT ? 'tables/rows-00000.bin' : 'tables/rows-00001.bin',
  at: (id % SPLIT) * 8 + at,
});

interface Read {
  path: string;
  offset: number;
  length: number;
}

/** The origin: records its reads; can damage bytes in transit, cut reads short, fail or hold reads. */
function origin() {
  const reads: Read[] = [];
  const damage = new Map<string, number>();
  let fail = 0;
  let shortBy = 0;
  let gate: Promise<void> | null = null;
  const reader: RangeReader = {
    read: async (object, offset, length) => {
      reads.push({ path: object.path, offset, length });
      if (gate && offset === 0 && object.path.endsWith('00000.bin')) await gate;
      if (fail > 0) {
        fail--;
        throw new Error('origin down');
      }
      const bytes = stored[object.path].slice(offset, offset + length - shortBy);
      for (const [key, times] of damage) {
        const [path, at] = key.split('@');
        const i = Number(at) - offset;
        if (path === object.path && times > 0 && i >= 0 && i < bytes.length) {
          bytes[i] ^= 0x10;
          damage.set(key, times - 1);
        }
      }
      return bytes;
    },
  };
  return {
    reader,
    reads,
    damage(id: number, times = Infinity) {
      const { path, at } = byteOf(id);
      damage.set(`${path}@${at}`, times);
    },
    failNext(times = 1) {
      fail = times;
    },
    cutShort(bytes: number) {
      shortBy = bytes;
    },
    /** Holds reads at offset 0 of shard 0 (the hot set) until the returned function is called. */
    hold(): () => void {
      let release!: () => void;
      gate = new Promise((resolve) => {
        release = resolve;
      });
      return () => {
        gate = null;
        release();
      };
    },
  };
}

const settings = (over: Partial<HierarchyConfig> = {}): HierarchyConfig => ({
  ...DEFAULT_HIERARCHY,
  hotSetBytes: 0,
  pageBytes: 4 * 8,
  coalesceGapBytes: 0,
  ...over,
});
const firsts = (out: Float32Array) => Array.from({ length: out.length / 2 }, (_, i) => out[2 * i]);
const byOffset = (reads: Read[]) => [...reads].sort((a, b) => a.path.localeCompare(b.path) || a.offset - b.offset);
const macrotask = () => new Promise((resolve) => setTimeout(resolve, 0));

function setup(config: Partial<HierarchyConfig> = {}, caches: PageCache[] = []) {
  const store = origin();
  let failures = 0;
  const hierarchy = new MemoryHierarchy(caches, settings(config), () => failures++);
  const work: Promise<unknown>[] = [];
  const request = (version = 'v1', overrides?: ReadonlyMap<number, Uint8Array>) =>
    hierarchy.rowsFor({ version, tables, origin: store.reader, rowChecksums, overrides, background: (p) => work.push(p) });
  return { store, hierarchy, request, failures: () => failures, settled: () => Promise.all(work) };
}

describe('memory hierarchy: reads across shards and pages', () => {
  it('reads each page at its offset in its shard, the last page of a shard cut at the shard end', async () => {
    const { store, request } = setup();
    const out = await request().rows([0, 17, 18, 39, 10, 21]);
    expect(firsts(out)).toEqual([0, 17, 18, 39, 10, 21]);
    expect(byOffset(store.reads)).toEqual([
      { path: 'tables/rows-00000.bin', offset: 0, length: 32 },
      { path: 'tables/rows-00000.bin', offset: 64, length: 32 },
      { path: 'tables/rows-00000.bin', offset: 128, length: 16 },
      { path: 'tables/rows-00001.bin', offset: 0, length: 32 },
      { path: 'tables/rows-00001.bin', offset: 160, length: 16 },
    ]);
  });

  it('never merges pages of different shards, whatever their page numbers', async () => {
    for (const config of [{}, { originConcurrency: 1, coalesceGapBytes: 1 << 20 }]) {
      const { store, request } = setup(config);
      // Token 0 is page 0 of shard 0, token 22 page 1 of shard 1.
      expect(firsts(await request().rows([0, 22]))).toEqual([0, 22]);
      expect(byOffset(store.reads)).toEqual([
        { path: 'tables/rows-00000.bin', offset: 0, length: 32 },
        { path: 'tables/rows-00001.bin', offset: 32, length: 32 },
      ]);
    }
  });

  it('reads adjacent pages in one read, in whatever order the tokens come', async () => {
    const { store, request } = setup({ pageBytes: 8 });
    expect(firsts(await request().rows([9, 8, 7, 20, 19]))).toEqual([9, 8, 7, 20, 19]);
    expect(byOffset(store.reads)).toEqual([
      { path: 'tables/rows-00000.bin', offset: 56, length: 24 },
      { path: 'tables/rows-00001.bin', offset: 8, length: 16 },
    ]);
  });

  it('with more runs than reads in flight, merges the smallest gap first (the first of equal ones)', async () => {
    const reads = async (ids: number[], concurrency: number) => {
      const { store, request } = setup({ pageBytes: 8, originConcurrency: concurrency, coalesceGapBytes: 1 << 20 });
      expect(firsts(await request().rows(ids))).toEqual(ids);
      return byOffset(store.reads).map((r) => [r.offset / 8, r.length / 8]);
    };
    // Gaps of 1 and 7 pages: the first pair merges.
    expect(await reads([0, 2, 10], 2)).toEqual([
      [0, 3],
      [10, 1],
    ]);
    // Gaps of 4 and 1 pages: the second pair merges.
    expect(await reads([0, 5, 7], 2)).toEqual([
      [0, 1],
      [5, 3],
    ]);
    // Equal gaps: the first pair.
    expect(await reads([0, 2, 4], 2)).toEqual([
      [0, 3],
      [4, 1],
    ]);
    expect(await reads([0, 2], 1)).toEqual([[0, 3]]);
  });

  it('merges across a gap of exactly coalesceGapBytes, not one byte more', async () => {
    for (const [gap, expected] of [
      [8, [[0, 24]]],
      [
        7,
        [
          [0, 8],
          [16, 8],
        ],
      ],
    ] as const) {
      const { store, request } = setup({ pageBytes: 8, originConcurrency: 1, coalesceGapBytes: gap });
      expect(firsts(await request().rows([0, 2]))).toEqual([0, 2]);
      expect(byOffset(store.reads).map((r) => [r.offset, r.length])).toEqual(expected);
    }
  });

  it('counts distinct lookups, patched rows, origin requests and bytes', async () => {
    const { store, request } = setup();
    const override = encodeRows(Float32Array.from([-1, -1]), 1, layout);
    const rows = request('v1', new Map([[6, override]]));
    expect(firsts(await rows.rows([5, 5, 6, 30]))).toEqual([5, 5, -1, 30]);
    expect(rows.stats).toEqual({
      lookups: 3,
      rows: { patch: 1, hot: 0, lru: 0, cache: 0, kv: 0, origin: 2 },
      originRequests: 2,
      originBytes: 64,
    });
    expect(store.reads).toHaveLength(2);
  });

  it('refuses a token it has no row for', async () => {
    const { request } = setup();
    for (const id of [V, 1.5, -1]) {
      const failed = request().rows([id]);
      await expect(failed).rejects.toThrow(InternalError);
      await expect(failed).rejects.toThrow(`no memory row for token ${id}`);
    }
  });

  it('refuses a short read from the origin', async () => {
    const { store, request } = setup();
    store.cutShort(1);
    const failed = request().rows([1]);
    await expect(failed).rejects.toThrow(InternalError);
    await expect(failed).rejects.toThrow('short origin read: tables/rows-00000.bin bytes 0+32 of version v1');
  });
});

describe('memory hierarchy: page caches', () => {
  it('serves a page another isolate cached, checking the rows it takes', async () => {
    const cache = new MapCache();
    const first = setup({}, [cache]);
    await first.request().rows([9, 10]);
    await first.settled();
    const second = setup({}, [cache]);
    const rows = second.request();
    expect(firsts(await rows.rows([9, 10, 20]))).toEqual([9, 10, 20]);
    expect(rows.stats.rows).toMatchObject({ cache: 2, origin: 1 });
    expect(second.store.reads).toEqual([{ path: 'tables/rows-00001.bin', offset: 0, length: 32 }]);
  });

  it('treats a cached page as a miss if any row it is asked for does not match', async () => {
    const cache = new MapCache();
    const page = table.slice(8 * 8, 12 * 8);
    page[(10 - 8) * 8 + 1] ^= 1;
    cache.pages.set('v1/p4/tables/rows-00000.bin/2', page);
    const { request, store } = setup({}, [cache]);
    const rows = request();
    expect(firsts(await rows.rows([9, 10]))).toEqual([9, 10]);
    expect(rows.stats.rows).toMatchObject({ cache: 0, origin: 2 });
    expect(store.reads).toHaveLength(1);
  });

  it('caches every page of a run on its own, as a copy of exactly one page', async () => {
    const cache = new MapCache();
    const { request, settled } = setup({}, [cache]);
    await request().rows([1, 5]);
    await settled();
    const pages = [...cache.pages.entries()].sort();
    expect(pages.map(([key, bytes]) => [key, bytes.byteLength, bytes.buffer.byteLength])).toEqual([
      ['v1/p4/tables/rows-00000.bin/0', 32, 32],
      ['v1/p4/tables/rows-00000.bin/1', 32, 32],
    ]);
    expect(pages[1][1]).toEqual(table.subarray(32, 64));
  });
});

describe('memory hierarchy: corrupt rows', () => {
  it('reads a run again when a row, token 0 included, arrives damaged', async () => {
    const { store, request, failures } = setup();
    store.damage(0, 1);
    expect(firsts(await request().rows([0]))).toEqual([0]);
    expect(store.reads).toHaveLength(2);
    expect(failures()).toBe(1);
  });

  it('refuses a row that stays corrupt, on any page of a run, token 0 included', async () => {
    for (const [id, ask] of [
      [0, [0]],
      [5, [1, 5]],
    ] as const) {
      const { store, request, failures } = setup();
      store.damage(id);
      await expect(request().rows([...ask])).rejects.toThrow(`the row of token ${id} `);
      expect(failures()).toBe(2);
    }
  });

  it('names the shard and the byte offset within it', async () => {
    const { store, request } = setup();
    store.damage(25);
    await expect(request().rows([25])).rejects.toThrow(
      'bundles/v1/tables/rows-00001.bin: the row of token 25 (bytes 56+8) does not match its crc32c, read twice; refusing to serve it',
    );
  });
});

describe('memory hierarchy: the hot set', () => {
  const hot = { hotSetBytes: 4 * 8 };

  it('is read once per version, whatever the number of requests', async () => {
    const { store, request, hierarchy } = setup(hot);
    await hierarchy.hotSetReady('v1');
    const first = request();
    await hierarchy.hotSetReady('v1');
    const second = request();
    expect(firsts(await second.rows([1, 2]))).toEqual([1, 2]);
    expect(firsts(await first.rows([3]))).toEqual([3]);
    expect(store.reads).toEqual([{ path: 'tables/rows-00000.bin', offset: 0, length: 32 }]);
    expect(second.stats.rows.hot).toBe(2);
  });

  it('checks a hot row when it is first used: one damaged in transit, token 0 included, is read through its page, the rest stay hot', async () => {
    const { store, request, hierarchy, failures } = setup(hot);
    store.damage(0, 1);
    request();
    await hierarchy.hotSetReady('v1');
    expect(failures()).toBe(0); // nothing is checked before it is used
    const rows = request();
    expect(firsts(await rows.rows([0, 1, 2, 3]))).toEqual([0, 1, 2, 3]);
    expect(failures()).toBe(1);
    expect(rows.stats.rows).toMatchObject({ hot: 3, origin: 1 });
    expect(store.reads).toEqual([
      { path: 'tables/rows-00000.bin', offset: 0, length: 32 },
      { path: 'tables/rows-00000.bin', offset: 0, length: 32 },
    ]);
    // Token 0 is served from its checked copy from now on, the hot set's rows without a second check.
    const again = request();
    expect(firsts(await again.rows([0, 1]))).toEqual([0, 1]);
    expect(again.stats.rows).toMatchObject({ hot: 1, lru: 1 });
    expect([failures(), store.reads.length]).toEqual([1, 2]);
  });

  it('fails a hot row that stays corrupt, every time, and only that row', async () => {
    // One row per page, so row 1 does not share token 0's page.
    const { store, request, hierarchy } = setup({ ...hot, pageBytes: 8 });
    store.damage(0);
    request();
    await hierarchy.hotSetReady('v1');
    await expect(request().rows([0])).rejects.toThrow('the row of token 0 ');
    await expect(request().rows([0])).rejects.toThrow('the row of token 0 ');
    const rows = request();
    expect(firsts(await rows.rows([1, 3]))).toEqual([1, 3]);
    expect(rows.stats.rows).toMatchObject({ hot: 2, origin: 0 });
  });

  it('waits for the hot set for its rows, while the rest are read in the same wave', async () => {
    const { store, request, hierarchy } = setup(hot);
    const release = store.hold();
    let ready = false;
    const rows = request();
    void hierarchy.hotSetReady('v1').then(() => {
      ready = true;
    });
    const out = rows.rows([1, 4]);
    await macrotask();
    // Token 4 is the first row past the hot set: read at once. Token 1 waits for the hot set.
    expect(store.reads).toEqual([
      { path: 'tables/rows-00000.bin', offset: 0, length: 32 },
      { path: 'tables/rows-00000.bin', offset: 32, length: 32 },
    ]);
    expect(ready).toBe(false);
    release();
    expect(firsts(await out)).toEqual([1, 4]);
    expect(ready).toBe(true);
    expect(rows.stats.rows).toMatchObject({ hot: 1, origin: 1 });
    expect(store.reads).toHaveLength(2);
  });

  it('loads again after a failed load, even for a request made while it was failing', async () => {
    const { store, request, hierarchy } = setup(hot);
    store.failNext();
    const during = request();
    await hierarchy.hotSetReady('v1');
    expect(firsts(await during.rows([1]))).toEqual([1]);
    expect(during.stats.rows.origin).toBe(1);
    const after = request();
    await hierarchy.hotSetReady('v1');
    expect(firsts(await after.rows([2]))).toEqual([2]);
    expect(after.stats.rows.hot).toBe(1);
  });

  it('is ready at once for a version it never loaded', async () => {
    const { hierarchy } = setup(hot);
    await expect(hierarchy.hotSetReady('unknown')).resolves.toBeUndefined();
  });

  it('forgets a version: its hot set and rows are read again', async () => {
    const { store, request, hierarchy } = setup(hot);
    request();
    await hierarchy.hotSetReady('v1');
    await request().rows([20]);
    expect(store.reads).toHaveLength(2);
    hierarchy.forget('v1');
    const rows = request();
    await hierarchy.hotSetReady('v1');
    expect(firsts(await rows.rows([1, 20]))).toEqual([1, 20]);
    expect(store.reads).toHaveLength(4);
    expect(rows.stats.rows).toMatchObject({ hot: 1, origin: 1 });
  });
});
