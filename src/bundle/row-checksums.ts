/**
 * Row checksums: one CRC-32C (Castagnoli) per stored table row, so a range read of any rows can be
 * checked on its own, which a whole-object sha256 cannot do. Per row rather than per page because
 * pages are a serving setting (PAGE_BYTES) while rows are fixed by the bundle.
 *
 * Stored as `tables/rows.crc32c`: for token ids 0..V-1 in order, the CRC-32C of that token's
 * stored row (`rowBytes` bytes), uint32 little-endian; 4·V bytes, listed in the manifest with its
 * size and sha256.
 */
import CRC32C from 'crc-32/crc32c.js';
import { InputError } from '../errors.ts';

export const ROW_CHECKSUM_ALGORITHM = 'crc32c' as const;
export const ROW_CHECKSUMS_PATH = 'tables/rows.crc32c';
export const ROW_CHECKSUM_BYTES = 4;

/** The CRC-32C of one stored row, unsigned. */
export function rowChecksum(row: Uint8Array): number {
  return CRC32C.buf(row, 0) >>> 0;
}

/** The stored checksums of `rows.byteLength / rowBytes` consecutive rows. */
export function encodeRowChecksums(rows: Uint8Array, rowBytes: number): Uint8Array {
  const count = rows.byteLength / rowBytes;
  const out = new Uint8Array(count * ROW_CHECKSUM_BYTES);
  const view = new DataView(out.buffer);
  for (let r = 0; r < count; r++)
    view.setUint32(r * ROW_CHECKSUM_BYTES, rowChecksum(rows.subarray(r * rowBytes, (r + 1) * rowBytes)), true);
  return out;
}

/** A stored checksum object: the checksum of every token's row, indexed by token id. */
export function decodeRowChecksums(bytes: Uint8Array, tokenCount: number): Uint32Array {
  if (bytes.byteLength !== tokenCount * ROW_CHECKSUM_BYTES)
    throw new InputError(`holds ${bytes.byteLength} bytes of row checksums; ${tokenCount} tokens need ${tokenCount * ROW_CHECKSUM_BYTES}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Uint32Array.from({ length: tokenCount }, (_, i) => view.getUint32(i * ROW_CHECKSUM_BYTES, true));
}

/**
 * The token id of the first row in `rows` (consecutive rows from `firstToken` on) that does not
 * match its checksum, or -1 when all do.
 */
export function firstCorruptRow(rows: Uint8Array, rowBytes: number, firstToken: number, checksums: Uint32Array): number {
  const count = Math.ceil(rows.byteLength / rowBytes);
  for (let r = 0; r < count; r++) {
    const row = rows.subarray(r * rowBytes, (r + 1) * rowBytes);
    if (row.byteLength !== rowBytes || rowChecksum(row) !== checksums[firstToken + r]) return firstToken + r;
  }
  return -1;
}
