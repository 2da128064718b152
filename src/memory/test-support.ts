/** Test doubles shared by the memory tier's unit tests (not part of the library). */
import type { PageCache } from './page-cache.ts';

/** A page cache in a Map, standing in for the Cache API or KV; `pages` shows what was cached. */
export class MapCache implements PageCache {
  readonly tier = 'cache';
  readonly pages = new Map<string, Uint8Array>();
  async get(key: string) {
    return this.pages.get(key) ?? null;
  }
  async put(key: string, bytes: Uint8Array) {
    this.pages.set(key, bytes);
  }
}
