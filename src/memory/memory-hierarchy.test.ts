import { describe, expect, it } from 'vitest';
import type { BundleManifest } from '../bundle/manifest.ts';
import { decodeRowChecksums, encodeRowChecksums } from '../bundle/row-checksums.ts';
import { encodeRows, rowLayout } from '../bundle/row-codec.ts';
import type { RangeReader } from '../bundle/row-source.ts';
import { parseConfig } from '../model/config.ts';
import { presetConfig } from '../model/presets.ts';
import { DEFAULT_HIERARCHY, type HierarchyConfig, MemoryHierarchy } from './memory-hierarchy.ts';
import { MapCache } from './test-support.ts';

const config = parseConfig(presetConfig('tiny', 'flex'));
const layout = rowLayout(config, 'f32');
const V = config.vocab_size;
const R = layout.rowValues;

/**
 * A table whose every value says where it belongs: value j of row v is `sign · (v·1000 + j + 1)`,
 * so a wrong row, a row shifted by a few values, or a row of the other table is easy to see.
 */
function makeTable(sign: 1 | -1) {
  const cellOf = (v: number, j: number) => sign * (v * 1000 + j + 1);
  const bytes = encodeRows(
    Float32Array.from({ length: V * R }, (_, i) => cellOf(Math.floor(i / R), i % R)),
    V,
    layout,
  );
  const tables: NonNullable<BundleManifest['tables']> = {
    layout,
    shards: [{ path: 'tables/rows-00000.bin', bytes: bytes.byteLength, sha256: '0'.repeat(64), firstToken: 0, tokenCount: V }],
    checksums: { path: 'tables/rows.crc32c', bytes: 4 * V, sha256: '0'.repeat(64), algorithm: 'crc32c' },
  };
  const rowChecksums = decodeRowChecksums(encodeRowChecksums(bytes, layout.rowBytes), V);
  /** The whole decoded row of token v. */
  const row = (v: number) => Array.from({ length: R }, (_, j) => cellOf(v, j));
  return { bytes, tables, rowChecksums, row };
}

const A = makeTable(1);
const B = makeTable(-1);
const { tables, rowChecksums } = A;

/** The rows of `out`, one array per id, to compare whole with the expected rows. */
const rowsOf = (out: Float32Array) => Array.from({ length: out.length / R }, (_, i) => Array.from(out.subarray(i * R, (i + 1) * R)));
/** Every value of every row of `out` is the table's row of the id asked for, in order. */
function expectRows(out: Float32Array, ids: readonly number[], table = A): void {
  expect(out.length).toBe(ids.length * R);
  expect(rowsOf(out)).toEqual(ids.map(table.row));
}

function countingOrigin(table = A, delayMs = 0) {
  const reads: { offset: number; length: number }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const reader: RangeReader = {
    read: async (_object, offset, length) => {
      reads.push({ offset, length });
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        // Reads take time (and end in varying order), so reads that may overlap do.
        if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs + (reads.length % 3)));
        return table.bytes.slice(offset, offset + length);
      } finally {
        inFlight--;
      }
    },
  };
  return { reads, reader, maxInFlight: () => maxInFlight };
}

/** Runs background work (cache fills, hot-set loads) and lets the test wait for it. */
function backgroundQueue() {
  const work: Promise<unknown>[] = [];
  return { background: (p: Promise<unknown>) => work.push(p), settled: () => Promise.all(work) };
}

const scattered = Array.from({ length: 20 }, (_, i) => i * 25 + 3);

describe('the memory hierarchy', () => {
  it('returns the right rows, reading only the origin once, then serving repeats from the isolate', async () => {
    const hierarchy = new MemoryHierarchy([], { ...DEFAULT_HIERARCHY, hotSetBytes: 0, pageBytes: 1, coalesceGapBytes: 0 });
    const { reads, reader } = countingOrigin();
    const rows = hierarchy.rowsFor({ version: 'v1', tables, origin: reader, rowChecksums });
    const { stats } = rows;
    expectRows(await rows.rows([7, 8, 9, 300, 7]), [7, 8, 9, 300, 7]);
    expect(reads).toHaveLength(2); // 7-9 coalesced, 300 alone
    expectRows(await rows.rows([300, 8]), [300, 8]);
    expect(reads).toHaveLength(2);
    expect(stats.rows.origin).toBe(4);
    expect(stats.rows.lru).toBe(2);
  });

  it('fetches a scattered prompt in one wave by merging small gaps, but not across large ones', async () => {
    for (const [gap, expectedReads] of [
      [0, 20],
      [1 << 20, 6],
    ] as const) {
      const hierarchy = new MemoryHierarchy([], { ...DEFAULT_HIERARCHY, hotSetBytes: 0, pageBytes: 1, coalesceGapBytes: gap });
      const { reads, reader } = countingOrigin();
      expectRows(await hierarchy.rowsFor({ version: 'v1', tables, origin: reader, rowChecksums }).rows(scattered), scattered);
      expect(reads).toHaveLength(expectedReads);
    }
  });

  it('on a cold isolate, waits for the hot set instead of reading its rows twice: one wave', async () => {
    const hotRows = 100;
    const hierarchy = new MemoryHierarchy([], {
      ...DEFAULT_HIERARCHY,
      hotSetBytes: hotRows * layout.rowBytes,
      pageBytes: 1,
      coalesceGapBytes: 0,
    });
    const { reads, reader } = countingOrigin();
    const rows = hierarchy.rowsFor({ version: 'v3', tables, origin: reader, rowChecksums });
    expectRows(await rows.rows([3, 50, 99, 400]), [3, 50, 99, 400]);
    const { stats } = rows;
    expect(reads).toEqual([
      { offset: 0, length: hotRows * layout.rowBytes },
      { offset: 400 * layout.rowBytes, length: layout.rowBytes },
    ]);
    expect(stats.rows).toMatchObject({ hot: 3, origin: 1 });
  });

  it('serves a patch override before the table', async () => {
    const hierarchy = new MemoryHierarchy([], DEFAULT_HIERARCHY);
    const override = Array.from({ length: R }, (_, j) => -0.5 - j);
    const rows = hierarchy.rowsFor({
      version: 'v2',
      tables,
      origin: countingOrigin().reader,
      rowChecksums,
      overrides: new Map([[5, encodeRows(Float32Array.from(override), 1, layout)]]),
    });
    const out = await rows.rows([5, 6]);
    expect(rowsOf(out)).toEqual([override, A.row(6)]);
    expect(rows.stats.rows.patch).toBe(1);
    // Control: without the override, token 5 is the table's row.
    expectRows(await hierarchy.rowsFor({ version: 'v2', tables, origin: countingOrigin().reader, rowChecksums }).rows([5]), [5]);
  });
});

describe('the isolate budget', () => {
  it.each([
    [3, { lru: 3, origin: 1 }],
    [4, { lru: 4, origin: 0 }],
  ])('with room for %i rows, keeps the most recent ones and reads the evicted one again', async (budgetRows, repeat) => {
    const hierarchy = new MemoryHierarchy([], {
      ...DEFAULT_HIERARCHY,
      isolateBytes: budgetRows * layout.rowBytes,
      hotSetBytes: 0,
      pageBytes: 1,
      coalesceGapBytes: 0,
    });
    const origin = countingOrigin();
    const request = () => hierarchy.rowsFor({ version: 'v1', tables, origin: origin.reader, rowChecksums });
    expectRows(await request().rows([10, 20, 30, 40]), [10, 20, 30, 40]);
    const again = request();
    expectRows(await again.rows([20, 30, 40, 10]), [20, 30, 40, 10]);
    expect(again.stats.rows).toMatchObject(repeat);
  });
});

describe('origin reads in flight', () => {
  /** One row per page and no merging: every scattered row is its own range read. */
  const settings = (originConcurrency: number, hotRows = 0): HierarchyConfig => ({
    ...DEFAULT_HIERARCHY,
    originConcurrency,
    hotSetBytes: hotRows * layout.rowBytes,
    pageBytes: 1,
    coalesceGapBytes: 0,
  });
  const manyPages = Array.from({ length: 40 }, (_, i) => i * 12 + 5);

  it.each([6, 2])('never exceeds originConcurrency = %i, and a wave of many pages reaches it', async (limit) => {
    const hierarchy = new MemoryHierarchy([], settings(limit));
    const origin = countingOrigin(A, 2);
    expectRows(await hierarchy.rowsFor({ version: 'v1', tables, origin: origin.reader, rowChecksums }).rows(manyPages), manyPages);
    expect(origin.reads).toHaveLength(manyPages.length);
    expect(origin.maxInFlight()).toBe(limit); // at most the limit, and the counter does see reads overlap
  });

  it('a wave of fewer pages than the limit reads them all at once (the count is not just the limit)', async () => {
    const origin = countingOrigin(A, 2);
    const ids = [5, 100, 300];
    expectRows(
      await new MemoryHierarchy([], settings(6)).rowsFor({ version: 'v1', tables, origin: origin.reader, rowChecksums }).rows(ids),
      ids,
    );
    expect(origin.maxInFlight()).toBe(3);
  });

  it('counts the hot-set read of a cold isolate among the reads in flight', async () => {
    const limit = 6;
    const hierarchy = new MemoryHierarchy([], settings(limit, 4));
    const origin = countingOrigin(A, 2);
    const queue = backgroundQueue();
    const ids = [1, ...manyPages];
    const rows = hierarchy.rowsFor({ version: 'v1', tables, origin: origin.reader, rowChecksums, background: queue.background });
    expectRows(await rows.rows(ids), ids);
    await queue.settled();
    expect(origin.reads[0]).toEqual({ offset: 0, length: 4 * layout.rowBytes }); // the hot set was read
    expect(rows.stats.rows.hot).toBe(1); // token 1
    expect(origin.maxInFlight()).toBe(limit);
  });

  it('plans a cold wave around the hot-set read: it and the merged runs fit the limit, one round trip', async () => {
    const limit = 6;
    for (const hotRows of [4, 0]) {
      const hierarchy = new MemoryHierarchy([], { ...settings(limit, hotRows), coalesceGapBytes: 1 << 20 });
      const origin = countingOrigin(A, 2);
      const queue = backgroundQueue();
      const ids = [1, ...manyPages];
      const rows = hierarchy.rowsFor({ version: 'v1', tables, origin: origin.reader, rowChecksums, background: queue.background });
      expectRows(await rows.rows(ids), ids);
      await queue.settled();
      // With the hot set: its read and five runs; without (the control): six runs.
      expect(origin.reads).toHaveLength(limit);
      expect(origin.maxInFlight()).toBe(limit);
      expect(rows.stats.rows.hot).toBe(hotRows ? 1 : 0);
    }
  });
});

describe('two versions through one hierarchy', () => {
  const ids = [0, 1, 7, 8, 9, 300, 511];
  const cold = { ...DEFAULT_HIERARCHY, hotSetBytes: 0, pageBytes: 4 * layout.rowBytes, coalesceGapBytes: 0 };

  it("never serve each other's rows: origin, LRU, hot set and page cache are kept apart", async () => {
    const cache = new MapCache();
    const hierarchy = new MemoryHierarchy([cache], { ...cold, hotSetBytes: 4 * layout.rowBytes });
    const origins = { v1: countingOrigin(A), v2: countingOrigin(B) };
    const queue = backgroundQueue();
    const request = (version: 'v1' | 'v2') =>
      hierarchy.rowsFor({
        version,
        tables: version === 'v1' ? A.tables : B.tables,
        rowChecksums: version === 'v1' ? A.rowChecksums : B.rowChecksums,
        origin: origins[version].reader,
        background: queue.background,
      });
    // v1 fills the hot set, the LRU and the page cache with A's rows ...
    const first = request('v1');
    expectRows(await first.rows(ids), ids, A);
    await queue.settled();
    expect(first.stats.rows.origin).toBeGreaterThan(0);
    // ... and v2 asks for the same token ids: every one of them comes from B, none from A's copies.
    const second = request('v2');
    expectRows(await second.rows(ids), ids, B);
    await queue.settled();
    expect(second.stats.rows).toMatchObject({ lru: 0, cache: 0 });
    expect(origins.v2.reads.length).toBeGreaterThan(0);
    // Repeats of both are served from the isolate (hot set and LRU), each its own version's rows.
    for (const [version, table] of [
      ['v1', A],
      ['v2', B],
    ] as const) {
      const again = request(version);
      const before = origins[version].reads.length;
      expectRows(await again.rows(ids), ids, table);
      expect(origins[version].reads.length).toBe(before);
      expect(again.stats.rows.hot + again.stats.rows.lru).toBe(ids.length);
    }
    // The page cache holds each version's pages under its own key, with its own bytes.
    expect(cache.pages.get('v1/p4/tables/rows-00000.bin/2')).toEqual(A.bytes.subarray(8 * layout.rowBytes, 12 * layout.rowBytes));
    expect(cache.pages.get('v2/p4/tables/rows-00000.bin/2')).toEqual(B.bytes.subarray(8 * layout.rowBytes, 12 * layout.rowBytes));
  });

  it("a fresh isolate serves each version's rows from the shared page cache, never the other's", async () => {
    const cache = new MapCache();
    const queue = backgroundQueue();
    const fill = new MemoryHierarchy([cache], cold);
    for (const [version, table] of [
      ['v1', A],
      ['v2', B],
    ] as const) {
      const origin = countingOrigin(table);
      expectRows(await fill.rowsFor({ version, ...table, origin: origin.reader, background: queue.background }).rows(ids), ids, table);
    }
    await queue.settled();
    const fresh = new MemoryHierarchy([cache], cold);
    for (const [version, table] of [
      ['v2', B],
      ['v1', A],
    ] as const) {
      const origin = countingOrigin(table);
      const rows = fresh.rowsFor({ version, ...table, origin: origin.reader });
      expectRows(await rows.rows(ids), ids, table);
      expect(rows.stats.rows.cache).toBe(ids.length);
      expect(origin.reads).toHaveLength(0);
    }
  });

  it('forgetting one version drops its isolate rows only', async () => {
    const hierarchy = new MemoryHierarchy([], cold);
    const origins = { v1: countingOrigin(A), v2: countingOrigin(B) };
    const request = (version: 'v1' | 'v2') =>
      hierarchy.rowsFor({ version, ...(version === 'v1' ? A : B), origin: origins[version].reader });
    await request('v1').rows(ids);
    await request('v2').rows(ids);
    hierarchy.forget('v1');
    const v1 = request('v1');
    expectRows(await v1.rows(ids), ids, A);
    expect(v1.stats.rows.origin).toBe(ids.length);
    const v2 = request('v2');
    expectRows(await v2.rows(ids), ids, B);
    expect(v2.stats.rows.lru).toBe(ids.length);
  });
});
