/** The R2 binding as an ObjectStore. */
import type { ByteRange, ObjectStore, PutOptions } from '../src/storage/object-store.ts';

export class R2Store implements ObjectStore {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly prefix = '',
  ) {}

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const object = await this.bucket.get(this.prefix + key, range ? { range: { offset: range.offset, length: range.length } } : undefined);
    return object ? new Uint8Array(await object.arrayBuffer()) : null;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
    await this.bucket.put(this.prefix + key, body);
    options?.onProgress?.(body.byteLength);
  }

  async delete(key: string): Promise<void> {
    await this.bucket.delete(this.prefix + key);
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.bucket.list({ prefix: this.prefix + prefix, cursor });
      keys.push(...page.objects.map((o) => o.key.slice(this.prefix.length)));
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor);
    return keys.sort();
  }
}
