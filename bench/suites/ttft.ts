/**
 * Issue 6, item 6 and issue 13: time to first token on a cold isolate (a new Miniflare instance,
 * so a new workerd process), with the origin at local speed and 20 ms away, and what it is made
 * of: instance start (which includes the kernels' warm-up, and with it onnxruntime's start: the edge
 * worker runs it at module scope, workers/runtime-warm-up.ts), first request on the isolate, bundle load (pointer, manifest, graph
 * and tokenizer reads, sha256, ORT session; the hot set is read beside them), the prompt's first origin reads, and the prefill.
 * The bundle load is split further by the bench worker, one phase per request on a fresh isolate
 * that has not started onnxruntime, so the runtime's start (a one-node session) and the kernels'
 * warm-up are phases of their own; a second fresh bench worker skips the kernels' warm-up, to pair
 * against. scripts/cold-ttft-ab.ts pairs whole edge worker builds against each other.
 */
import { requestJson, streamCompletion, type StreamResult } from '../lib/client.ts';
import type { Context } from '../lib/context.ts';
import { IsolateInspector } from '../lib/inspector.ts';
import { inlineOrtGraph } from '../lib/ort-memory.ts';
import { servedGraphObjects } from '../../src/bundle/manifest.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pairedRatio, shuffled, summarize, type Summary } from '../lib/stats.ts';
import { cpuSpent, threadCpu } from '../lib/thread-cpu.ts';
import { launchWorker, processMemory, seedR2 } from '../lib/worker.ts';

export interface ColdStart {
  latencyMs: number;
  instanceStartMs: number;
  firstRequestMs: number;
  cold: { headersMs: number; startMs: number; firstDeltaMs: number; timing: Record<string, any> };
  warm: { headersMs: number; startMs: number; firstDeltaMs: number; timing: Record<string, any> };
}

export interface TtftResult {
  suite: 'ttft';
  reps: number;
  promptTokens: number;
  runs: ColdStart[];
  summary: Record<string, Record<string, Summary>>;
  phases: Record<string, Summary>;
  /** workerd process RSS after each phase of the bench worker's bundle load, MiB (median). */
  phaseRss: Record<string, Summary>;
  /** The isolate's V8 heap used + ArrayBuffers after each phase, MiB (median). */
  phaseHeap: Record<string, Summary>;
  /**
   * workerd's CPU time during each phase, ms: its busiest thread (the isolate's) and all threads
   * (with V8's background compilation); load-independent, unlike the wall-clock phases.
   */
  phaseCpu?: Record<string, { busiest: Summary; total: Summary }>;
  /**
   * Graph-only session creates (after the isolate's first session) per way of shipping the graph,
   * timed in the worker: create ms, decode ms per step, paired ratios against the graph as served,
   * and the largest |logit difference| from it.
   */
  /**
   * The first request's onnxruntime work before compute.ort and the module-scope start (a fresh
   * bench worker: compute.onnx with onnxruntime's defaults as the isolate's first session, then
   * the first prefill) against now (the runtime started first, then compute.ort with
   * sessionOptionsFor, then the first prefill), on instances of the same repetition.
   */
  before?: { session: Summary; prefill: Summary; sessionRatio: number; prefillRatio: number; firstRequestRatio: number };
  /**
   * The same first create and first prefill on a fresh bench worker that started onnxruntime but did
   * not run the kernels' warm-up (workers/runtime-warm-up.ts warmUpKernels), against the phases above
   * (which run it, as the edge worker does at module scope), paired by repetition.
   */
  withoutKernels?: { session: Summary; prefill: Summary; sessionRatio: number; prefillRatio: number; firstRequestRatio: number };
  sessionVariants?: {
    name: string;
    graphBytes: number;
    createMs: Summary;
    stepMs: Summary;
    createRatio: number;
    stepRatio: number;
    maxLogitDiff: number;
  }[];
}

/**
 * How a graph can be shipped and loaded, compute.onnx with onnxruntime's defaults first (the
 * yardstick, served before build-time optimization) and the served graph last. 'ort' is the
 * optimized graph with its weights inside one ORT-format file (compute.ort, served before the
 * weights went beside the graph), posted by the suite.
 */
const SESSION_VARIANTS = [
  { name: 'compute.onnx, onnxruntime defaults (as served before build-time optimization)', graph: 'compute', options: 'default' },
  { name: 'compute.onnx, graph optimization disabled', graph: 'compute', options: 'disabled' },
  {
    name: 'compute.ort: optimized at build, weights inside one ORT-format file (as served before), optimization disabled',
    graph: 'ort',
    options: 'served',
  },
  { name: 'optimized at build, weights beside the graph, optimization disabled, no prepacking', graph: 'served', options: 'no-prepacking' },
  {
    name: 'compute.optimized.onnx + compute.weights with sessionOptionsFor: optimization disabled, prepacking on (as served)',
    graph: 'served',
    options: 'served',
  },
] as const;

const view = (r: StreamResult) => ({
  headersMs: r.headersMs,
  startMs: r.events[0]?.at ?? NaN,
  firstDeltaMs: r.deltas[0] ?? NaN,
  timing: r.timing ?? {},
});

export async function runTtft(ctx: Context): Promise<TtftResult> {
  const reps = ctx.rounds(4, 1);
  const promptTokens = 64;
  const demo = await ctx.demoBundle();
  const edge = ctx.edgeScript();
  const bench = ctx.benchScript();
  const prompt = await ctx.prompt(promptTokens);
  const body = { model: 'flex', prompt, max_tokens: 1, temperature: 0.8, seed: 11 };
  const edgeSeed = await seedR2(edge, [{ dir: demo.dir, model: 'flex', version: demo.manifest.version }]);
  const benchSeed = await seedR2(bench, [{ dir: demo.dir, model: 'flex', version: demo.manifest.version }]);
  const runs: ColdStart[] = [];
  if (!demo.manifest.objects.computeWeights)
    throw new Error(`the demo bundle ${demo.dir} has no optimized graph with its weights beside it (built with optimizedGraph false?)`);
  const compute = new Uint8Array(readFileSync(join(demo.dir, demo.manifest.objects.compute.path)));
  const ortGraph = await inlineOrtGraph(compute);
  const graphBytes = {
    compute: compute.byteLength,
    ort: ortGraph.byteLength,
    served: servedGraphObjects(demo.manifest).reduce((n, ref) => n + ref.bytes, 0),
  };
  const variantRuns = SESSION_VARIANTS.map(() => ({ createMs: [] as number[], stepMs: [] as number[], maxLogitDiff: 0 }));
  const phaseTimes: Record<string, number[]> = {
    'first request (no bundle)': [],
    read: [],
    hash: [],
    tokenizer: [],
    runtime: [],
    kernels: [],
    session: [],
    session2: [],
    prefill: [],
    prefill2: [],
  };
  const phaseRss: Record<string, number[]> = {
    ready: [],
    ...Object.fromEntries(Object.keys(phaseTimes).map((k) => [k, [] as number[]])),
    'after 200 decode steps': [],
  };
  const phaseHeap: Record<string, number[]> = Object.fromEntries(Object.keys(phaseRss).map((k) => [k, [] as number[]]));
  const phaseCpu: Record<string, { busiest: number[]; total: number[] }> = Object.fromEntries(
    Object.keys(phaseTimes).map((k) => [k, { busiest: [] as number[], total: [] as number[] }]),
  );
  const beforeTimes = { session: [] as number[], prefill: [] as number[] };
  const noKernelTimes = { session: [] as number[], prefill: [] as number[] };
  const rss = (pid: number | null) => (pid ? (processMemory(pid)?.rss ?? NaN) / 2 ** 20 : NaN);
  for (let rep = 0; rep < reps; rep++) {
    for (const latencyMs of rep % 2 ? [20, 0] : [0, 20]) {
      const w = await launchWorker({
        scriptDir: edge,
        seed: edgeSeed,
        vars: { ...ctx.vars, ...(latencyMs ? { ORIGIN_LATENCY_MS: String(latencyMs) } : {}) },
      });
      try {
        const health = await requestJson(w.url, '/health');
        const cold = await streamCompletion(w.url, body);
        const warm = await streamCompletion(w.url, body);
        runs.push({ latencyMs, instanceStartMs: w.startMs, firstRequestMs: health.ms, cold: view(cold), warm: view(warm) });
      } finally {
        await w.dispose();
      }
    }
    const old = await launchWorker({ scriptDir: bench, seed: benchSeed });
    try {
      for (const phase of ['read', 'session', 'prefill'] as const) {
        const r = await requestJson(old.url, '/phase', { model: 'flex', phase, graph: 'compute' });
        if (r.status !== 200) throw new Error(`bench worker /phase ${phase} (compute.onnx): ${JSON.stringify(r.json)}`);
        if (phase !== 'read') beforeTimes[phase].push(r.ms);
      }
    } finally {
      await old.dispose();
    }
    const runtimeOnly = await launchWorker({ scriptDir: bench, seed: benchSeed });
    try {
      for (const phase of ['read', 'runtime', 'session', 'prefill'] as const) {
        const r = await requestJson(runtimeOnly.url, '/phase', { model: 'flex', phase });
        if (r.status !== 200) throw new Error(`bench worker /phase ${phase} (no kernels warm-up): ${JSON.stringify(r.json)}`);
        if (phase === 'session' || phase === 'prefill') noKernelTimes[phase].push(r.ms);
      }
    } finally {
      await runtimeOnly.dispose();
    }
    const b = await launchWorker({ scriptDir: bench, seed: benchSeed, inspect: true });
    const inspector = b.inspectorPort ? await IsolateInspector.connect(b.inspectorPort).catch(() => null) : null;
    const record = async (phase: string) => {
      phaseRss[phase].push(rss(b.pid));
      const h = inspector ? await inspector.heap().catch(() => null) : null;
      phaseHeap[phase].push(h ? (h.usedSize + h.backingStorageSize) / 2 ** 20 : NaN);
    };
    try {
      await record('ready');
      phaseTimes['first request (no bundle)'].push((await requestJson(b.url, '/clock?spin=0')).ms);
      await record('first request (no bundle)');
      for (const phase of ['read', 'hash', 'tokenizer', 'runtime', 'kernels', 'session', 'session2', 'prefill', 'prefill2'] as const) {
        const cpuBefore = b.pid ? threadCpu(b.pid) : null;
        const r = await requestJson(b.url, '/phase', { model: 'flex', phase });
        if (r.status !== 200) throw new Error(`bench worker /phase ${phase}: ${JSON.stringify(r.json)}`);
        phaseTimes[phase].push(r.ms);
        if (cpuBefore && b.pid) {
          const spent = cpuSpent(cpuBefore, threadCpu(b.pid));
          phaseCpu[phase].busiest.push(spent.busiest);
          phaseCpu[phase].total.push(spent.total);
        }
        await record(phase);
      }
      for (const round of [0, 1]) {
        let served: number[] | null = null;
        for (const i of shuffled(
          SESSION_VARIANTS.map((_, i) => i),
          rep * 2 + round,
        ).sort((a, b) => (a === 0 ? -1 : b === 0 ? 1 : 0))) {
          const variant = SESSION_VARIANTS[i];
          const response = await fetch(`${b.url}/session-variant?model=flex&graph=${variant.graph}&options=${variant.options}`, {
            method: 'POST',
            body: variant.graph === 'ort' ? ortGraph : '',
          });
          const json = (await response.json()) as { createMs: number; stepMs: number; logits: number[]; error?: string };
          if (!response.ok) throw new Error(`bench worker /session-variant: ${json.error}`);
          variantRuns[i].createMs.push(json.createMs);
          variantRuns[i].stepMs.push(json.stepMs);
          if (i === 0) served = json.logits;
          else if (served)
            variantRuns[i].maxLogitDiff = Math.max(variantRuns[i].maxLogitDiff, ...json.logits.map((v, j) => Math.abs(v - served![j])));
        }
      }
      const ids = await ctx.validationIds(232);
      const steps = await requestJson(b.url, '/phase', { model: 'flex', phase: 'steps', ids });
      if (steps.status !== 200) throw new Error(`bench worker /phase steps: ${JSON.stringify(steps.json)}`);
      await record('after 200 decode steps');
    } finally {
      inspector?.close();
      await b.dispose();
    }
    ctx.log(`ttft: rep ${rep + 1}/${reps} done`);
  }
  const summary: TtftResult['summary'] = {};
  for (const latencyMs of [0, 20]) {
    const rs = runs.filter((r) => r.latencyMs === latencyMs);
    const s = (f: (r: ColdStart) => number) => summarize(rs.map(f));
    summary[String(latencyMs)] = {
      instanceStart: s((r) => r.instanceStartMs),
      firstRequest: s((r) => r.firstRequestMs),
      bundleLoad: s((r) => r.cold.headersMs),
      ttftCold: s((r) => r.cold.firstDeltaMs),
      prefillCold: s((r) => r.cold.firstDeltaMs - r.cold.startMs),
      memoryWaitCold: s((r) => r.cold.timing.memory_wait_ms),
      originRequestsCold: s((r) => r.cold.timing.origin_requests),
      ttftWarm: s((r) => r.warm.firstDeltaMs),
      prefillWarm: s((r) => r.warm.firstDeltaMs - r.warm.startMs),
      memoryWaitWarm: s((r) => r.warm.timing.memory_wait_ms),
      headersWarm: s((r) => r.warm.headersMs),
    };
  }
  const phases: Record<string, Summary> = {};
  for (const [k, v] of Object.entries(phaseTimes)) phases[k] = summarize(v);
  const rssSummary: Record<string, Summary> = {};
  for (const [k, v] of Object.entries(phaseRss)) rssSummary[k] = summarize(v);
  const heapSummary: Record<string, Summary> = {};
  for (const [k, v] of Object.entries(phaseHeap)) heapSummary[k] = summarize(v);
  const sessionVariants = SESSION_VARIANTS.map((variant, i) => ({
    name: variant.name,
    graphBytes: graphBytes[variant.graph],
    createMs: summarize(variantRuns[i].createMs),
    stepMs: summarize(variantRuns[i].stepMs),
    createRatio: pairedRatio(variantRuns[i].createMs, variantRuns[0].createMs),
    stepRatio: pairedRatio(variantRuns[i].stepMs, variantRuns[0].stepMs),
    maxLogitDiff: variantRuns[i].maxLogitDiff,
  }));
  const firstRequest = (session: number[], prefill: number[]) => session.map((v, i) => v + prefill[i]);
  /** The first create and prefill on other fresh isolates, and the phases above paired against them by repetition. */
  const pairedWith = (other: { session: number[]; prefill: number[] }) => ({
    session: summarize(other.session),
    prefill: summarize(other.prefill),
    sessionRatio: pairedRatio(phaseTimes.session, other.session),
    prefillRatio: pairedRatio(phaseTimes.prefill, other.prefill),
    firstRequestRatio: pairedRatio(firstRequest(phaseTimes.session, phaseTimes.prefill), firstRequest(other.session, other.prefill)),
  });
  const before = pairedWith(beforeTimes);
  const withoutKernels = pairedWith(noKernelTimes);
  return {
    suite: 'ttft',
    reps,
    promptTokens,
    runs,
    summary,
    phases,
    phaseRss: rssSummary,
    phaseHeap: heapSummary,
    phaseCpu: Object.fromEntries(
      Object.entries(phaseCpu)
        .filter(([, v]) => v.total.length > 0)
        .map(([k, v]) => [k, { busiest: summarize(v.busiest), total: summarize(v.total) }]),
    ),
    before,
    withoutKernels,
    sessionVariants,
  };
}
