import { describe, expect, it } from 'vitest';
import { lensLayerBytes, lensRecordBytes, readLensLayer, writeLensLayer, type LensLayerEntry } from './lens-format.ts';

const entry = (seed: number, k: number): LensLayerEntry => {
  const list = (offset: number) => ({
    ids: Int32Array.from({ length: k }, (_, i) => seed * 100 + offset + i),
    scores: Float32Array.from({ length: k }, (_, i) => Math.fround(seed + offset / 10 - i / 8)),
  });
  return { promoted: list(0), suppressed: list(30), neighbours: list(60) };
};

describe('lens records', () => {
  it('round-trip every layer of a record at its own offset, lists apart', () => {
    const k = 3;
    const layers = 4;
    const record = new Uint8Array(lensRecordBytes(k, layers));
    const view = new DataView(record.buffer);
    for (let l = 0; l < layers; l++) writeLensLayer(view, l * lensLayerBytes(k), k, entry(l + 1, k));
    expect(record.byteLength).toBe(layers * 6 * k * 4);
    for (let l = 0; l < layers; l++) expect(readLensLayer(record, l, k)).toEqual(entry(l + 1, k));
    // Negative control: a neighbouring layer reads differently.
    expect(readLensLayer(record, 1, k)).not.toEqual(entry(1, k));
  });
});
