import { setFloat16 } from '@petamoriken/float16';

/** Element types flexmem reads from checkpoints and writes to tables. */
export type FloatDtype = 'f32' | 'f16' | 'bf16';

export const BYTES_PER_ELEMENT: Record<FloatDtype, number> = { f32: 4, f16: 2, bf16: 2 };

let halfTable: Float32Array | null = null;

/**
 * Every IEEE half as an f32, indexed by its 16 bits: decoding a row becomes one table read per
 * value. The polyfill's getFloat16 took about 0.7 µs a value, which made an f16 row lookup cost
 * more than a whole decode step (docs/BENCHMARKS.md); the table takes 256 KB and well under a
 * millisecond to build, once per isolate.
 */
export function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0)
      halfTable[h] = sign * fraction * 2 ** -24; // subnormal
    else if (exponent === 31) halfTable[h] = fraction ? NaN : sign * Infinity;
    else halfTable[h] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return halfTable;
}

/** Decodes little-endian floats of the given dtype into a new Float32Array. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDtype): Float32Array {
  const count = bytes.byteLength / BYTES_PER_ELEMENT[dtype];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (dtype === 'f32') {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (dtype === 'f16') {
    const table = halfToFloatTable();
    for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)];
  } else {
    // bf16 is the upper half of an f32.
    const bits = new Uint32Array(1);
    const asFloat = new Float32Array(bits.buffer);
    for (let i = 0; i < count; i++) {
      bits[0] = view.getUint16(i * 2, true) << 16;
      out[i] = asFloat[0];
    }
  }
  return out;
}

/** Encodes floats as little-endian f32 or f16 (round to nearest even). */
export function encodeFloats(values: Float32Array, dtype: 'f32' | 'f16'): Uint8Array {
  const out = new Uint8Array(values.length * BYTES_PER_ELEMENT[dtype]);
  const view = new DataView(out.buffer);
  if (dtype === 'f32') {
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  } else {
    for (let i = 0; i < values.length; i++) setFloat16(view, i * 2, values[i], true);
  }
  return out;
}
