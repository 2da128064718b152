import { describe, expect, it } from 'vitest';
import { decodeRowChecksums, encodeRowChecksums, firstCorruptRow, rowChecksum } from './row-checksums.ts';

const rowBytes = 24;
const rows = Uint8Array.from({ length: 10 * rowBytes }, (_, i) => (i * 37 + 11) & 0xff);

describe('row checksums', () => {
  it('are CRC-32C (Castagnoli): the standard check values', () => {
    expect(rowChecksum(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(rowChecksum(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    expect(rowChecksum(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(rowChecksum(new Uint8Array(0))).toBe(0);
  });

  it('are stored as one uint32 little-endian per row, and read back by token id', () => {
    const stored = encodeRowChecksums(rows, rowBytes);
    expect(stored.byteLength).toBe(10 * 4);
    const first = rowChecksum(rows.subarray(0, rowBytes));
    expect(Array.from(stored.subarray(0, 4))).toEqual([first & 0xff, (first >>> 8) & 0xff, (first >>> 16) & 0xff, first >>> 24]);
    const checksums = decodeRowChecksums(stored, 10);
    expect(checksums[7]).toBe(rowChecksum(rows.subarray(7 * rowBytes, 8 * rowBytes)));
    // The same from an unaligned view into a larger buffer.
    const padded = new Uint8Array(stored.byteLength + 3);
    padded.set(stored, 3);
    expect(decodeRowChecksums(padded.subarray(3), 10)).toEqual(checksums);
  });

  it('refuse a checksum object of the wrong size', () => {
    expect(() => decodeRowChecksums(new Uint8Array(39), 10)).toThrow('holds 39 bytes of row checksums; 10 tokens need 40');
  });

  it('find the first row that does not match, by token id, in any run of rows', () => {
    const checksums = decodeRowChecksums(encodeRowChecksums(rows, rowBytes), 10);
    expect(firstCorruptRow(rows, rowBytes, 0, checksums)).toBe(-1);
    expect(firstCorruptRow(rows.subarray(3 * rowBytes, 6 * rowBytes), rowBytes, 3, checksums)).toBe(-1);
    const damaged = rows.slice();
    damaged[5 * rowBytes + 13] ^= 0x01; // one bit, mid-row
    damaged[8 * rowBytes] ^= 0x80;
    expect(firstCorruptRow(damaged, rowBytes, 0, checksums)).toBe(5);
    expect(firstCorruptRow(damaged.subarray(6 * rowBytes), rowBytes, 6, checksums)).toBe(8);
    // Rows checked against another token's checksums, a short last row, a token past the end: all corrupt.
    expect(firstCorruptRow(rows.subarray(0, 2 * rowBytes), rowBytes, 1, checksums)).toBe(1);
    expect(firstCorruptRow(rows.subarray(0, 2 * rowBytes - 1), rowBytes, 0, checksums)).toBe(1);
    expect(firstCorruptRow(rows.subarray(0, rowBytes), rowBytes, 10, checksums)).toBe(10);
  });
});
