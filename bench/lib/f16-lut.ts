/**
 * A candidate for src/bundle/row-codec.ts's f16 decode, benchmarked against it (not used by the
 * project): a 65536-entry float16 -> float32 table (256 KiB, built once), so decoding a value is
 * one Uint16 read and one table load instead of a call into the float16 polyfill.
 */
import type { RowLayout } from '../../src/bundle/row-codec.ts';

let table: Float32Array | null = null;

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

export function f16Table(): Float32Array {
  if (!table) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  }
  return table;
}

/** Same contract as decodeRow for f16 layouts. */
export function decodeRowF16Lut(bytes: Uint8Array, layout: RowLayout, out: Float32Array, outOffset: number): void {
  const lut = f16Table();
  for (const s of layout.slices) {
    const dst = outOffset + s.valueOffset;
    const start = bytes.byteOffset + s.byteOffset;
    if (start % 2 === 0) {
      const halves = new Uint16Array(bytes.buffer, start, s.width);
      for (let i = 0; i < s.width; i++) out[dst + i] = lut[halves[i]];
    } else {
      for (let i = 0; i < s.width; i++) out[dst + i] = lut[bytes[s.byteOffset + 2 * i] | (bytes[s.byteOffset + 2 * i + 1] << 8)];
    }
  }
}
