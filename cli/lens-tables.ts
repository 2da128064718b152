/**
 * Runs the lens graph (src/inspect/lens-graph.ts) in onnxruntime-node over rows of a table, in
 * chunks, and packs the results into lens records (src/inspect/lens-format.ts). `flexmem build`
 * runs it over the whole vocabulary; `flexmem patch` over the edited rows only.
 */
import * as ort from 'onnxruntime-node';
import type { RowLayout, RowSlice } from '../src/bundle/row-codec.ts';
import { buildLensGraph, LENS_IO, median, unitRows } from '../src/inspect/lens-graph.ts';
import { lensLayerBytes, lensRecordBytes, writeLensLayer } from '../src/inspect/lens-format.ts';
import type { ModelConfig } from '../src/model/config.ts';
import type { WeightSource } from '../src/model/model.ts';

/** Rows per session.run: the [N, V] products stay around N · V · 4 bytes each. */
const CHUNK_VALUES = 8 * 1024 * 1024;

export interface LensQuery {
  /** The token each row belongs to (its own entry is dropped from its neighbours). */
  ids: readonly number[];
  /** The rows' slice of this layer, [ids.length, width]. */
  rows: Float32Array;
}

export interface LensResult {
  /** [queries, recordBytes]: one lens record per query token, layers in slice order. */
  records: Uint8Array;
  /** Per layer (slice order): the median row norm over the whole table. */
  medianNorms: number[];
}

/**
 * Lens records of the query rows. `table(slice)` is the layer's full table [V, width] (the
 * neighbours are searched in it); `query(slice, table)` the rows to describe (all of the table at
 * build time, the edited rows for a patch).
 */
export async function computeLens(
  config: ModelConfig,
  weights: WeightSource,
  layout: RowLayout,
  k: number,
  table: (slice: RowSlice) => Float32Array,
  query: (slice: RowSlice, table: Float32Array) => LensQuery,
  progress: (done: number) => void = () => {},
): Promise<LensResult> {
  const V = config.vocab_size;
  const recordBytes = lensRecordBytes(k, layout.slices.length);
  let records: Uint8Array | null = null;
  let view: DataView | null = null;
  const medianNorms: number[] = [];
  for (const [index, slice] of layout.slices.entries()) {
    const values = table(slice);
    const { unit, norms } = unitRows(values, slice.width);
    medianNorms.push(median(norms));
    const { ids, rows } = query(slice, values);
    records ??= new Uint8Array(ids.length * recordBytes);
    view ??= new DataView(records.buffer);
    const session = await ort.InferenceSession.create(buildLensGraph(config, weights, slice.layer, k));
    try {
      const unitTable = new ort.Tensor('float32', unit, [V, slice.width]);
      const chunk = Math.max(1, Math.floor(CHUNK_VALUES / V));
      for (let start = 0; start < ids.length; start += chunk) {
        const count = Math.min(chunk, ids.length - start);
        const out = await session.run({
          [LENS_IO.rows]: new ort.Tensor('float32', rows.subarray(start * slice.width, (start + count) * slice.width), [
            count,
            slice.width,
          ]),
          [LENS_IO.table]: unitTable,
        });
        const list = (scores: string, idsName: string, width: number, row: number) => ({
          scores: (out[scores].data as Float32Array).subarray(row * width, (row + 1) * width),
          ids: Int32Array.from((out[idsName].data as BigInt64Array).subarray(row * width, (row + 1) * width), Number),
        });
        const kk = Math.min(k, V);
        const kn = Math.min(k + 1, V);
        for (let r = 0; r < count; r++) {
          const neighbours = list(LENS_IO.neighbourScores, LENS_IO.neighbourIds, kn, r);
          writeLensLayer(view, (start + r) * recordBytes + index * lensLayerBytes(k), k, {
            promoted: padded(list(LENS_IO.promotedScores, LENS_IO.promotedIds, kk, r), k),
            suppressed: padded(list(LENS_IO.suppressedScores, LENS_IO.suppressedIds, kk, r), k),
            neighbours: padded(withoutSelf(neighbours, ids[start + r], kn - 1), k),
          });
        }
        progress(index * ids.length + start + count);
      }
    } finally {
      await session.release();
    }
  }
  return { records: records ?? new Uint8Array(0), medianNorms };
}

type List = { ids: Int32Array; scores: Float32Array };

/** The list without token `self` (its own row, cosine 1), cut to `length`. */
function withoutSelf(list: List, self: number, length: number): List {
  const keep = [...list.ids.keys()].filter((i) => list.ids[i] !== self).slice(0, length);
  return { ids: Int32Array.from(keep, (i) => list.ids[i]), scores: Float32Array.from(keep, (i) => list.scores[i]) };
}

/** A list of `k` entries; a vocabulary smaller than k leaves id -1 in the rest. */
function padded(list: List, k: number): List {
  const ids = new Int32Array(k).fill(-1);
  const scores = new Float32Array(k);
  ids.set(list.ids.subarray(0, k));
  scores.set(list.scores.subarray(0, k));
  return { ids, scores };
}
