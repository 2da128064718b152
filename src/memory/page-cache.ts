/**
 * L1 and L2: caches of *pages* of rows (a few consecutive token ids of one table shard), so one
 * cache entry serves several tokens and a cold prompt needs few lookups. Keys carry the bundle
 * version, so a cache never serves a row of another version.
 */
export interface PageCache {
  readonly tier: 'cache' | 'kv';
  get(key: string): Promise<Uint8Array | null>;
  put(key: string, bytes: Uint8Array): Promise<void>;
}

/** L1: the Cache API of the data centre (Web standard `Cache`; `caches.default` in Workers). */
export class CacheApiPageCache implements PageCache {
  readonly tier = 'cache';

  constructor(private readonly cache: Cache) {}

  async get(key: string): Promise<Uint8Array | null> {
    const response = await this.cache.match(this.url(key));
    return response ? new Uint8Array(await response.arrayBuffer()) : null;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    // Pages are immutable (the key names the version), so they may be cached for a year.
    const response = new Response(bytes as Uint8Array<ArrayBuffer>, {
      headers: { 'cache-control': 'public, max-age=31536000, immutable', 'content-type': 'application/octet-stream' },
    });
    await this.cache.put(this.url(key), response);
  }

  private url(key: string): string {
    return `https://rows.flexmem.internal/${key}`;
  }
}

/** The part of a Workers KV namespace a page cache needs. */
export interface KvLike {
  get(key: string, type: 'arrayBuffer'): Promise<ArrayBuffer | null>;
  put(key: string, value: ArrayBuffer, options?: { expirationTtl?: number }): Promise<void>;
}

/** L2: Workers KV, global and eventually consistent, which is fine for immutable pages. */
export class KvPageCache implements PageCache {
  readonly tier = 'kv';

  constructor(
    private readonly kv: KvLike,
    private readonly ttlSeconds = 30 * 24 * 3600,
  ) {}

  async get(key: string): Promise<Uint8Array | null> {
    const value = await this.kv.get(key, 'arrayBuffer');
    return value ? new Uint8Array(value) : null;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    await this.kv.put(key, bytes.slice().buffer, { expirationTtl: this.ttlSeconds });
  }
}
