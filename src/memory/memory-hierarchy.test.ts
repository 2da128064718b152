import { describe, expect, it } from 'vitest';
import type { BundleManifest } from '../bundle/manifest.ts';
import { decodeRowChecksums, encodeRowChecksums } from '../bundle/row-checksums.ts';
import { encodeRows, rowLayout } from '../bundle/row-codec.ts';
import type { RangeReader } from '../bundle/row-source.ts';
import { parseConfig } from '../model/config.ts';
import { presetConfig } from '../model/presets.ts';
import { DEFAULT_HIERARCHY, MemoryHierarchy } from './memory-hierarchy.ts';

const config = parseConfig(presetConfig('tiny', 'flex'));
const layout = rowLayout(config, 'f32');
const V = config.vocab_size;
/** Row v holds the value v everywhere, so a wrong row is easy to see. */
const table = encodeRows(
  Float32Array.from({ length: V * layout.rowValues }, (_, i) => Math.floor(i / layout.rowValues)),
  V,
  layout,
);
const tables: NonNullable<BundleManifest['tables']> = {
  layout,
  shards: [{ path: 'tables/rows-00000.bin', bytes: table.byteLength, sha256: '0'.repeat(64), firstToken: 0, tokenCount: V }],
  checksums: { path: 'tables/rows.crc32c', bytes: 4 * V, sha256: '0'.repeat(64), algorithm: 'crc32c' },
};
const rowChecksums = decodeRowChecksums(encodeRowChecksums(table, layout.rowBytes), V);

function countingOrigin() {
  const reads: { offset: number; length: number }[] = [];
  const reader: RangeReader = {
    read: async (_object, offset, length) => {
      reads.push({ offset, length });
      return table.subarray(offset, offset + length);
    },
  };
  return { reads, reader };
}

const scattered = Array.from({ length: 20 }, (_, i) => i * 25 + 3);

describe('the memory hierarchy', () => {
  it('returns the right rows, reading only the origin once, then serving repeats from the isolate', async () => {
    const hierarchy = new MemoryHierarchy([], { ...DEFAULT_HIERARCHY, hotSetBytes: 0, pageBytes: 1, coalesceGapBytes: 0 });
    const { reads, reader } = countingOrigin();
    const rows = hierarchy.rowsFor({ version: 'v1', tables, origin: reader, rowChecksums });
    const { stats } = rows;
    const out = await rows.rows([7, 8, 9, 300, 7]);
    expect([0, 1, 2, 3, 4].map((i) => out[i * layout.rowValues])).toEqual([7, 8, 9, 300, 7]);
    expect(reads).toHaveLength(2); // 7-9 coalesced, 300 alone
    await rows.rows([300, 8]);
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
      const out = await hierarchy.rowsFor({ version: 'v1', tables, origin: reader, rowChecksums }).rows(scattered);
      expect(scattered.map((_, i) => out[i * layout.rowValues])).toEqual(scattered);
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
    const out = await rows.rows([3, 50, 99, 400]);
    const { stats } = rows;
    expect([0, 1, 2, 3].map((i) => out[i * layout.rowValues])).toEqual([3, 50, 99, 400]);
    expect(reads).toEqual([
      { offset: 0, length: hotRows * layout.rowBytes },
      { offset: 400 * layout.rowBytes, length: layout.rowBytes },
    ]);
    expect(stats.rows).toMatchObject({ hot: 3, origin: 1 });
  });

  it('serves a patch override before the table', async () => {
    const hierarchy = new MemoryHierarchy([], DEFAULT_HIERARCHY);
    const override = encodeRows(new Float32Array(layout.rowValues).fill(-1), 1, layout);
    const rows = hierarchy.rowsFor({
      version: 'v2',
      tables,
      origin: countingOrigin().reader,
      rowChecksums,
      overrides: new Map([[5, override]]),
    });
    const out = await rows.rows([5, 6]);
    const { stats } = rows;
    expect(out[0]).toBe(-1);
    expect(out[layout.rowValues]).toBe(6);
    expect(stats.rows.patch).toBe(1);
  });
});
