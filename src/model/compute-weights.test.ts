import { describe, expect, it } from 'vitest';
import { headSliceRows } from './compute-weights.ts';

describe('headSliceRows', () => {
  it('slices a quantized head into at most 4,096 rows and 8 MiB of f32 scratch, a power of two of rows', () => {
    const widths = [48, 64, 256, 512, 768, 1024, 2048, 4096];
    expect(widths.map(headSliceRows)).toEqual([4096, 4096, 4096, 4096, 2048, 2048, 1024, 512]);
    for (const d of widths) expect(headSliceRows(d) * d * 4).toBeLessThanOrEqual(8 << 20);
  });
});
