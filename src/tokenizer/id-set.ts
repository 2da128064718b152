/**
 * A read-only set of integer ids in one sorted Int32Array. A checkpoint reserving 130,000 special
 * ids would otherwise hold a Set of that many entries (a few MiB of hash table) for the isolate's
 * lifetime; this is 4 bytes an id and answers `has` by binary search.
 */
export class IdSet implements ReadonlySet<number> {
  private readonly ids: Int32Array;

  constructor(ids: Iterable<number>) {
    const sorted = Int32Array.from(new Set(ids)).sort();
    this.ids = sorted;
  }

  get size(): number {
    return this.ids.length;
  }

  has(id: number): boolean {
    const ids = this.ids;
    let lo = 0;
    let hi = ids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ids[mid] === id) return true;
      if (ids[mid] < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  forEach(callback: (value: number, key: number, set: ReadonlySet<number>) => void, thisArg?: unknown): void {
    for (const id of this.ids) callback.call(thisArg, id, id, this);
  }

  *values(): SetIterator<number> {
    yield* this.ids;
  }

  keys(): SetIterator<number> {
    return this.values();
  }

  *entries(): SetIterator<[number, number]> {
    for (const id of this.ids) yield [id, id];
  }

  [Symbol.iterator](): SetIterator<number> {
    return this.values();
  }
}
