import { describe, expect, it } from 'vitest';
import { parseConfig } from '../model/config.ts';
import { presetConfig } from '../model/presets.ts';
import { Random } from '../util/random.ts';
import { decodeRow, encodeRows, rowLayout, type TableDtype } from './row-codec.ts';

const config = parseConfig(presetConfig('tiny', 'meki'));

function roundTrip(dtype: TableDtype) {
  const layout = rowLayout(config, dtype);
  const rng = new Random(7);
  const values = Float32Array.from({ length: 3 * layout.rowValues }, () => rng.normal() * 3);
  const stored = encodeRows(values, 3, layout);
  expect(stored.byteLength).toBe(3 * layout.rowBytes);
  const decoded = new Float32Array(values.length);
  for (let r = 0; r < 3; r++) decodeRow(stored.subarray(r * layout.rowBytes), layout, decoded, r * layout.rowValues);
  return { layout, values, decoded };
}

describe('memory rows', () => {
  it('lays out one slice per memory layer, token-major', () => {
    const layout = rowLayout(config, 'int8');
    expect(layout.slices.map((s) => [s.layer, s.kind, s.width, s.byteOffset])).toEqual([
      [0, 'gated', 16, 0],
      [1, 'gated', 16, 20],
      [2, 'gated', 16, 40],
      [3, 'gated', 16, 60],
    ]);
    expect(layout.rowBytes).toBe(80);
  });

  it('stores f32 exactly', () => {
    const { values, decoded } = roundTrip('f32');
    expect(decoded).toEqual(values);
  });

  it('stores f16 to half precision', () => {
    const { values, decoded } = roundTrip('f16');
    values.forEach((v, i) => {
      expect(Math.abs(decoded[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 1e-3 + 1e-4);
    });
  });

  it('stores int8 within half a step of its per-token, per-layer scale', () => {
    const { layout, values, decoded } = roundTrip('int8');
    for (let r = 0; r < 3; r++) {
      for (const s of layout.slices) {
        const slice = values.subarray(r * layout.rowValues + s.valueOffset, r * layout.rowValues + s.valueOffset + s.width);
        const step = Math.max(...Array.from(slice, Math.abs)) / 127;
        slice.forEach((v, i) => {
          expect(Math.abs(decoded[r * layout.rowValues + s.valueOffset + i] - v)).toBeLessThanOrEqual(step / 2 + 1e-6);
        });
      }
    }
  });
});
