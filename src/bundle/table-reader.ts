/**
 * Reading memory rows out of a bundle's tables by token id. Where the bytes come from is the
 * caller's business (a local file, an R2 binding, an S3 endpoint): it supplies a RangeReader.
 */
import { FlexmemError } from '../errors.ts';
import type { BundleManifest, TableShard } from './manifest.ts';
import { decodeRow, type RowLayout } from './row-codec.ts';

/** Reads `length` bytes at `offset` of a bundle object. */
export interface RangeReader {
  read(path: string, offset: number, length: number): Promise<Uint8Array>;
}

/** Memory rows by token id: rows(ids) is [ids.length, R] f32, row i for ids[i]. */
export interface RowSource {
  readonly rowValues: number;
  rows(tokenIds: readonly number[]): Promise<Float32Array>;
}

export class TableRowSource implements RowSource {
  private readonly layout: RowLayout;
  private readonly shards: TableShard[];

  constructor(tables: NonNullable<BundleManifest['tables']>, private readonly reader: RangeReader) {
    this.layout = tables.layout;
    this.shards = tables.shards;
  }

  get rowValues(): number {
    return this.layout.rowValues;
  }

  async rows(tokenIds: readonly number[]): Promise<Float32Array> {
    const out = new Float32Array(tokenIds.length * this.layout.rowValues);
    const fetched = await this.fetchRows(tokenIds);
    tokenIds.forEach((id, i) => decodeRow(fetched.get(id)!, this.layout, out, i * this.layout.rowValues));
    return out;
  }

  /** Stored bytes of each distinct id, neighbouring ids of one shard coalesced into one range read. */
  async fetchRows(tokenIds: readonly number[]): Promise<Map<number, Uint8Array>> {
    const ids = [...new Set(tokenIds)].sort((a, b) => a - b);
    const runs: { shard: TableShard; first: number; count: number }[] = [];
    for (const id of ids) {
      const shard = this.shardOf(id);
      const last = runs.at(-1);
      if (last && last.shard === shard && last.first + last.count === id) last.count++;
      else runs.push({ shard, first: id, count: 1 });
    }
    const { rowBytes } = this.layout;
    const result = new Map<number, Uint8Array>();
    await Promise.all(
      runs.map(async ({ shard, first, count }) => {
        const bytes = await this.reader.read(shard.path, (first - shard.firstToken) * rowBytes, count * rowBytes);
        if (bytes.byteLength !== count * rowBytes) throw new FlexmemError(`${shard.path}: short read for tokens ${first}..${first + count - 1}`);
        for (let i = 0; i < count; i++) result.set(first + i, bytes.subarray(i * rowBytes, (i + 1) * rowBytes));
      }),
    );
    return result;
  }

  private shardOf(id: number): TableShard {
    const shard = this.shards.find((s) => id >= s.firstToken && id < s.firstToken + s.tokenCount);
    if (!Number.isInteger(id) || !shard) throw new FlexmemError(`no memory row for token ${id}`);
    return shard;
  }
}
