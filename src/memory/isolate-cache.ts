/**
 * L0, the isolate's own memory: per bundle version a hot set (rows of the most frequent tokens,
 * read once at first use) plus an LRU of recently used rows, together under one byte budget.
 * flexmem tokenizers number tokens by frequency, so the hot set is the rows of ids [0, n).
 */
export type IsolateTier = 'hot' | 'lru';

interface HotSet {
  count: number;
  rowBytes: number;
  bytes: Uint8Array;
}

export class IsolateRowCache {
  private readonly hot = new Map<string, HotSet>();
  private readonly lru = new Map<string, Uint8Array>();
  private lruBytes = 0;
  private hotBytes = 0;

  constructor(private readonly budgetBytes: number) {}

  get(version: string, id: number): { bytes: Uint8Array; tier: IsolateTier } | null {
    const hot = this.hot.get(version);
    if (hot && id < hot.count) return { bytes: hot.bytes.subarray(id * hot.rowBytes, (id + 1) * hot.rowBytes), tier: 'hot' };
    const key = `${version}:${id}`;
    const bytes = this.lru.get(key);
    if (!bytes) return null;
    this.lru.delete(key); // re-insert: Map order is recency order
    this.lru.set(key, bytes);
    return { bytes, tier: 'lru' };
  }

  put(version: string, id: number, bytes: Uint8Array): void {
    const key = `${version}:${id}`;
    if (this.lru.has(key) || bytes.byteLength > this.budgetBytes - this.hotBytes) return;
    const copy = bytes.slice(); // do not pin the whole page or range read the row came from
    this.lru.set(key, copy);
    this.lruBytes += copy.byteLength;
    this.evictToBudget();
  }

  private evictToBudget(): void {
    for (const [oldest, old] of this.lru) {
      if (this.lruBytes + this.hotBytes <= this.budgetBytes) break;
      this.lru.delete(oldest);
      this.lruBytes -= old.byteLength;
    }
  }

  /** Installs a version's hot set: rows of ids [0, count), `rowBytes` each, contiguous. */
  setHotSet(version: string, rowBytes: number, bytes: Uint8Array): void {
    if (this.hot.has(version) || bytes.byteLength > this.budgetBytes) return;
    this.hot.set(version, { count: bytes.byteLength / rowBytes, rowBytes, bytes });
    this.hotBytes += bytes.byteLength;
    this.evictToBudget();
  }

  /** Drops everything of a version no longer served. */
  forget(version: string): void {
    const hot = this.hot.get(version);
    if (hot) this.hotBytes -= hot.bytes.byteLength;
    this.hot.delete(version);
    for (const [key, bytes] of this.lru) {
      if (key.startsWith(`${version}:`)) {
        this.lru.delete(key);
        this.lruBytes -= bytes.byteLength;
      }
    }
  }
}
