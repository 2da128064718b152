/**
 * The lens of a bundle being built: the staged tables read back (so the lens describes the rows
 * exactly as served, after f16/int8 rounding), run through the lens graph, written token-major as
 * `lens/entries.bin`. docs/inspector.md gives its cost.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import type { BundleManifest, LensRef } from '../src/bundle/manifest.ts';
import { decodeRow, type RowSlice } from '../src/bundle/row-codec.ts';
import { DEFAULT_LENS_K, LENS_FORMAT, LENS_PATH, lensRecordBytes } from '../src/inspect/lens-format.ts';
import type { BuildOptions } from './build-bundle.ts';
import { writeStagedObject } from './build-bundle.ts';
import type { Checkpoint } from './checkpoint.ts';
import { computeLens } from './lens-tables.ts';

type Tables = NonNullable<BundleManifest['tables']>;

const KEEP_TABLE_BYTES = 1 << 30;

/** One layer's slice of every row of staged table shards, [V, width] f32. */
export function layerTable(tables: Tables, slice: RowSlice, readShard: (path: string) => Uint8Array): Float32Array {
  const { layout } = tables;
  const out = new Float32Array(tables.shards.reduce((n, s) => n + s.tokenCount, 0) * slice.width);
  const row = new Float32Array(layout.rowValues);
  for (const shard of tables.shards) {
    const bytes = readShard(shard.path);
    for (let t = 0; t < shard.tokenCount; t++) {
      decodeRow(bytes.subarray(t * layout.rowBytes), layout, row, 0);
      out.set(row.subarray(slice.valueOffset, slice.valueOffset + slice.width), (shard.firstToken + t) * slice.width);
    }
  }
  return out;
}

export async function writeLens(checkpoint: Checkpoint, staging: string, tables: Tables, options: BuildOptions): Promise<LensRef> {
  const { config } = checkpoint;
  const k = options.lensK ?? DEFAULT_LENS_K;
  const V = config.vocab_size;
  // Small tables are read once for all layers; large ones once per layer, so memory stays one layer's table.
  const keep = tables.shards.reduce((n, s) => n + s.bytes, 0) <= KEEP_TABLE_BYTES;
  const shardBytes = new Map<string, Uint8Array>();
  const readShard = (path: string) => {
    const bytes = shardBytes.get(path) ?? readFileSync(join(staging, path));
    if (keep) shardBytes.set(path, bytes);
    return bytes;
  };
  const bar = new cliProgress.SingleBar(
    { format: 'lens   {bar} {value}/{total} rows | {eta_formatted} left', stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  const total = V * tables.layout.slices.length;
  if (options.progress) bar.start(total, 0);
  try {
    const { records, medianNorms } = await computeLens(
      config,
      checkpoint.weights,
      tables.layout,
      k,
      (slice) => layerTable(tables, slice, readShard),
      (_slice, table) => ({ ids: Array.from({ length: V }, (_, i) => i), rows: table }),
      (done) => options.progress && bar.update(done),
    );
    mkdirSync(join(staging, 'lens'), { recursive: true });
    return {
      format: LENS_FORMAT,
      k,
      layers: tables.layout.slices.map((s, i) => ({ layer: s.layer, medianNorm: medianNorms[i] })),
      recordBytes: lensRecordBytes(k, tables.layout.slices.length),
      entries: writeStagedObject(staging, LENS_PATH, records),
    };
  } finally {
    if (options.progress) bar.stop();
  }
}
