import { describe, expect, it } from 'vitest';
import { CacheApiPageCache, KvPageCache, type KvLike } from './page-cache.ts';

class FakeCache {
  readonly stored = new Map<string, Response>();
  async match(url: string) {
    return this.stored.get(url)?.clone();
  }
  async put(url: string, response: Response) {
    this.stored.set(url, response);
  }
}

describe('CacheApiPageCache (L1)', () => {
  it('stores a page as an immutable response under a URL naming its key, and reads it back', async () => {
    const fake = new FakeCache();
    const cache = new CacheApiPageCache(fake as unknown as Cache);
    expect(cache.tier).toBe('cache');
    expect(await cache.get('v1/p4/tables/rows-00000.bin/3')).toBeNull();
    await cache.put('v1/p4/tables/rows-00000.bin/3', Uint8Array.from([1, 2, 3]));
    const response = fake.stored.get('https://rows.flexmem.internal/v1/p4/tables/rows-00000.bin/3')!;
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    expect(await cache.get('v1/p4/tables/rows-00000.bin/3')).toEqual(Uint8Array.from([1, 2, 3]));
  });
});

describe('KvPageCache (L2)', () => {
  function fakeKv() {
    const puts: { key: string; value: ArrayBuffer; options?: { expirationTtl?: number } }[] = [];
    const kv: KvLike = {
      get: async (key, type) => {
        expect(type).toBe('arrayBuffer');
        return puts.find((p) => p.key === key)?.value ?? null;
      },
      put: async (key, value, options) => {
        puts.push({ key, value, options });
      },
    };
    return { kv, puts };
  }

  it('stores exactly the page bytes for 30 days by default, and reads them back', async () => {
    const { kv, puts } = fakeKv();
    const cache = new KvPageCache(kv);
    expect(cache.tier).toBe('kv');
    expect(await cache.get('k')).toBeNull();
    const run = Uint8Array.from([9, 9, 1, 2, 3, 9]);
    await cache.put('k', run.subarray(2, 5));
    expect(puts[0].options).toEqual({ expirationTtl: 30 * 24 * 3600 });
    expect(puts[0].value.byteLength).toBe(3);
    expect(await cache.get('k')).toEqual(Uint8Array.from([1, 2, 3]));
  });

  it('takes another expiry', async () => {
    const { kv, puts } = fakeKv();
    await new KvPageCache(kv, 60).put('k', Uint8Array.from([1]));
    expect(puts[0].options).toEqual({ expirationTtl: 60 });
  });
});
