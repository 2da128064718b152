import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.ts';
import { decodeFloats, encodeFloats } from './dtype.ts';
import { encodeHeader, headerLength, parseHeader } from './safetensors.ts';

/** A whole safetensors file in memory, written with this module's own writer. */
function file(tensors: { name: string; shape: number[]; values: number[] }[], dtype: 'f32' | 'f16'): Uint8Array {
  const parts = [encodeHeader(tensors, dtype), ...tensors.map((t) => encodeFloats(Float32Array.from(t.values), dtype))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

function read(bytes: Uint8Array) {
  const n = headerLength(bytes.subarray(0, 8), 'test');
  return parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength, 'test').map((e) => ({
    ...e,
    values: Array.from(decodeFloats(bytes.subarray(e.begin, e.end), e.dtype)),
  }));
}

describe('safetensors', () => {
  const tensors = [
    { name: 'a', shape: [2, 3], values: [1, -2, 3.5, 0, 1e-3, -7] },
    { name: 'b.ü', shape: [1], values: [0.25] },
  ];

  it('round-trips f32 exactly and keeps the data 8-byte aligned', () => {
    const bytes = file(tensors, 'f32');
    const entries = read(bytes);
    expect(entries.map((e) => [e.name, e.shape, e.dtype])).toEqual([
      ['a', [2, 3], 'f32'],
      ['b.ü', [1], 'f32'],
    ]);
    expect(entries[0].values).toEqual(Array.from(Float32Array.from(tensors[0].values)));
    expect(entries[0].begin % 8).toBe(0);
  });

  it('round-trips f16 to f16 precision', () => {
    const [a] = read(file(tensors, 'f16'));
    a.values.forEach((v, i) => {
      expect(v).toBeCloseTo(tensors[0].values[i], 3);
    });
  });

  it('decodes bf16 as the upper half of f32', () => {
    const f32 = new Float32Array([1.5, -3.25]);
    const upper = new Uint16Array(new Uint32Array(f32.buffer).map((bits) => bits >>> 16));
    expect(Array.from(decodeFloats(new Uint8Array(upper.buffer), 'bf16'))).toEqual([1.5, -3.25]);
  });

  it('refuses a corrupt byte range and an unsupported dtype', () => {
    const header = (h: object) => new TextEncoder().encode(JSON.stringify(h));
    expect(() => parseHeader(header({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 8] } }), 1000, 'f')).toThrow(/corrupt byte range/);
    expect(() => parseHeader(header({ x: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }), 1000, 'f')).toThrow(InputError);
    expect(() => headerLength(new Uint8Array(4), 'f')).toThrow(/not a safetensors file/);
  });
});

describe('the f16 table', () => {
  it('decodes every half exactly as the reference polyfill does', async () => {
    const { getFloat16 } = await import('@petamoriken/float16');
    const { halfToFloatTable } = await import('./dtype.ts');
    const table = halfToFloatTable();
    const view = new DataView(new ArrayBuffer(2));
    for (let h = 0; h < 65536; h++) {
      view.setUint16(0, h, true);
      const expected = getFloat16(view, 0, true);
      if (Number.isNaN(expected)) expect(table[h]).toBeNaN();
      else expect(table[h]).toBe(expected);
    }
  });
});
