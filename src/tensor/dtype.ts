import { getFloat16, setFloat16 } from '@petamoriken/float16';

/** Element types flexmem reads from checkpoints and writes to tables. */
export type FloatDtype = 'f32' | 'f16' | 'bf16';

export const BYTES_PER_ELEMENT: Record<FloatDtype, number> = { f32: 4, f16: 2, bf16: 2 };

/** Decodes little-endian floats of the given dtype into a new Float32Array. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDtype): Float32Array {
  const count = bytes.byteLength / BYTES_PER_ELEMENT[dtype];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (dtype === 'f32') {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  } else if (dtype === 'f16') {
    for (let i = 0; i < count; i++) out[i] = getFloat16(view, i * 2, true);
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
