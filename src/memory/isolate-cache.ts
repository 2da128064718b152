/**
 * L0, the isolate's own memory: per bundle version a hot set (rows of the most frequent tokens,
 * read once at first use) plus an LRU of recently used rows, together under one byte budget.
 * flexmem tokenizers number tokens by frequency, so the hot set is the rows of ids [0, n).
 * The hot set is kept as read; each of its rows is checked when first used (`hotRowIntact`), so a
 * cold request checks the few rows it uses rather than all of them.
 */
export type IsolateTier = 'hot' | 'lru';

const UNCHECKED = 0;
const INTACT = 1;
const CORRUPT = 2;

interface HotSet {
  count: number;
  rowBytes: number;
  bytes: Uint8Array;
  /** Per row: UNCHECKED, INTACT, or CORRUPT (no longer served from the hot set). */
  checks: Uint8Array;
}

export class IsolateRowCache {
  private readonly hot = new Map<string, HotSet>();
  private readonly lru = new Map<string, Uint8Array>();
  private lruBytes = 0;
  private hotBytes = 0;

  constructor(private readonly budgetBytes: number) {}

  get(version: string, id: number): { bytes: Uint8Array; tier: IsolateTier } | null {
    const hot = this.hot.get(version);
    if (hot && id < hot.count && hot.checks[id] !== CORRUPT)
      return { bytes: hot.bytes.subarray(id * hot.rowBytes, (id + 1) * hot.rowBytes), tier: 'hot' };
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

  /**
   * Whether hot-set row `id` of `version` is intact: `matches` decides the first time it is asked,
   * and a row it refuses is served from the hot set no more (`get` then looks in the LRU).
   */
  hotRowIntact(version: string, id: number, matches: (row: Uint8Array) => boolean): boolean {
    const hot = this.hot.get(version);
    if (!hot || id >= hot.count) return false;
    if (hot.checks[id] === UNCHECKED)
      hot.checks[id] = matches(hot.bytes.subarray(id * hot.rowBytes, (id + 1) * hot.rowBytes)) ? INTACT : CORRUPT;
    return hot.checks[id] === INTACT;
  }

  /** Installs a version's hot set: rows of ids [0, count), `rowBytes` each, contiguous, not yet checked. */
  setHotSet(version: string, rowBytes: number, bytes: Uint8Array): void {
    if (this.hot.has(version) || bytes.byteLength > this.budgetBytes) return;
    const count = bytes.byteLength / rowBytes;
    this.hot.set(version, { count, rowBytes, bytes, checks: new Uint8Array(count) });
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
