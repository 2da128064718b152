/**
 * Issue 6, items 1 and 5 (origin cost per token) and part of 2: the demo model served by the real
 * edge worker in workerd, with the memory hierarchy cold (origin only), warm (Cache API or KV in
 * front of the origin) and hot (isolate), plus the dense-equivalent graph. Every variant is its
 * own Miniflare instance; rounds interleave the variants in a shuffled order. Times are taken in
 * the client, where the stream's events arrive.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { streamCompletion, withRetry, type Failure, type StreamResult } from '../lib/client.ts';
import type { Context } from '../lib/context.ts';
import { IsolateInspector, type HeapUsage } from '../lib/inspector.ts';
import { WORK } from '../lib/paths.ts';
import { startS3 } from '../lib/s3.ts';
import { gaps, median, pairedRatio, shuffled, summarize, type Summary } from '../lib/stats.ts';
import { launchAll, processMemory, publish, seedR2, type Launched } from '../lib/worker.ts';

export interface LatencyVariant {
  id: string;
  label: string;
  /** For the plot. */
  short: string;
  tier: 'cold' | 'warm' | 'hot' | 'dense';
  origin: 'r2' | 's3';
  latencyMs: number;
  vars: Record<string, string>;
  kv?: boolean;
  /** The model served (the dense-equivalent is another bundle). */
  model: 'flex' | 'flex-dense';
  inspect?: boolean;
}

export interface RequestRecord {
  round: number;
  headersMs: number;
  startMs: number;
  firstDeltaMs: number;
  deltas: number;
  completionTokens: number;
  promptTokens: number;
  gapMedianMs: number;
  gapMeanMs: number;
  timing: Record<string, any>;
  prefillOnly: { firstDeltaMs: number; startMs: number; timing: Record<string, any> };
}

export interface VariantResult {
  variant: LatencyVariant;
  requests: RequestRecord[];
  decodeGapMs: Summary;
  decodeMeanMs: Summary;
  prefillMs: Summary;
  ttftMs: Summary;
  /** Server-side (workerd clock; see the clock check): per decode step and for the prefill. */
  memoryPerDecodeMs: Summary;
  computePerDecodeMs: Summary;
  memoryPrefillMs: Summary;
  originRequestsPerToken: number;
  originBytesPerToken: number;
  prefillOriginRequests: number;
  decodeRowsByTier: Record<string, number>;
  /** Paired ratio of the decode gap to the hot variant's. */
  decodeVsHot: number;
  memory?: { rssBefore: number; rssAfter: number; hwm: number; heap: HeapUsage | null };
}

export interface LatencyResult {
  suite: 'latency';
  rounds: number;
  maxTokens: number;
  promptTokens: number;
  prompt: string;
  request: Record<string, unknown>;
  warmups: number;
  variants: VariantResult[];
  /** Requests that failed and were retried. */
  failures: Failure[];
}

const COLD = { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' };

export function latencyVariants(base: Record<string, string>, s3Vars: Record<string, string>): LatencyVariant[] {
  const v = (
    id: string,
    short: string,
    label: string,
    tier: LatencyVariant['tier'],
    origin: 'r2' | 's3',
    latencyMs: number,
    extra: Record<string, string>,
    more: Partial<LatencyVariant> = {},
  ): LatencyVariant => ({
    id,
    short,
    label,
    tier,
    origin,
    latencyMs,
    vars: { ...base, ...(origin === 's3' ? s3Vars : {}), ...extra, ...(latencyMs ? { ORIGIN_LATENCY_MS: String(latencyMs) } : {}) },
    model: 'flex',
    ...more,
  });
  return [
    v('cold-r2', 'cold · R2', 'cold, local R2', 'cold', 'r2', 0, COLD),
    v('cold-r2-20', 'cold · R2 +20 ms', 'cold, local R2 +20 ms', 'cold', 'r2', 20, COLD),
    v('cold-s3', 'cold · S3', 'cold, s3rver', 'cold', 's3', 0, COLD),
    v('cold-s3-20', 'cold · S3 +20 ms', 'cold, s3rver +20 ms', 'cold', 's3', 20, COLD),
    v('warm-cache', 'warm · Cache API', 'warm: Cache API (origin +20 ms)', 'warm', 'r2', 20, {
      ISOLATE_CACHE_BYTES: '0',
      HOT_SET_BYTES: '0',
      USE_CACHE_API: 'true',
    }),
    v(
      'warm-kv',
      'warm · KV',
      'warm: KV (origin +20 ms)',
      'warm',
      'r2',
      20,
      { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' },
      { kv: true },
    ),
    v('hotset-only', 'hot set only', 'hot set only: 8 MiB, no LRU, no Cache API (origin +20 ms)', 'warm', 'r2', 20, {
      ISOLATE_CACHE_BYTES: base.HOT_SET_BYTES ?? '8388608',
      USE_CACHE_API: 'false',
    }),
    v('hot', 'hot · defaults', 'hot: isolate, wrangler.toml defaults (origin +20 ms)', 'hot', 'r2', 20, {}, { inspect: true }),
    v(
      'dense',
      'dense-equivalent',
      'dense-equivalent graph (reference.onnx, no tables)',
      'dense',
      'r2',
      20,
      {},
      { model: 'flex-dense', inspect: true },
    ),
  ];
}

export async function runLatency(ctx: Context): Promise<LatencyResult> {
  const rounds = ctx.rounds(7, 3);
  const maxTokens = ctx.options.quick ? 32 : 64;
  const promptTokens = 64;
  const demo = await ctx.demoBundle();
  const dense = await ctx.denseBundle();
  const script = ctx.edgeScript();
  const prompt = await ctx.prompt(promptTokens);
  // A fresh s3rver folder each run (the demo bundle is small).
  rmSync(join(WORK, 's3-latency'), { recursive: true, force: true });
  const s3 = await startS3(join(WORK, 's3-latency'));
  await publish(s3.store, demo.dir, 'flex');
  const variants = latencyVariants(ctx.vars, s3.vars);
  const seed = await seedR2(script, [
    { dir: demo.dir, model: 'flex', version: demo.manifest.version },
    { dir: dense.dir, model: 'flex-dense', version: dense.manifest.version },
  ]);
  const workers = new Map<string, Launched>();
  const rssBefore = new Map<string, number>();
  const body = (max_tokens: number) => ({ model: 'flex', prompt, max_tokens, temperature: 0.8, seed: 11 });
  const records = new Map<string, RequestRecord[]>(variants.map((v) => [v.id, []]));
  const failures: Failure[] = [];
  try {
    // Launched together (each still gets its own workerd process and pid).
    const launched = await launchAll(variants.map((v) => ({ scriptDir: script, vars: v.vars, kv: v.kv, inspect: v.inspect, seed })));
    variants.forEach((v, i) => {
      const w = launched[i];
      workers.set(v.id, w);
      rssBefore.set(v.id, (w.pid && processMemory(w.pid)?.rss) || NaN);
      ctx.log(`latency: started ${v.id} (workerd pid ${w.pid})`);
    });
    // Warm-up (nothing is measured): sessions, JIT, and the warm/hot tiers filled with every row the
    // measured requests use; the second request (full mode) is for the JIT. Instances with the R2
    // origin warm up in parallel; those with the S3 origin one at a time, since s3rver shares this
    // process with the client and parallel loads made workerd's reads from it fail.
    const warm = async (v: LatencyVariant) => {
      const w = workers.get(v.id)!;
      await withRetry(`${v.id} warm-up`, failures, () => streamCompletion(w.url, { ...body(maxTokens), model: v.model }));
      if (!ctx.options.quick) await withRetry(`${v.id} warm-up`, failures, () => streamCompletion(w.url, { ...body(16), model: v.model }));
    };
    await Promise.all(variants.filter((v) => v.origin === 'r2').map(warm));
    for (const v of variants.filter((v) => v.origin === 's3')) await warm(v);
    for (let round = 0; round < rounds; round++) {
      for (const v of shuffled(variants, round + 1)) {
        const w = workers.get(v.id)!;
        const full = await withRetry(`${v.id} round ${round + 1}`, failures, () =>
          streamCompletion(w.url, { ...body(maxTokens), model: v.model }),
        );
        const pre = await withRetry(`${v.id} round ${round + 1} (1 token)`, failures, () =>
          streamCompletion(w.url, { ...body(1), model: v.model }),
        );
        records.get(v.id)!.push(record(round, full, pre));
      }
      ctx.log(`latency: round ${round + 1}/${rounds} done`);
    }
    const hotGaps = records.get('hot')!.map((r) => r.gapMedianMs);
    const results: VariantResult[] = [];
    for (const v of variants) {
      const w = workers.get(v.id)!;
      let memory: VariantResult['memory'];
      if (v.inspect && w.inspectorPort && w.pid) {
        const inspector = await IsolateInspector.connect(w.inspectorPort).catch(() => null);
        const heap = inspector ? await inspector.heap().catch(() => null) : null;
        inspector?.close();
        const m = processMemory(w.pid);
        memory = { rssBefore: rssBefore.get(v.id)!, rssAfter: m?.rss ?? NaN, hwm: m?.hwm ?? NaN, heap };
      }
      results.push(aggregate(v, records.get(v.id)!, hotGaps, memory));
    }
    return {
      suite: 'latency',
      rounds,
      maxTokens,
      promptTokens,
      prompt,
      request: body(maxTokens),
      warmups: ctx.options.quick ? 1 : 2,
      variants: results,
      failures,
    };
  } finally {
    for (const w of workers.values()) await w.dispose().catch(() => {});
    await s3.close().catch(() => {});
  }
}

function record(round: number, full: StreamResult, pre: StreamResult): RequestRecord {
  const g = gaps(full.deltas);
  const n = full.deltas.length;
  return {
    round,
    headersMs: full.headersMs,
    startMs: full.events[0]?.at ?? NaN,
    firstDeltaMs: full.deltas[0] ?? NaN,
    deltas: n,
    completionTokens: full.usage?.completion_tokens ?? NaN,
    promptTokens: full.usage?.prompt_tokens ?? NaN,
    gapMedianMs: median(g),
    gapMeanMs: n > 1 ? (full.deltas[n - 1] - full.deltas[0]) / (n - 1) : NaN,
    timing: full.timing ?? {},
    prefillOnly: { firstDeltaMs: pre.deltas[0] ?? NaN, startMs: pre.events[0]?.at ?? NaN, timing: pre.timing ?? {} },
  };
}

function aggregate(variant: LatencyVariant, requests: RequestRecord[], hotGaps: number[], memory: VariantResult['memory']): VariantResult {
  // Decode steps of a request = completion tokens - 1 (the first token comes from the prefill).
  const perDecode = (r: RequestRecord, key: 'memory_wait_ms' | 'compute_ms' | 'origin_requests' | 'origin_bytes') =>
    (r.timing[key] - r.prefillOnly.timing[key]) / (r.completionTokens - 1);
  const decodeRowsByTier: Record<string, number> = {};
  for (const r of requests) {
    for (const [tier, n] of Object.entries((r.timing.rows ?? {}) as Record<string, number>)) {
      decodeRowsByTier[tier] = (decodeRowsByTier[tier] ?? 0) + n - (r.prefillOnly.timing.rows?.[tier] ?? 0);
    }
  }
  return {
    variant,
    requests,
    decodeGapMs: summarize(requests.map((r) => r.gapMedianMs)),
    decodeMeanMs: summarize(requests.map((r) => r.gapMeanMs)),
    prefillMs: summarize(requests.map((r) => r.firstDeltaMs - r.startMs)),
    ttftMs: summarize(requests.map((r) => r.firstDeltaMs)),
    memoryPerDecodeMs: summarize(requests.map((r) => perDecode(r, 'memory_wait_ms'))),
    computePerDecodeMs: summarize(requests.map((r) => perDecode(r, 'compute_ms'))),
    memoryPrefillMs: summarize(requests.map((r) => r.prefillOnly.timing.memory_wait_ms)),
    originRequestsPerToken: median(requests.map((r) => perDecode(r, 'origin_requests'))),
    originBytesPerToken: median(requests.map((r) => perDecode(r, 'origin_bytes'))),
    prefillOriginRequests: median(requests.map((r) => r.prefillOnly.timing.origin_requests)),
    decodeRowsByTier,
    decodeVsHot: pairedRatio(
      requests.map((r) => r.gapMedianMs),
      hotGaps,
    ),
    memory,
  };
}
