/**
 * An R2 bucket of Miniflare (the local R2 of tests and of `wrangler dev`) as an ObjectStore.
 * Miniflare hands Node a proxy with the R2 binding's API.
 */
import type { Miniflare } from 'miniflare';
import type { ByteRange, ObjectStore, PutOptions } from '../../src/storage/object-store.ts';

type R2Proxy = Awaited<ReturnType<Miniflare['getR2Bucket']>>;

export function miniflareR2Store(r2: R2Proxy): ObjectStore {
  return {
    async get(key: string, range?: ByteRange) {
      const object = await r2.get(key, range ? { range } : undefined);
      return object ? new Uint8Array(await object.arrayBuffer()) : null;
    },
    async put(key: string, body: Uint8Array, options?: PutOptions) {
      // The proxy serializes an exact ArrayBuffer, not a view of a larger Node Buffer.
      await r2.put(key, body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength) as ArrayBuffer);
      options?.onProgress?.(body.byteLength);
    },
    async list(prefix: string) {
      const keys: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await r2.list({ prefix, cursor });
        keys.push(...page.objects.map((o) => o.key));
        cursor = page.truncated ? page.cursor : undefined;
      } while (cursor);
      return keys.sort();
    },
    async delete(key: string) {
      await r2.delete(key);
    },
  };
}
