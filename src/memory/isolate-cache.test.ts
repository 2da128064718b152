import { describe, expect, it } from 'vitest';
import { IsolateRowCache } from './isolate-cache.ts';

const row = (value: number, bytes = 4) => new Uint8Array(bytes).fill(value);
const has = (cache: IsolateRowCache, version: string, id: number) => cache.get(version, id) !== null;

describe('IsolateRowCache', () => {
  it('serves the rows of the hot set, each its own slice', () => {
    const cache = new IsolateRowCache(100);
    cache.setHotSet(
      'v1',
      4,
      Uint8Array.from({ length: 12 }, (_, i) => i),
    );
    expect(cache.get('v1', 1)).toEqual({ bytes: Uint8Array.from([4, 5, 6, 7]), tier: 'hot' });
    expect(cache.get('v1', 2)!.bytes).toEqual(Uint8Array.from([8, 9, 10, 11]));
    expect(cache.get('v1', 3)).toBeNull();
    expect(cache.get('v2', 0)).toBeNull();
  });

  it('keeps a copy of a row, and the first copy of a row put twice', () => {
    const cache = new IsolateRowCache(100);
    const page = Uint8Array.from([1, 1, 1, 1, 2, 2, 2, 2]);
    cache.put('v1', 7, page.subarray(4, 8));
    page.fill(9);
    const hit = cache.get('v1', 7)!;
    expect(hit).toEqual({ bytes: row(2), tier: 'lru' });
    expect(hit.bytes.buffer.byteLength).toBe(4);
    cache.put('v1', 7, row(3));
    expect(cache.get('v1', 7)!.bytes).toEqual(row(2));
  });

  it('fills its budget exactly, then evicts the least recently used', () => {
    const cache = new IsolateRowCache(12);
    cache.put('v', 1, row(1));
    cache.put('v', 2, row(2));
    cache.put('v', 3, row(3));
    expect([1, 2, 3].map((id) => has(cache, 'v', id))).toEqual([true, true, true]);
    // 1 was just read, so 2 is the oldest now.
    cache.get('v', 1);
    cache.put('v', 4, row(4));
    expect([1, 2, 3, 4].map((id) => has(cache, 'v', id))).toEqual([true, false, true, true]);
  });

  it('takes no row larger than what the hot set leaves of the budget', () => {
    const cache = new IsolateRowCache(12);
    cache.setHotSet('v', 4, row(0, 8));
    cache.put('v', 5, row(5, 5));
    expect(has(cache, 'v', 5)).toBe(false);
    cache.put('v', 6, row(6, 4));
    expect(has(cache, 'v', 6)).toBe(true);
    // The hot set counts against the budget: a second row evicts the first.
    cache.put('v', 7, row(7, 4));
    expect(has(cache, 'v', 7)).toBe(true);
    expect(has(cache, 'v', 6)).toBe(false);
  });

  it('refuses a row that cannot fit without pushing out the rows it has', () => {
    const cache = new IsolateRowCache(12);
    cache.put('v', 1, row(1));
    cache.put('v', 2, row(2, 13));
    expect(has(cache, 'v', 1)).toBe(true);
    expect(has(cache, 'v', 2)).toBe(false);
    const withHot = new IsolateRowCache(12);
    withHot.setHotSet('v', 4, row(0, 8));
    withHot.put('v', 5, row(5));
    withHot.put('v', 6, row(6, 5));
    expect(has(withHot, 'v', 5)).toBe(true);
    expect(has(withHot, 'v', 6)).toBe(false);
  });

  it('installs a hot set once per version, within the budget, evicting LRU rows to make room', () => {
    const cache = new IsolateRowCache(12);
    cache.put('a', 9, row(9));
    cache.put('a', 10, row(10));
    cache.setHotSet('v', 4, row(1, 13));
    expect(has(cache, 'v', 0)).toBe(false);
    cache.setHotSet('v', 4, row(1, 8));
    expect(cache.get('v', 1)!.tier).toBe('hot');
    expect([has(cache, 'a', 9), has(cache, 'a', 10)]).toEqual([false, true]);
    cache.setHotSet('v', 4, row(2, 4));
    expect(cache.get('v', 1)!.bytes).toEqual(row(1));
    // A hot set as large as the whole budget is taken too.
    const full = new IsolateRowCache(12);
    full.setHotSet('w', 4, row(3, 12));
    expect(full.get('w', 2)!.tier).toBe('hot');
    // Two hot sets count together: the second leaves no room for rows.
    const two = new IsolateRowCache(12);
    two.setHotSet('x', 4, row(1, 4));
    two.setHotSet('y', 4, row(1, 4));
    two.put('x', 9, row(9, 4));
    two.put('x', 10, row(10, 4));
    expect([has(two, 'x', 9), has(two, 'x', 10)]).toEqual([false, true]);
  });

  it('forgets one version, hot set and rows, and gives its bytes back', () => {
    const cache = new IsolateRowCache(16);
    cache.setHotSet('v1', 4, row(1, 8));
    cache.put('v1', 20, row(2));
    cache.put('v10', 20, row(3));
    cache.forget('v1');
    expect(has(cache, 'v1', 0)).toBe(false);
    expect(has(cache, 'v1', 20)).toBe(false);
    expect(cache.get('v10', 20)!.bytes).toEqual(row(3));
    // 12 bytes free again: three more rows fit beside v10's.
    for (const id of [1, 2, 3]) cache.put('v2', id, row(id));
    expect([1, 2, 3].map((id) => has(cache, 'v2', id))).toEqual([true, true, true]);
    expect(has(cache, 'v10', 20)).toBe(true);
    // Forgetting a version it never had changes nothing.
    cache.forget('v3');
    expect(has(cache, 'v2', 1)).toBe(true);
  });

  it('gives a forgotten hot set its bytes back, so a new one fits', () => {
    const cache = new IsolateRowCache(8);
    cache.setHotSet('v1', 4, row(1, 8));
    cache.forget('v1');
    cache.put('v2', 1, row(1));
    cache.put('v2', 2, row(2));
    expect([has(cache, 'v2', 1), has(cache, 'v2', 2)]).toEqual([true, true]);
  });

  it('checks a hot row once, when first asked; a row refused is served from the LRU, never from the hot set', () => {
    const cache = new IsolateRowCache(100);
    cache.setHotSet('v1', 4, Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]));
    const asked: number[] = [];
    const matches = (row: Uint8Array) => {
      asked.push(row[0]);
      return row[0] !== 1;
    };
    expect([0, 1, 2, 0, 1].map((id) => cache.hotRowIntact('v1', id, matches))).toEqual([true, false, true, true, false]);
    expect(asked).toEqual([0, 1, 2]);
    expect(cache.get('v1', 0)).toEqual({ bytes: row(0), tier: 'hot' });
    expect(cache.get('v1', 1)).toBeNull();
    cache.put('v1', 1, row(7));
    expect(cache.get('v1', 1)).toEqual({ bytes: row(7), tier: 'lru' });
    // Rows past the hot set, or of a version without one, are not hot rows.
    expect([cache.hotRowIntact('v1', 3, matches), cache.hotRowIntact('v2', 0, matches)]).toEqual([false, false]);
  });
});
