import { describe, expect, it } from 'vitest';
import { headSliceRows } from './compute-weights.ts';

describe('headSliceRows', () => {
  it('slices a quantized head into at most 4,096 rows and 4 MiB of f32 scratch, a power of two of rows', () => {
    const widths = [48, 64, 256, 512, 768, 1024, 2048, 4096];
    expect(widths.map(headSliceRows)).toEqual([4096, 4096, 4096, 2048, 1024, 1024, 512, 256]);
    for (const d of widths) expect(headSliceRows(d) * d * 4).toBeLessThanOrEqual(4 << 20);
  });
});
