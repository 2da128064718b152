/**
 * Token-major memory rows: row(v) holds every memory layer's slice for token v, contiguous, so
 * one range read fetches all of a token's memory. A slice is stored as
 *   f32:  width × float32
 *   f16:  width × float16
 *   int8: float32 scale, then width × int8   (value = scale · q, scale = max|x| / 127 per token and layer)
 * all little-endian, slices in layer order, no padding.
 */
import { setFloat16 } from '@petamoriken/float16';
import { memorySlices, type MemoryKind, type ModelConfig } from '../model/config.ts';
import { halfToFloatTable } from '../tensor/dtype.ts';

export const TABLE_DTYPES = ['f32', 'f16', 'int8'] as const;
export type TableDtype = (typeof TABLE_DTYPES)[number];

export interface RowSlice {
  layer: number;
  kind: MemoryKind;
  /** Values in the slice. */
  width: number;
  /** Byte offset of the slice within the stored row. */
  byteOffset: number;
  /** Offset in values within the decoded f32 row the compute graph receives. */
  valueOffset: number;
}

export interface RowLayout {
  dtype: TableDtype;
  /** Bytes per stored row. */
  rowBytes: number;
  /** Values per decoded row (R). */
  rowValues: number;
  slices: RowSlice[];
}

const sliceBytes = (dtype: TableDtype, width: number) => (dtype === 'f32' ? 4 * width : dtype === 'f16' ? 2 * width : 4 + width);

export function rowLayout(config: ModelConfig, dtype: TableDtype): RowLayout {
  let byteOffset = 0;
  const slices = memorySlices(config).map((s) => {
    const slice = { layer: s.layer, kind: s.kind, width: s.width, byteOffset, valueOffset: s.offset };
    byteOffset += sliceBytes(dtype, s.width);
    return slice;
  });
  const rowValues = slices.reduce((n, s) => n + s.width, 0);
  return { dtype, rowBytes: byteOffset, rowValues, slices };
}

/** Encodes `count` rows of f32 values ([count, R]) into stored bytes ([count, rowBytes]). */
export function encodeRows(values: Float32Array, count: number, layout: RowLayout): Uint8Array {
  const out = new Uint8Array(count * layout.rowBytes);
  const view = new DataView(out.buffer);
  for (let r = 0; r < count; r++) {
    for (const s of layout.slices) {
      const src = r * layout.rowValues + s.valueOffset;
      const dst = r * layout.rowBytes + s.byteOffset;
      if (layout.dtype === 'f32') {
        for (let i = 0; i < s.width; i++) view.setFloat32(dst + 4 * i, values[src + i], true);
      } else if (layout.dtype === 'f16') {
        for (let i = 0; i < s.width; i++) setFloat16(view, dst + 2 * i, values[src + i], true);
      } else {
        let maxAbs = 0;
        for (let i = 0; i < s.width; i++) maxAbs = Math.max(maxAbs, Math.abs(values[src + i]));
        const scale = maxAbs / 127;
        view.setFloat32(dst, scale, true);
        for (let i = 0; i < s.width; i++) view.setInt8(dst + 4 + i, scale === 0 ? 0 : Math.round(values[src + i] / scale));
      }
    }
  }
  return out;
}

/** Decodes one stored row into `out` at value offset `outOffset`. */
export function decodeRow(bytes: Uint8Array, layout: RowLayout, out: Float32Array, outOffset: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, layout.rowBytes);
  for (const s of layout.slices) {
    const dst = outOffset + s.valueOffset;
    if (layout.dtype === 'f32') {
      for (let i = 0; i < s.width; i++) out[dst + i] = view.getFloat32(s.byteOffset + 4 * i, true);
    } else if (layout.dtype === 'f16') {
      const table = halfToFloatTable();
      for (let i = 0; i < s.width; i++) out[dst + i] = table[view.getUint16(s.byteOffset + 2 * i, true)];
    } else {
      const scale = view.getFloat32(s.byteOffset, true);
      for (let i = 0; i < s.width; i++) out[dst + i] = scale * view.getInt8(s.byteOffset + 4 + i);
    }
  }
}
