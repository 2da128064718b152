/**
 * Issue 6, item 5, computed offline over the held-out validation text (training/data/valid.txt)
 * tokenized with the demo model's tokenizer, whose ids are frequency-ordered:
 *   - hot-set hit rate as a function of hot-set size N (fraction of token occurrences with id < N),
 *     next to the best possible set of N ids (the validation text's own top N);
 *   - what a cold data centre's origin reads cost per token for several page sizes;
 *   - how many origin requests (and parallel waves of six) a 64-token prompt needs, as the
 *     hierarchy coalesces pages today and if runs were merged across gaps into at most six reads;
 *   - how often a bigram prefetch (top-k successors of the current token, counted on the
 *     training ids) would already hold the next token's row.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Context } from '../lib/context.ts';
import { ROOT, WORK } from '../lib/paths.ts';
import { median } from '../lib/stats.ts';
import { DEFAULT_HIERARCHY } from '../../src/memory/memory-hierarchy.ts';

export interface PromptWave {
  window: number;
  concurrency: number;
  pageBytes: number;
  /** Rows [0, hotRows) are in the isolate and need no read. */
  hotRows: number;
  runs: number;
  waves: number;
  bytes: number;
  mergedBytes: number;
  /** As MemoryHierarchy plans it: gaps up to `gapCap` bytes merged while more than `concurrency` runs remain. */
  gapCap: number;
  plannedRequests: number;
  plannedWaves: number;
  plannedBytes: number;
  windows: number;
  /** Distinct rows the window needs × row bytes: the least any plan reads. */
  neededBytes?: number;
  /** The fewest bytes any plan of at most `concurrency` contiguous reads covers, by page and by row (optimal interval partition). */
  optimalPageBytes?: number;
  optimalRowBytes?: number;
  /** The fewest reads whose optimal cover stays within 2× `neededBytes`, and the waves that takes (mean over windows). */
  readsWithin2x?: { pages: number; rows: number; wavesPages: number; wavesRows: number };
}

/**
 * The fewest bytes that k contiguous reads covering every needed unit (sorted, distinct) can read:
 * the span minus the k − 1 largest gaps, the optimal partition of sorted points into k intervals.
 */
function optimalCover(units: number[], unitBytes: number): (k: number) => number {
  if (units.length === 0) return () => 0;
  const gaps = units
    .slice(1)
    .map((u, i) => u - units[i] - 1)
    .sort((a, b) => b - a);
  const span = units.at(-1)! - units[0] + 1;
  return (k) => (span - gaps.slice(0, Math.max(0, k - 1)).reduce((a, b) => a + b, 0)) * unitBytes;
}

function fewestReadsWithin(cover: (k: number) => number, limit: number, most: number): number {
  let k = 1;
  while (k < most && cover(k) > limit) k++;
  return k;
}

export interface HotsetResult {
  suite: 'hotset';
  tokens: number;
  vocab: number;
  rowBytes: number;
  defaultHotRows: number;
  hotSetBytes: number;
  curve: { n: number; bytes: number; coverage: number; ideal: number }[];
  distinctIds: number;
  pages: { pageBytes: number; rowsPerPage: number; tokens: number; requestsPerToken: number; bytesPerToken: number }[];
  prompt: PromptWave;
  promptHot: PromptWave;
  prefetch: { source: string; k: number; coveredOfMisses: number; extraRowsPerStep: number }[];
  missesPerToken: number;
}

function validationIds(ctx: Context, tokenizerSha: string): Promise<number[]> {
  const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'));
  const key = createHash('sha256').update(text).update(tokenizerSha).digest('hex').slice(0, 16);
  const cache = join(WORK, `valid-ids-${key}.json`);
  if (existsSync(cache)) return Promise.resolve(JSON.parse(readFileSync(cache, 'utf8')));
  return ctx.demoTokenizer().then((tok) => {
    const ids = tok.encode(text.toString('utf8'));
    mkdirSync(WORK, { recursive: true });
    writeFileSync(cache, JSON.stringify(ids));
    return ids;
  });
}

/** A .npy of unsigned 16-bit ids (training/.cache/train_ids.npy). */
function readNpyU16(path: string): Uint16Array | null {
  const buf = readFileSync(path);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') return null;
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  if (!header.includes("'<u2'") || header.includes('True')) return null;
  const copy = buf.subarray(start).buffer.slice(buf.byteOffset + start, buf.byteOffset + buf.byteLength);
  return new Uint16Array(copy);
}

export async function runHotset(ctx: Context): Promise<HotsetResult> {
  const demo = await ctx.demoBundle();
  const V = demo.manifest.config.vocab_size;
  const rowBytes = demo.manifest.tables!.layout.rowBytes;
  const tokenizerSha = demo.manifest.objects.tokenizer.sha256;
  const ids = await validationIds(ctx, tokenizerSha);
  const hotSetBytes = Number(ctx.vars.HOT_SET_BYTES ?? 8 << 20);
  const defaultHotRows = Math.min(V, Math.floor(hotSetBytes / rowBytes));

  const counts = new Float64Array(V);
  for (const id of ids) counts[id]++;
  const prefix = new Float64Array(V + 1);
  for (let i = 0; i < V; i++) prefix[i + 1] = prefix[i] + counts[i];
  const sorted = [...counts].sort((a, b) => b - a);
  const idealPrefix = new Float64Array(V + 1);
  for (let i = 0; i < V; i++) idealPrefix[i + 1] = idealPrefix[i] + sorted[i];
  const total = ids.length;
  const grid = [...new Set([0, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, V, defaultHotRows].filter((n) => n <= V))].sort(
    (a, b) => a - b,
  );
  const curve = grid.map((n) => ({ n, bytes: n * rowBytes, coverage: prefix[n] / total, ideal: idealPrefix[n] / total }));

  // A cold data centre: hot set at the default size, an unbounded page cache, the first T tokens.
  const T = Math.min(ids.length, 8192);
  const pages = [rowBytes, 16 << 10, 32 << 10, 128 << 10, 512 << 10].map((pageBytes) => {
    const rowsPerPage = Math.max(1, Math.floor(pageBytes / rowBytes));
    const seen = new Set<number>();
    let requests = 0;
    for (let i = 0; i < T; i++) {
      const id = ids[i];
      if (id < defaultHotRows) continue;
      const page = Math.floor(id / rowsPerPage);
      if (!seen.has(page)) {
        seen.add(page);
        requests++;
      }
    }
    return {
      pageBytes: rowsPerPage * rowBytes,
      rowsPerPage,
      tokens: T,
      requestsPerToken: requests / T,
      bytesPerToken: (requests * rowsPerPage * rowBytes) / T,
    };
  });

  // A prompt's wave: pages -> adjacent runs -> requests (as MemoryHierarchy coalesces them), with
  // the hierarchy cold (hotRows 0) and with only the default hot set loaded.
  const pageBytes = Number(ctx.vars.PAGE_BYTES ?? 32 << 10);
  const rowsPerPage = Math.max(1, Math.floor(pageBytes / rowBytes));
  const window = 64;
  const concurrency = 6;
  // The gap up to which MemoryHierarchy merges runs while more than `concurrency` remain (0 in
  // versions of src without that setting).
  const gapCap = Number(ctx.vars.COALESCE_GAP_BYTES ?? (DEFAULT_HIERARCHY as { coalesceGapBytes?: number }).coalesceGapBytes ?? 0);
  const promptWave = (hotRows: number) => {
    const stats = {
      runs: [] as number[],
      waves: [] as number[],
      bytes: [] as number[],
      mergedBytes: [] as number[],
      planned: [] as number[],
      plannedWaves: [] as number[],
      plannedBytes: [] as number[],
      needed: [] as number[],
      optimalPages: [] as number[],
      optimalRows: [] as number[],
      readsPages: [] as number[],
      readsRows: [] as number[],
    };
    for (let start = 0; start + window <= ids.length && stats.runs.length < 2000; start += 97) {
      const pagesOf = [
        ...new Set(
          ids
            .slice(start, start + window)
            .filter((id) => id >= hotRows)
            .map((id) => Math.floor(id / rowsPerPage)),
        ),
      ].sort((a, b) => a - b);
      const runs: [number, number][] = [];
      for (const p of pagesOf) {
        const last = runs.at(-1);
        if (last && last[1] + 1 === p) last[1] = p;
        else runs.push([p, p]);
      }
      const bytes = runs.reduce((n, [a, b]) => n + (b - a + 1) * rowsPerPage * rowBytes, 0);
      // Merge the smallest gaps until at most `concurrency` reads remain (capped: as src plans them).
      const mergeTo = (cap: number) => {
        const merged = runs.map((r) => [...r] as [number, number]);
        while (merged.length > concurrency) {
          let best = 0;
          for (let i = 1; i < merged.length - 1; i++) if (merged[i + 1][0] - merged[i][1] < merged[best + 1][0] - merged[best][1]) best = i;
          if ((merged[best + 1][0] - merged[best][1] - 1) * rowsPerPage * rowBytes > cap) break;
          merged.splice(best, 2, [merged[best][0], merged[best + 1][1]]);
        }
        return merged;
      };
      const merged = mergeTo(Infinity);
      const planned = mergeTo(gapCap);
      stats.planned.push(planned.length);
      stats.plannedWaves.push(Math.ceil(planned.length / concurrency));
      stats.plannedBytes.push(planned.reduce((n, [a, b]) => n + (b - a + 1) * rowsPerPage * rowBytes, 0));
      const rowsOf = [...new Set(ids.slice(start, start + window).filter((id) => id >= hotRows))].sort((a, b) => a - b);
      const needed = rowsOf.length * rowBytes;
      const byPage = optimalCover(pagesOf, rowsPerPage * rowBytes);
      const byRow = optimalCover(rowsOf, rowBytes);
      stats.needed.push(needed);
      stats.optimalPages.push(byPage(concurrency));
      stats.optimalRows.push(byRow(concurrency));
      stats.readsPages.push(fewestReadsWithin(byPage, 2 * needed, Math.max(1, pagesOf.length)));
      stats.readsRows.push(fewestReadsWithin(byRow, 2 * needed, Math.max(1, rowsOf.length)));
      stats.runs.push(runs.length);
      stats.waves.push(Math.ceil(runs.length / concurrency));
      stats.bytes.push(bytes);
      stats.mergedBytes.push(merged.reduce((n, [a, b]) => n + (b - a + 1) * rowsPerPage * rowBytes, 0));
    }
    return {
      window,
      concurrency,
      pageBytes: rowsPerPage * rowBytes,
      hotRows,
      runs: median(stats.runs),
      waves: median(stats.waves),
      bytes: median(stats.bytes),
      mergedBytes: median(stats.mergedBytes),
      gapCap,
      plannedRequests: median(stats.planned),
      plannedWaves: median(stats.plannedWaves),
      plannedBytes: median(stats.plannedBytes),
      windows: stats.runs.length,
      neededBytes: median(stats.needed),
      optimalPageBytes: median(stats.optimalPages),
      optimalRowBytes: median(stats.optimalRows),
      readsWithin2x: {
        pages: median(stats.readsPages),
        rows: median(stats.readsRows),
        wavesPages: mean(stats.readsPages.map((k) => Math.ceil(k / concurrency))),
        wavesRows: mean(stats.readsRows.map((k) => Math.ceil(k / concurrency))),
      },
    };
  };
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  const prompt = promptWave(0);
  const promptHot = promptWave(defaultHotRows);

  // Bigram prefetch: successors counted on training ids (same tokenizer) or, failing that, on the
  // first half of the validation ids (then evaluated on the second half only).
  const npy = join(ROOT, 'training', '.cache', 'train_ids.npy');
  const trainTok = join(ROOT, 'training', 'tokenizer', 'tokenizer.json');
  const sameTokenizer = existsSync(trainTok) && createHash('sha256').update(readFileSync(trainTok)).digest('hex') === tokenizerSha;
  const train = existsSync(npy) && sameTokenizer ? readNpyU16(npy) : null;
  const source = train ? `training ids (training/.cache/train_ids.npy, ${train.length} tokens)` : 'first half of the validation ids';
  const trainIds: ArrayLike<number> = train ?? ids.slice(0, ids.length >> 1);
  const evalIds = train ? ids : ids.slice(ids.length >> 1);
  const successors = new Map<number, Map<number, number>>();
  for (let i = 0; i + 1 < trainIds.length; i++) {
    const a = trainIds[i];
    const b = trainIds[i + 1];
    if (b < defaultHotRows) continue; // hot rows need no prefetch
    let m = successors.get(a);
    if (!m) {
      m = new Map();
      successors.set(a, m);
    }
    m.set(b, (m.get(b) ?? 0) + 1);
  }
  const top = new Map<number, number[]>();
  for (const [a, m] of successors)
    top.set(
      a,
      [...m]
        .sort((x, y) => y[1] - x[1])
        .slice(0, 64)
        .map(([b]) => b),
    );
  let misses = 0;
  const prefetch = [1, 4, 16, 64].map((k) => ({ source, k, covered: 0, extra: 0 }));
  for (let i = 0; i + 1 < evalIds.length; i++) {
    const next = evalIds[i + 1];
    const candidates = top.get(evalIds[i]) ?? [];
    for (const p of prefetch) p.extra += Math.min(p.k, candidates.length);
    if (next < defaultHotRows) continue;
    misses++;
    const rank = candidates.indexOf(next);
    for (const p of prefetch) if (rank !== -1 && rank < p.k) p.covered++;
  }
  return {
    suite: 'hotset',
    tokens: ids.length,
    vocab: V,
    rowBytes,
    defaultHotRows,
    hotSetBytes,
    curve,
    distinctIds: counts.filter((c) => c > 0).length,
    pages,
    prompt,
    promptHot,
    prefetch: prefetch.map((p) => ({
      source: p.source,
      k: p.k,
      coveredOfMisses: p.covered / misses,
      extraRowsPerStep: p.extra / (evalIds.length - 1),
    })),
    missesPerToken: misses / (evalIds.length - 1),
  };
}
