/**
 * Which tier served the row of each token a generation feeds. A decode step reads exactly one
 * token's row, so the hierarchy's tier counts of the request, compared before and after the
 * step, name the tier; an overridden row never reaches the hierarchy.
 */
import type { RowSource } from '../bundle/row-source.ts';
import type { TierStats } from '../memory/memory-hierarchy.ts';

/** Where a row came from, as the playground and the API report it. */
export type RowTier = 'override' | 'patch' | 'isolate' | 'cache' | 'kv' | 'origin';

const TIER_OF: Record<keyof TierStats['rows'], RowTier> = {
  patch: 'patch',
  hot: 'isolate',
  lru: 'isolate',
  cache: 'cache',
  kv: 'kv',
  origin: 'origin',
};

export interface TierRecorder {
  /** Wraps the rows a generation reads (`source`, or the override wrapper over it). */
  rows: RowSource;
  /** The tier of the last single-row read, or null when the last read was not one row (the prefill). */
  lastTier(): RowTier | null;
}

export function recordTiers(stats: TierStats, source: RowSource, overridden: ReadonlySet<number> = new Set()): TierRecorder {
  let last: RowTier | null = null;
  return {
    lastTier: () => last,
    rows: {
      rowValues: source.rowValues,
      async rows(ids) {
        const before = { ...stats.rows };
        const values = await source.rows(ids);
        last = null;
        if (ids.length !== 1) return values;
        if (overridden.has(ids[0])) last = 'override';
        else {
          const grown = (Object.keys(before) as (keyof TierStats['rows'])[]).filter((t) => stats.rows[t] !== before[t]);
          last = grown.length === 1 ? TIER_OF[grown[0]] : null;
        }
        return values;
      },
    },
  };
}
