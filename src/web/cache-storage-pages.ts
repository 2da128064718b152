/**
 * The browser's page tier: pages of memory rows in Cache Storage, which outlives the page, so a
 * second visit reads its rows from disk instead of the network. It is the same PageCache the
 * worker's Cache API tier implements, plugged into the same MemoryHierarchy, which checks every
 * row of a page against its checksum before use (a damaged page is a miss).
 *
 * Cache Storage has no size bound or eviction of its own (the browser drops a whole origin under
 * storage pressure), so this tier keeps its own: at most `budgetBytes` of pages, the least
 * recently used evicted first. The order is kept in memory and saved as one index entry after
 * the reads and writes of a wave; pages found without an index entry (another tab wrote them, an
 * index was lost) are adopted as the oldest.
 */
import type { PageCache } from '../memory/page-cache.ts';

/** 64 MiB: the demo's whole f32 table is 33 MiB; a real model's tables never fit, its working set does. */
export const DEFAULT_PAGE_BUDGET_BYTES = 64 << 20;
export const PAGE_CACHE_NAME = 'flexmem-pages';

const ORIGIN = 'https://pages.flexmem.local/';
const INDEX_URL = `${ORIGIN}index.json`;

interface State {
  cache: Cache;
  /** Page key → bytes, least recently used first. */
  lru: Map<string, number>;
  total: number;
}

export class CacheStoragePageCache implements PageCache {
  readonly tier = 'cache';
  private state: Promise<State> | null = null;
  private saveQueued = false;

  constructor(
    private readonly storage: CacheStorage,
    private readonly budgetBytes = DEFAULT_PAGE_BUDGET_BYTES,
    private readonly name = PAGE_CACHE_NAME,
  ) {}

  async get(key: string): Promise<Uint8Array | null> {
    const state = await this.open();
    const response = await state.cache.match(ORIGIN + key);
    const bytes = state.lru.get(key);
    if (!response) {
      if (bytes !== undefined) this.forget(state, key);
      return null;
    }
    const page = new Uint8Array(await response.arrayBuffer());
    state.lru.delete(key);
    state.lru.set(key, page.byteLength);
    if (bytes === undefined) state.total += page.byteLength;
    this.queueSave(state);
    return page;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength > this.budgetBytes) return;
    const state = await this.open();
    await state.cache.put(ORIGIN + key, new Response(bytes as Uint8Array<ArrayBuffer>));
    this.forget(state, key);
    state.lru.set(key, bytes.byteLength);
    state.total += bytes.byteLength;
    await this.evict(state);
    this.queueSave(state);
  }

  /** Bytes of pages held now (as this tab knows it). */
  async bytesHeld(): Promise<number> {
    return (await this.open()).total;
  }

  private forget(state: State, key: string): void {
    const bytes = state.lru.get(key);
    if (bytes === undefined) return;
    state.lru.delete(key);
    state.total -= bytes;
  }

  private async evict(state: State): Promise<void> {
    while (state.total > this.budgetBytes) {
      const [oldest] = state.lru.keys();
      this.forget(state, oldest);
      await state.cache.delete(ORIGIN + oldest);
    }
  }

  /** One index write per wave of reads and writes, not one per page. */
  private queueSave(state: State): void {
    if (this.saveQueued) return;
    this.saveQueued = true;
    setTimeout(() => {
      this.saveQueued = false;
      state.cache.put(INDEX_URL, Response.json([...state.lru])).catch(() => {});
    }, 0);
  }

  private open(): Promise<State> {
    this.state ??= this.load();
    return this.state;
  }

  private async load(): Promise<State> {
    const cache = await this.storage.open(this.name);
    const saved = await cache.match(INDEX_URL);
    const entries = saved ? indexEntries(await saved.json().catch(() => null)) : [];
    const present = new Set((await cache.keys()).map((request) => request.url).filter((url) => url !== INDEX_URL));
    const indexed = entries.filter(([key]) => present.has(ORIGIN + key));
    const known = new Set(indexed.map(([key]) => ORIGIN + key));
    const adopted: [string, number][] = [];
    for (const url of present) {
      if (known.has(url)) continue;
      const response = await cache.match(url);
      if (response) adopted.push([url.slice(ORIGIN.length), (await response.arrayBuffer()).byteLength]);
    }
    const lru = new Map([...adopted, ...indexed]);
    const state = { cache, lru, total: [...lru.values()].reduce((sum, bytes) => sum + bytes, 0) };
    await this.evict(state);
    return state;
  }
}

function indexEntries(raw: unknown): [string, number][] {
  if (!Array.isArray(raw)) return [];
  return raw.filter(
    (entry): entry is [string, number] =>
      Array.isArray(entry) && typeof entry[0] === 'string' && Number.isInteger(entry[1]) && entry[1] >= 0,
  );
}
