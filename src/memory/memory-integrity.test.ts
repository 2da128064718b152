/** Every row the hierarchy serves matches its checksum, whichever tier it came from. */
import { describe, expect, it } from 'vitest';
import type { BundleManifest } from '../bundle/manifest.ts';
import { decodeRowChecksums, encodeRowChecksums } from '../bundle/row-checksums.ts';
import { encodeRows, rowLayout } from '../bundle/row-codec.ts';
import type { RangeReader } from '../bundle/row-source.ts';
import { InternalError } from '../errors.ts';
import { parseConfig } from '../model/config.ts';
import { presetConfig } from '../model/presets.ts';
import { DEFAULT_HIERARCHY, MemoryHierarchy } from './memory-hierarchy.ts';
import { MapCache } from './test-support.ts';

const config = parseConfig(presetConfig('tiny', 'flex'));
const layout = rowLayout(config, 'f32');
const V = config.vocab_size;
/** Value j of row v is v·1000 + j + 1, so a wrong or shifted row is easy to see. */
const cellOf = (v: number, j: number) => v * 1000 + j + 1;
const table = encodeRows(
  Float32Array.from({ length: V * layout.rowValues }, (_, i) => cellOf(Math.floor(i / layout.rowValues), i % layout.rowValues)),
  V,
  layout,
);
const tables: NonNullable<BundleManifest['tables']> = {
  layout,
  shards: [{ path: 'tables/rows-00000.bin', bytes: table.byteLength, sha256: '0'.repeat(64), firstToken: 0, tokenCount: V }],
  checksums: { path: 'tables/rows.crc32c', bytes: 4 * V, sha256: '0'.repeat(64), algorithm: 'crc32c' },
};
const rowChecksums = decodeRowChecksums(encodeRowChecksums(table, layout.rowBytes), V);
const rowsPerPage = 4;
const settings = { ...DEFAULT_HIERARCHY, hotSetBytes: 0, pageBytes: rowsPerPage * layout.rowBytes, coalesceGapBytes: 0 };
const middleOf = (id: number) => id * layout.rowBytes + layout.rowBytes / 2;

/** An origin holding a copy of the table; `damage` flips a byte for the next `reads` reads (all, by default). */
function origin() {
  const stored = table.slice();
  let damaged: { at: number; reads: number } | null = null;
  let reads = 0;
  const reader: RangeReader = {
    read: async (_object, offset, length) => {
      reads++;
      const bytes = stored.slice(offset, offset + length);
      if (damaged && damaged.reads > 0 && damaged.at >= offset && damaged.at < offset + length) {
        damaged.reads--;
        bytes[damaged.at - offset] ^= 0x40;
      }
      return bytes;
    },
  };
  return {
    reader,
    reads: () => reads,
    damage: (at: number, times = Infinity) => {
      damaged = { at, reads: times };
    },
    repair: () => {
      damaged = null;
    },
  };
}

/** Runs background work (cache fills) and lets the test wait for it. */
function backgroundQueue() {
  const work: Promise<unknown>[] = [];
  return { background: (p: Promise<unknown>) => work.push(p), settled: () => Promise.all(work) };
}

/** Every value of every row of `out` is the table's row of the id asked for, in order. */
function expectRows(out: Float32Array, ids: number[]): void {
  const R = layout.rowValues;
  expect(out.length).toBe(ids.length * R);
  const rows = Array.from({ length: ids.length }, (_, i) => Array.from(out.subarray(i * R, (i + 1) * R)));
  expect(rows).toEqual(ids.map((v) => Array.from({ length: R }, (_, j) => cellOf(v, j))));
}

describe('row integrity in the memory hierarchy', () => {
  it('reads a run damaged in transit once more, and serves and caches the good copy', async () => {
    const cache = new MapCache();
    const hierarchy = new MemoryHierarchy([cache], settings);
    const store = origin();
    store.damage(middleOf(42), 1);
    const queue = backgroundQueue();
    const rows = hierarchy.rowsFor({ version: 'v1', tables, origin: store.reader, rowChecksums, background: queue.background });
    expectRows(await rows.rows([42, 43]), [42, 43]);
    expect(store.reads()).toBe(2);
    await queue.settled();
    expect(cache.pages.get(`v1/p${rowsPerPage}/tables/rows-00000.bin/10`)).toEqual(
      table.subarray(40 * layout.rowBytes, 44 * layout.rowBytes),
    );
  });

  it('fails a row that stays corrupt with an InternalError naming the shard, caching nothing; other rows still serve', async () => {
    const cache = new MapCache();
    const hierarchy = new MemoryHierarchy([cache], settings);
    const store = origin();
    store.damage(middleOf(42));
    const queue = backgroundQueue();
    const request = () => hierarchy.rowsFor({ version: 'v1', tables, origin: store.reader, rowChecksums, background: queue.background });
    const failed = request().rows([41, 300]);
    await expect(failed).rejects.toThrow(InternalError);
    await expect(failed).rejects.toThrow(
      `bundles/v1/tables/rows-00000.bin: the row of token 42 (bytes ${42 * layout.rowBytes}+${layout.rowBytes}) does not match its crc32c, read twice`,
    );
    expectRows(await request().rows([300, 7]), [300, 7]);
    await queue.settled();
    expect([...cache.pages.keys()].some((key) => key.endsWith('/10'))).toBe(false);

    // Nothing of the corrupt page stayed in the isolate or the cache: once repaired, it serves.
    store.repair();
    expectRows(await request().rows([41, 42]), [41, 42]);
  });

  it('treats a cached page that no longer matches as a miss, and replaces it with the checked copy', async () => {
    const cache = new MapCache();
    const store = origin();
    const key = `v1/p${rowsPerPage}/tables/rows-00000.bin/2`;
    const bad = table.slice(8 * layout.rowBytes, 12 * layout.rowBytes);
    bad[middleOf(9) - 8 * layout.rowBytes] ^= 1;
    cache.pages.set(key, bad);
    const queue = backgroundQueue();
    const rows = new MemoryHierarchy([cache], settings).rowsFor({
      version: 'v1',
      tables,
      origin: store.reader,
      rowChecksums,
      background: queue.background,
    });
    expectRows(await rows.rows([9]), [9]);
    expect(rows.stats.rows).toMatchObject({ cache: 0, origin: 1 });
    await queue.settled();
    expect(cache.pages.get(key)).toEqual(table.subarray(8 * layout.rowBytes, 12 * layout.rowBytes));
  });

  it('checks each hot row when first used: a corrupt one fails and is never served, the rows around it stay hot', async () => {
    let failures = 0;
    const hierarchy = new MemoryHierarchy([], { ...settings, hotSetBytes: 100 * layout.rowBytes }, () => failures++);
    const store = origin();
    store.damage(middleOf(60));
    const request = () => hierarchy.rowsFor({ version: 'v1', tables, origin: store.reader, rowChecksums });
    const first = request();
    await expect(first.rows([3, 60])).rejects.toThrow(/token 60 .* does not match its crc32c/);
    expect(failures).toBe(3); // the hot row, then its page read twice
    const second = request();
    expectRows(await second.rows([3, 59, 61, 99]), [3, 59, 61, 99]);
    expect(second.stats.rows).toMatchObject({ hot: 4, origin: 0 });
    await expect(request().rows([60])).rejects.toThrow(/token 60 .* does not match its crc32c/);
  });
});
