/**
 * The memory hierarchy (docs/architecture.md, "Memory tiers"): rows are looked up in L0 (isolate: hot set, LRU),
 * then L1 (Cache API pages), L2 (KV pages), and finally read from L3, the origin bucket, with
 * neighbouring pages coalesced into one range read and at most `originConcurrency` reads in
 * flight. Every request gets its own RowSource pinned to one bundle version, with its own stats.
 * Every row is checked against its checksum (src/bundle/row-checksums.ts) before it is used:
 * rows read from the origin (before they are cached), rows of L1/L2 pages too (a row costs well
 * under a microsecond to check, and a cache is not where corrupt bytes should be able to hide),
 * and the hot set's rows the first time each is used (checking all of its megabytes at once was
 * the cold request's largest share of JavaScript; docs/architecture.md "Cold start").
 * The serving core (src/serving/serving-core.ts) owns one per isolate; the CLI's has no page caches.
 */
import type { BundleManifest, TableShard } from '../bundle/manifest.ts';
import { firstCorruptRow, ROW_CHECKSUM_ALGORITHM, rowChecksum } from '../bundle/row-checksums.ts';
import { decodeRow, type RowLayout } from '../bundle/row-codec.ts';
import type { RangeReader, RowSource } from '../bundle/row-source.ts';
import { InternalError } from '../errors.ts';
import { objectKey } from '../storage/object-store.ts';
import { ConcurrencyLimit } from '../util/concurrency.ts';
import { IsolateRowCache } from './isolate-cache.ts';
import type { PageCache } from './page-cache.ts';

/** `patch` rows come from a knowledge edit, held in the isolate with its bundle. */
export type TierName = 'patch' | 'hot' | 'lru' | 'cache' | 'kv' | 'origin';

export interface TierStats {
  /** Distinct rows looked up, summed over the steps of a request. */
  lookups: number;
  /** Rows served by each tier; they add up to `lookups`. */
  rows: Record<TierName, number>;
  originRequests: number;
  originBytes: number;
}

export const emptyTierStats = (): TierStats => ({
  lookups: 0,
  rows: { patch: 0, hot: 0, lru: 0, cache: 0, kv: 0, origin: 0 },
  originRequests: 0,
  originBytes: 0,
});

export interface HierarchyConfig {
  /** L0 budget for hot set + LRU, in bytes. */
  isolateBytes: number;
  /** Part of the L0 budget given to the hot set. */
  hotSetBytes: number;
  /** Target size of one L1/L2 page. */
  pageBytes: number;
  /** Origin reads in flight at once (Workers allow six open connections per invocation). */
  originConcurrency: number;
  /**
   * When a wave needs more reads than `originConcurrency`, neighbouring runs are merged across
   * gaps of at most this many bytes (smallest gaps first): a few unneeded bytes cost less than
   * another round trip to a far origin.
   */
  coalesceGapBytes: number;
}

export const DEFAULT_HIERARCHY: HierarchyConfig = {
  isolateBytes: 32 << 20,
  hotSetBytes: 8 << 20,
  pageBytes: 32 << 10,
  originConcurrency: 6,
  coalesceGapBytes: 256 << 10,
};

type Tables = NonNullable<BundleManifest['tables']>;

/** What one request's rows come from: its bundle version's tables, and how to read them. */
export interface RowRequest {
  version: string;
  tables: Tables;
  /** Reads the version's objects at the origin: exact bytes or an error. */
  origin: RangeReader;
  /** A patch's rows (stored layout) by token id: they take precedence over the tables. */
  overrides?: ReadonlyMap<number, Uint8Array>;
  /** The checksum of every table row, by token id: no row is used or cached unless it matches. */
  rowChecksums: Uint32Array;
  /** Keeps background work (cache fills, hot-set loads) alive after the response: ctx.waitUntil. */
  background?: (work: Promise<unknown>) => void;
}

/** A version's hot set, read before any request asks for its rows (its rows are checked as they are used). */
export type HotSetPreload = Omit<RowRequest, 'rowChecksums' | 'overrides'>;

/** How one hot-set load reads: its origin, and the reads in flight it counts among. */
interface HotSetRead {
  origin: RangeReader;
  reads: ConcurrencyLimit;
  background: (work: Promise<unknown>) => void;
}

/** Rows are cached under the version that owns the tables, so a patch shares its base's cache. */
const tableVersionOf = (version: string, tables: Tables) => tables.shards[0]?.from ?? version;

/** A request's row source, with the counts of where its rows came from. */
export type CountedRowSource = RowSource & { readonly stats: TierStats };

interface RequestIO {
  origin: RangeReader;
  /**
   * The request's origin reads in flight, at most `originConcurrency`: its page reads and the
   * hot-set read it started share the limit (a Worker invocation holds six connections at once).
   */
  reads: ConcurrencyLimit;
  rowChecksums: Uint32Array;
  stats: TierStats;
  background: (work: Promise<unknown>) => void;
}

interface PageRef {
  shard: TableShard;
  page: number;
  key: string;
}

export class MemoryHierarchy {
  private readonly isolate: IsolateRowCache;
  private readonly hotLoads = new Map<string, Promise<void>>();
  /** Hot-set loads still in flight, with the number of rows they bring. */
  private readonly pendingHot = new Map<string, number>();

  constructor(
    private readonly pageCaches: PageCache[],
    private readonly config: HierarchyConfig = DEFAULT_HIERARCHY,
    /** Called for each origin read whose rows fail their checksum (metrics). */
    private readonly onChecksumFailure: () => void = () => {},
  ) {
    this.isolate = new IsolateRowCache(config.isolateBytes);
  }

  /** A row source for one request, pinned to its version, counting the tier of every row it serves. */
  rowsFor(request: RowRequest): CountedRowSource {
    const { version, tables, overrides = new Map<number, Uint8Array>() } = request;
    const stats = emptyTierStats();
    const io: RequestIO = {
      origin: request.origin,
      reads: new ConcurrencyLimit(this.config.originConcurrency),
      rowChecksums: request.rowChecksums,
      stats,
      background: request.background ?? (() => {}),
    };
    const tableVersion = tableVersionOf(version, tables);
    const hotLoad = this.pendingHot.has(tableVersion) ? this.hotLoads.get(tableVersion) : undefined;
    // A hot-set read already on its way (a bundle load's) is one of this request's reads in flight
    // too, so its first wave is planned around it as around one it started itself.
    if (hotLoad) void io.reads.run(() => hotLoad);
    else this.startHotSetLoad(tableVersion, tables, io);
    const { layout } = tables;
    return {
      rowValues: layout.rowValues,
      stats,
      rows: async (ids) => {
        const patched = new Set(ids.filter((id) => overrides.has(id)));
        stats.lookups += patched.size;
        stats.rows.patch += patched.size;
        const wanted = ids.filter((id) => !patched.has(id));
        // While the hot set is on its way, its rows are waited for rather than read a second time:
        // a cold prompt then needs one wave (the hot set and the rest, in parallel).
        const hotCount = this.pendingHot.get(tableVersion) ?? 0;
        const [hot, rest] = await Promise.all([
          (this.hotLoads.get(tableVersion) ?? Promise.resolve()).then(() =>
            this.fetchRows(
              tableVersion,
              tables,
              io,
              wanted.filter((id) => id < hotCount),
            ),
          ),
          this.fetchRows(
            tableVersion,
            tables,
            io,
            wanted.filter((id) => id >= hotCount),
          ),
        ]);
        const bytes = new Map([...hot, ...rest]);
        for (const id of patched) bytes.set(id, overrides.get(id)!);
        const out = new Float32Array(ids.length * layout.rowValues);
        ids.forEach((id, i) => {
          decodeRow(bytes.get(id)!, layout, out, i * layout.rowValues);
        });
        return out;
      },
    };
  }

  /**
   * Starts reading a version's hot set before any request asks for its rows: a bundle load calls
   * this before its session is created, so the read runs beside the create instead of after it
   * (docs/architecture.md "Cold start").
   */
  preloadHotSet(preload: HotSetPreload): void {
    this.startHotSetLoad(tableVersionOf(preload.version, preload.tables), preload.tables, {
      origin: preload.origin,
      reads: new ConcurrencyLimit(1),
      background: preload.background ?? (() => {}),
    });
  }

  /** Drops the isolate's rows of a version that is no longer served. */
  forget(version: string): void {
    this.isolate.forget(version);
    this.hotLoads.delete(version);
  }

  /** Resolves when the version's hot set is in L0 (for tests and warm-up). */
  hotSetReady(version: string): Promise<void> {
    return this.hotLoads.get(version) ?? Promise.resolve();
  }

  private async fetchRows(version: string, tables: Tables, io: RequestIO, ids: readonly number[]): Promise<Map<number, Uint8Array>> {
    const { stats } = io;
    const found = new Map<number, Uint8Array>();
    const missing: number[] = [];
    for (const id of new Set(ids)) {
      stats.lookups++;
      const hit = this.intactHit(version, id, io);
      if (hit) {
        found.set(id, hit.bytes);
        stats.rows[hit.tier]++;
      } else missing.push(id);
    }
    if (missing.length === 0) return found;

    const pages = new Map<string, { ref: PageRef; ids: number[] }>();
    for (const id of missing) {
      const ref = this.pageOf(version, tables, id);
      const entry = pages.get(ref.key) ?? pages.set(ref.key, { ref, ids: [] }).get(ref.key)!;
      entry.ids.push(id);
    }
    const { rowBytes } = tables.layout;
    const rowsPerPage = this.rowsPerPage(tables.layout);
    const fromOrigin: { ref: PageRef; ids: number[] }[] = [];
    // One parallel wave over the page caches, then one over the origin for what they lack.
    await Promise.all(
      [...pages.values()].map(async (entry) => {
        for (const cache of this.pageCaches) {
          const page = await cache.get(entry.ref.key);
          // A page was checked before it was cached; one that no longer matches is a miss, and the
          // origin's checked copy then replaces it.
          if (page && this.intactRows(entry, page, rowsPerPage, rowBytes, io.rowChecksums))
            return this.usePage(version, entry, page, rowsPerPage, rowBytes, found, () => stats.rows[cache.tier]++);
        }
        fromOrigin.push(entry);
      }),
    );
    if (fromOrigin.length) await this.readFromOrigin(version, tables, io, fromOrigin, found);
    return found;
  }

  /**
   * The isolate's row of `id`; a hot-set row the first time it is used is checked first, and one
   * that does not match its checksum is a miss (read through its page, which is checked too).
   */
  private intactHit(version: string, id: number, io: RequestIO): ReturnType<IsolateRowCache['get']> {
    const hit = this.isolate.get(version, id);
    if (hit?.tier !== 'hot' || this.isolate.hotRowIntact(version, id, (row) => rowChecksum(row) === io.rowChecksums[id])) return hit;
    this.onChecksumFailure();
    return this.isolate.get(version, id);
  }

  /** Whether the page holds every row `entry` wants, each matching its checksum. */
  private intactRows(
    entry: { ref: PageRef; ids: number[] },
    page: Uint8Array,
    rowsPerPage: number,
    rowBytes: number,
    checksums: Uint32Array,
  ): boolean {
    const first = entry.ref.shard.firstToken + entry.ref.page * rowsPerPage;
    return entry.ids.every((id) => {
      const row = page.subarray((id - first) * rowBytes, (id - first + 1) * rowBytes);
      return row.byteLength === rowBytes && rowChecksum(row) === checksums[id];
    });
  }

  private usePage(
    version: string,
    entry: { ref: PageRef; ids: number[] },
    page: Uint8Array,
    rowsPerPage: number,
    rowBytes: number,
    found: Map<number, Uint8Array>,
    count: () => void,
  ): void {
    const first = entry.ref.shard.firstToken + entry.ref.page * rowsPerPage;
    for (const id of entry.ids) {
      const row = page.subarray((id - first) * rowBytes, (id - first + 1) * rowBytes);
      if (row.byteLength !== rowBytes) throw new InternalError(`page ${entry.ref.key} is too short for token ${id}`);
      found.set(id, row);
      count();
      this.isolate.put(version, id, row);
    }
  }

  /** Coalesces the pages of a shard into runs and reads each run with one range read. */
  private async readFromOrigin(
    version: string,
    tables: Tables,
    io: RequestIO,
    entries: { ref: PageRef; ids: number[] }[],
    found: Map<number, Uint8Array>,
  ): Promise<void> {
    const { origin, stats } = io;
    const { rowBytes } = tables.layout;
    const rowsPerPage = this.rowsPerPage(tables.layout);
    const pageBytes = rowsPerPage * rowBytes;
    // Planned for the reads free now (a hot-set read may hold one), so the wave needs one round trip.
    const runs = this.planRuns(entries, pageBytes, Math.max(1, this.config.originConcurrency - io.reads.busy));
    const readRun = async (run: (typeof runs)[number]) => {
      const firstPage = run.entries[0].ref.page;
      const offset = firstPage * pageBytes;
      const length = Math.min((run.entries.at(-1)!.ref.page - firstPage + 1) * pageBytes, run.shard.bytes - offset);
      const read = async () => {
        const bytes = await io.reads.run(() => origin.read(run.shard, offset, length));
        if (bytes.byteLength !== length)
          throw new InternalError(`short origin read: ${run.shard.path} bytes ${offset}+${length} of version ${version}`);
        stats.originRequests++;
        stats.originBytes += length;
        return bytes;
      };
      const pageIn = (bytes: Uint8Array, entry: { ref: PageRef }) => {
        const start = (entry.ref.page - firstPage) * pageBytes;
        return bytes.subarray(start, Math.min(start + pageBytes, bytes.byteLength));
      };
      // Whole pages are checked, as whole pages are cached; pages read only to fill a gap are not used.
      const corruptRow = (bytes: Uint8Array) => {
        for (const entry of run.entries) {
          const first = run.shard.firstToken + entry.ref.page * rowsPerPage;
          const bad = firstCorruptRow(pageIn(bytes, entry), rowBytes, first, io.rowChecksums);
          if (bad >= 0) return bad;
        }
        return -1;
      };
      let bytes = await read();
      // A read damaged on its way is read once more; damage that persists is the store's.
      if (corruptRow(bytes) >= 0) {
        this.onChecksumFailure();
        bytes = await read();
      }
      const bad = corruptRow(bytes);
      if (bad >= 0) {
        this.onChecksumFailure();
        throw new InternalError(
          `${objectKey(version, run.shard)}: the row of token ${bad} (bytes ${(bad - run.shard.firstToken) * rowBytes}+${rowBytes}) ` +
            `does not match its ${ROW_CHECKSUM_ALGORITHM}, read twice; refusing to serve it`,
        );
      }
      for (const entry of run.entries) {
        const page = pageIn(bytes, entry);
        this.usePage(version, entry, page, rowsPerPage, rowBytes, found, () => stats.rows.origin++);
        const copy = page.slice();
        for (const cache of this.pageCaches) io.background(cache.put(entry.ref.key, copy).catch(() => {}));
      }
    };
    await Promise.all(runs.map(readRun));
  }

  /**
   * Runs of pages to read: adjacent pages always share a read; while there are more runs than
   * `reads` (the reads that can be in flight), the two neighbouring runs with the smallest gap (up
   * to coalesceGapBytes) become one, so a prompt's rows tend to arrive in a single wave.
   */
  private planRuns(
    entries: { ref: PageRef; ids: number[] }[],
    pageBytes: number,
    reads: number,
  ): { shard: TableShard; entries: { ref: PageRef; ids: number[] }[] }[] {
    entries.sort((a, b) => a.ref.shard.firstToken - b.ref.shard.firstToken || a.ref.page - b.ref.page);
    const runs: { shard: TableShard; entries: typeof entries }[] = [];
    for (const entry of entries) {
      const last = runs.at(-1);
      if (last && last.shard === entry.ref.shard && last.entries.at(-1)!.ref.page + 1 === entry.ref.page) last.entries.push(entry);
      else runs.push({ shard: entry.ref.shard, entries: [entry] });
    }
    const gapAfter = (i: number) =>
      runs[i].shard === runs[i + 1].shard ? (runs[i + 1].entries[0].ref.page - runs[i].entries.at(-1)!.ref.page - 1) * pageBytes : Infinity;
    while (runs.length > reads) {
      let best = -1;
      for (let i = 0; i + 1 < runs.length; i++) if (best === -1 || gapAfter(i) < gapAfter(best)) best = i;
      if (best === -1 || gapAfter(best) > this.config.coalesceGapBytes) break;
      runs[best].entries.push(...runs[best + 1].entries);
      runs.splice(best + 1, 1);
    }
    return runs;
  }

  private rowsPerPage(layout: RowLayout): number {
    return Math.max(1, Math.floor(this.config.pageBytes / layout.rowBytes));
  }

  private pageOf(version: string, tables: Tables, id: number): PageRef {
    const shard = tables.shards.find((s) => id >= s.firstToken && id < s.firstToken + s.tokenCount);
    if (!Number.isInteger(id) || !shard) throw new InternalError(`no memory row for token ${id}`);
    const rowsPerPage = this.rowsPerPage(tables.layout);
    const page = Math.floor((id - shard.firstToken) / rowsPerPage);
    return { shard, page, key: `${version}/p${rowsPerPage}/${shard.path}/${page}` };
  }

  /** Reads the hot set (rows [0, n) of the first shard) once per version, in the background. */
  private startHotSetLoad(version: string, tables: Tables, hot: HotSetRead): void {
    if (this.hotLoads.has(version)) return;
    const shard = tables.shards[0];
    const { rowBytes } = tables.layout;
    const count = Math.min(shard.tokenCount, Math.floor(this.config.hotSetBytes / rowBytes));
    if (count === 0) {
      this.hotLoads.set(version, Promise.resolve());
      return;
    }
    this.pendingHot.set(version, count);
    const load: Promise<void> = hot.reads
      .run(() => hot.origin.read(shard, 0, count * rowBytes))
      .then((bytes) => {
        if (bytes.byteLength !== count * rowBytes)
          throw new InternalError(`short origin read: the hot set of ${shard.path} of version ${version}`);
        // A version forgotten while its hot set was on its way keeps none of it.
        if (this.hotLoads.get(version) === load) this.isolate.setHotSet(version, rowBytes, bytes);
      })
      .catch(() => {
        if (this.hotLoads.get(version) === load) this.hotLoads.delete(version); // a failed load is retried by a later request
      })
      .finally(() => {
        if (!this.hotLoads.has(version) || this.hotLoads.get(version) === load) this.pendingHot.delete(version);
      });
    this.hotLoads.set(version, load);
    hot.background(load);
  }
}
