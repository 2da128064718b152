/**
 * docs/BENCHMARKS.md §4b, "A longer context": what the KV cache adds to a served model's memory as
 * its sequence grows, from bench/lib/ort-memory.ts's context sweep (wasm, in Node) and the JS heap
 * the served instance holds after GC (workerd).
 */
import { ISOLATE_LIMIT_BYTES, jsBytes, type LargestInstance, type LargestResult } from '../suites/largest.ts';
import type { LargeShape } from './bundles.ts';
import { fmt, markdownTable, mibOrNa as mib } from './stats.ts';

/** KV cache bytes per token of context: every layer's key and value, f32. */
export const kvBytesPerToken = (shape: LargeShape) => shape.layers * 2 * shape.kvHeads * shape.headDim * 4;

/**
 * While a run returns, JS holds the sequence's past and the run's present outputs (two copies of the
 * cache); the wasm heap has held both during the run, and keeps that peak.
 */
const isolateAt = (wasm: number, js: number, kv: number) => wasm + js + 2 * kv;

interface ContextPoint {
  tokens: number;
  wasm: number;
  /** The isolate estimate at this context. */
  total: number;
}

/** The context sweep of one served model, with the isolate estimate at each point (empty when not measured). */
function sweepOf(r: LargestResult, i: LargestInstance): ContextPoint[] {
  const entry = r.ortMemory?.find((e) => e.name === i.name && e.computeDtype === i.computeDtype);
  const sweep = entry?.results.find((m) => m.options === 'served')?.byContext ?? [];
  const js = i.heapAfter ? jsBytes(i.heapAfter) : NaN;
  return sweep.map((p) => ({ ...p, total: isolateAt(p.wasm, js, p.tokens * kvBytesPerToken(i.shape)) }));
}

/** The longest context of the sweep whose isolate estimate stays within 128 MiB, or null. */
export function longestContext(r: LargestResult, i: LargestInstance): number | null {
  const within = sweepOf(r, i).filter((p) => p.total <= ISOLATE_LIMIT_BYTES);
  return within.length ? Math.max(...within.map((p) => p.tokens)) : null;
}

export function contextRows(r: LargestResult): string {
  const measured = r.instances.filter((i) => sweepOf(r, i).length);
  if (!measured.length) return '_Not measured (`npx tsx bench/lib/ort-memory.ts --ort`, then `--merge`, adds it)._';
  const contexts = [...new Set(measured.flatMap((i) => sweepOf(r, i).map((p) => p.tokens)))].sort((a, b) => a - b);
  const rows = measured.map((i) => {
    const sweep = sweepOf(r, i);
    const cells = contexts.map((tokens) => sweep.find((p) => p.tokens === tokens));
    const longest = longestContext(r, i);
    return [
      i.label,
      i.computeDtype,
      fmt(kvBytesPerToken(i.shape) / 1024, 0),
      ...cells.map((c) => (c ? `${mib(c.wasm)} / ${mib(c.total)}` : 'n/a')),
      longest ?? `none (${mib(sweep[0].total)} MiB at ${sweep[0].tokens})`,
    ];
  });
  const head = [
    'compute path',
    'dtype',
    'KV cache KiB per token',
    ...contexts.map((c) => `${c} tokens: wasm / isolate MiB`),
    'longest measured context within 128 MiB',
  ];
  return `One sequence fed in runs of 8 tokens (as \`MAX_RUN_TOKENS=8\` runs a prompt) in Node with the wasm build workerd runs, the
wasm memory read at each context length (a fresh process per model; the heap keeps its peak). A run copies the sequence's KV
cache into the wasm heap and its grown cache out of it, so the heap holds the cache twice while it runs; JS holds the past and
the run's outputs when it returns. Isolate = that wasm + the V8 heap and ArrayBuffers the served instance held after GC (no
request in flight) + 2 × the KV cache: an estimate, from measurements of two runtimes.

${markdownTable(head, rows)}`;
}
