import type { BundleObject } from '../storage/object-store.ts';

/** Reads `length` bytes at `offset` of a bundle object (a local file, an R2 object, an S3 object). */
export interface RangeReader {
  read(object: BundleObject, offset: number, length: number): Promise<Uint8Array>;
}

/** Memory rows by token id: rows(ids) is [ids.length, R] f32, row i for ids[i]. */
export interface RowSource {
  readonly rowValues: number;
  rows(tokenIds: readonly number[]): Promise<Float32Array>;
}
