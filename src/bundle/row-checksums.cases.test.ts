import { describe, expect, it } from 'vitest';
import { firstCorruptRow, ROW_CHECKSUM_ALGORITHM, ROW_CHECKSUMS_PATH, rowChecksum } from './row-checksums.ts';

describe('row checksums: the stored object and short rows', () => {
  it('live at tables/rows.crc32c as crc32c', () => {
    expect(ROW_CHECKSUMS_PATH).toBe('tables/rows.crc32c');
    expect(ROW_CHECKSUM_ALGORITHM).toBe('crc32c');
  });

  it('call a short last row corrupt even when its bytes match the checksum given', () => {
    const rows = Uint8Array.from([1, 2, 3, 4, 5, 6, 7]);
    const checksums = Uint32Array.from([rowChecksum(rows.subarray(0, 4)), rowChecksum(rows.subarray(4))]);
    expect(firstCorruptRow(rows, 4, 0, checksums)).toBe(1);
  });
});
