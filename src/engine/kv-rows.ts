/**
 * Copies of KV-cache rows between caches of different batch and length, for the step batcher
 * (src/engine/step-batcher.ts). A cache tensor is [B, KV, S, hd] row-major; a row's real positions
 * are those its mask marks 1 (padding, 0, may sit anywhere: a member that skipped a step has a
 * padded column in the middle). Copies keep the real positions in order and drop the padding.
 */

/** A real position in a mask (`attention_mask` is int64: 1 real, 0 padding). */
export const REAL = 1n;

/** One sequence's row of a cache tensor's data. */
export interface CacheRow {
  data: Float32Array;
  /** Positions per row of `data` (its S). */
  length: number;
  row: number;
  /** `length` flags, REAL = a real position, 0 = padding; null when every position is real. */
  real: BigInt64Array | null;
}

/** Real positions of `src`, copied in order to positions 0.. of row `row` of `dst` ([B, KV, dstLength, hd]); returns how many. */
export function copyRealPositions(
  src: CacheRow,
  dst: Float32Array,
  dstLength: number,
  row: number,
  kvHeads: number,
  headDim: number,
): number {
  let copied = 0;
  for (let h = 0; h < kvHeads; h++) {
    const from = (src.row * kvHeads + h) * src.length * headDim;
    const to = (row * kvHeads + h) * dstLength * headDim;
    copied = 0;
    let j = 0;
    while (j < src.length) {
      if (src.real && src.real[j] !== REAL) {
        j++;
        continue;
      }
      let end = j + 1;
      while (end < src.length && (!src.real || src.real[end] === REAL)) end++;
      dst.set(src.data.subarray(from + j * headDim, from + end * headDim), to + copied * headDim);
      copied += end - j;
      j = end;
    }
  }
  return copied;
}
