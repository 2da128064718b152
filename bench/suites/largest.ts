/**
 * Issue 13: "what is the biggest model one Worker serves, and how fast?" Random-weight Flex models
 * of realistic shapes (vocabulary 32,768 and one 131,072; d 512-1024; 12-24 layers; memory in every
 * layer; f32 tables of 2.25-3 GiB at the origin) built by `flexmem build`, served by the real edge
 * worker in workerd (Miniflare) from s3rver, one model per fresh workerd process, one at a time.
 *
 * Per model and compute dtype: compute parameters, graph bytes, table bytes; the isolate's memory
 * (V8 heap used + ArrayBuffers, plus onnxruntime's wasm memory read apart) after a full GC once the
 * bundle is loaded and again after serving, the largest value sampled without GC while the cold
 * request ran (a lower bound of the peak), and workerd's RSS and its high-water mark; cold time
 * to first token split into instance start, first request, bundle load (response headers) and the
 * first token itself; warm ms/token.
 *
 * A family of models shares one table set: the tables depend only on (vocab, layers, d, memory FFN
 * width, seed), so compute paths of different sizes are built over the same tables (checked
 * byte-identical) and the tables are published once (bench/lib/bundles.ts, largeVariant).
 *
 * Dtypes: f32 always; f16/int8/int4 when `flexmem build` has a compute dtype. LARGEST_DTYPES=f32,int8
 * chooses. Results of earlier runs are kept for the (model, dtype) pairs a run does not measure.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requestJson, streamCompletion, withRetry, type Failure, type StreamResult } from '../lib/client.ts';
import type { Context } from '../lib/context.ts';
import { runEnv } from '../lib/env.ts';
import { largeName, largeTableSet, largeVariant, tableBytes, tableSetName, type BuiltBundle, type LargeShape } from '../lib/bundles.ts';
import { heapOf, IsolateInspector, type HeapUsage } from '../lib/inspector.ts';
import { mergeIntoResult, ortMemoryEntry, type FitEntry, type OrtMemoryEntry } from '../lib/ort-memory.ts';
import { WORK } from '../lib/paths.ts';
import { startS3 } from '../lib/s3.ts';
import { median, summarize, type Summary } from '../lib/stats.ts';
import { buildWorkerScript, launchWorker, processMemory, publish, type Launched } from '../lib/worker.ts';
import { servedGraphObjects } from '../../src/bundle/manifest.ts';
import { bundleKey } from '../../src/storage/object-store.ts';
import { planServing } from '../../src/model/plan.ts';
import { COMPUTE_DTYPES, type ComputeDtype } from '../../src/model/quantize.ts';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';

/** The isolate memory limit of a Cloudflare Worker. */
export const ISOLATE_LIMIT_BYTES = 128 * 2 ** 20;

export interface LargestModel {
  /** Short label, e.g. "d1024 L24 MHA". */
  label: string;
  shape: LargeShape;
  /** The compute dtypes worth serving it in (a shape far over the limit in f32 is measured in the smaller dtypes only). */
  dtypes: readonly ComputeDtype[];
  /** Worker settings of its own: MAX_RUN_TOKENS for a model whose prefill scratch would cross the limit. */
  vars?: Record<string, string>;
}

export interface LargestInstance {
  label: string;
  name: string;
  shape: LargeShape;
  computeDtype: ComputeDtype;
  /** When it was measured (instances of earlier runs are kept). */
  measuredAt: string;
  computeParams: number;
  embeddingParams: number;
  /** The graph the worker loads: compute.ort (optimized at build) when the bundle has it, else compute.onnx. */
  graphBytes: number;
  servedGraph: string;
  /** compute.onnx as built (the ONNX graph, before build-time optimization). */
  onnxBytes: number;
  tableBytes: number;
  tableDtype: string;
  rowBytes: number;
  /** Seconds `flexmem build` took for this bundle in this run (0: cached). */
  buildSeconds: number;
  /** Miniflare start to ready (workerd process start). */
  instanceStartMs: number;
  /** GET /health on the fresh isolate (script start, no bundle). */
  firstRequestMs: number;
  /** The first completion (1 token) on the isolate: headers arrive after the bundle is loaded. */
  coldHeadersMs: number;
  coldFinishMs: number;
  coldMemoryWaitMs: number;
  /** The prompt's tokens as the worker counted them (usage.prompt_tokens of the cold request); absent in runs before it was recorded. */
  promptTokensServed?: number;
  /** Node's own GET of compute.onnx from s3rver: the graph read's share of the bundle load. */
  graphReadMs: number;
  /** V8 heap used + ArrayBuffers sampled (no GC) every 25 ms while the cold request ran: the largest sample. */
  heapPeakSampled: number | null;
  heapIdle: HeapUsage | null;
  /** After the cold request, after a full GC. */
  heapLoaded: HeapUsage | null;
  /** After serving every round, after a full GC. */
  heapAfter: HeapUsage | null;
  heapAfterNoGc: HeapUsage | null;
  /**
   * Bytes of the isolate's WebAssembly memories (onnxruntime-web's heap) once loaded and after
   * serving: V8's heap usage does not count them. A wasm memory never shrinks, so this is also
   * its peak.
   */
  wasmLoaded: number;
  wasmAfter: number;
  rssAfter: number;
  hwm: number;
  /** Warm: finish of a 1-token stream. */
  warmTtftMs: Summary | null;
  /** Warm: (finish of an N-token stream - finish of a 1-token stream) / (N - 1). */
  decodePerTokenMs: Summary | null;
  memoryPerDecodeMs: Summary | null;
  originBytesPerToken: number;
  /** Set when the model could not be served (the message). */
  error?: string;
}

export interface LargestResult {
  suite: 'largest';
  rounds: number;
  maxTokens: number;
  promptTokens: number;
  dtypes: ComputeDtype[];
  /** Seconds per table-set build (the whole `flexmem build`, tables included) in the run that built it. */
  tableBuilds: { name: string; tableBytes: number; seconds: number; measuredAt: string }[];
  instances: LargestInstance[];
  /** onnxruntime-web's wasm memory by phase and session options, in Node (bench/lib/ort-memory.ts). */
  ortMemory?: OrtMemoryEntry[];
  /** Smaller shapes, graph only, in Node: where the 128 MB line falls (bench/lib/ort-memory.ts --fit). */
  fit?: FitEntry[];
  failures: Failure[];
}

const FAMILY_A = { vocab: 32768, layers: 24, hidden: 1024 };
const FAMILY_C = { vocab: 32768, layers: 24, hidden: 768 };
const FAMILY_B = { vocab: 131072, layers: 12, hidden: 512 };
/** The smallest compute path of a family: one 64-wide attention head, FFN-C of 64. */
const MIN = { heads: 1, kvHeads: 1, headDim: 64, ffnC: 64 };

export function largestModels(quick: boolean): LargestModel[] {
  const models: LargestModel[] = [
    { label: 'd768 L24, 1 head, FFN-C 64', shape: { ...FAMILY_C, ...MIN }, dtypes: COMPUTE_DTYPES },
    { label: 'd1024 L24, 1 head, FFN-C 64', shape: { ...FAMILY_A, ...MIN }, dtypes: COMPUTE_DTYPES },
    {
      label: 'd1024 L24, 4x128 heads, FFN-C 256',
      shape: { ...FAMILY_A, heads: 4, kvHeads: 4, headDim: 128, ffnC: 256 },
      dtypes: ['int8', 'int4'],
      // A prompt run in parts of 8 tokens: its scratch stays small (docs/architecture.md "Large models in 128 MB").
      vars: { MAX_RUN_TOKENS: '8' },
    },
    {
      // The same compute parameters with grouped-query attention (four query heads share one KV
      // head, Llama 3's ratio): a quarter of the KV cache, which a run holds twice in the wasm heap.
      label: 'd1024 L24, 4x128 heads (1 KV head), FFN-C 512',
      shape: { ...FAMILY_A, heads: 4, kvHeads: 1, headDim: 128, ffnC: 512 },
      dtypes: ['int8', 'int4'],
      vars: { MAX_RUN_TOKENS: '8' },
    },
    {
      label: 'd1024 L24, 8x128 heads (MHA), FFN-C 64',
      shape: { ...FAMILY_A, heads: 8, kvHeads: 8, headDim: 128, ffnC: 64 },
      dtypes: ['int4'],
    },
    { label: 'vocab 131k, d512 L12, 1 head, FFN-C 64', shape: { ...FAMILY_B, ...MIN }, dtypes: ['int4'] },
  ];
  // LARGEST_MODELS=3,4 measures only those (indexes into this list); earlier results of the others are kept.
  const only = process.env.LARGEST_MODELS?.split(',').map(Number);
  if (only) return models.filter((_, i) => only.includes(i));
  if (!quick) return models;
  return models.slice(0, 2).map((m) => ({ ...m, dtypes: ['f32', 'int4'] as const }));
}

function chosenDtypes(): ComputeDtype[] {
  const env = process.env.LARGEST_DTYPES;
  if (!env) return [...COMPUTE_DTYPES];
  return env
    .split(',')
    .map((d) => d.trim())
    .filter((d): d is ComputeDtype => (COMPUTE_DTYPES as readonly string[]).includes(d));
}

/** V8 heap used + ArrayBuffers (without wasm memory, which V8 does not count there). */
export const jsBytes = (h: HeapUsage | null) => (h ? h.usedSize + h.backingStorageSize : NaN);

async function wasmOf(w: Launched): Promise<number> {
  if (!w.inspectorPort) return NaN;
  const inspector = await IsolateInspector.connect(w.inspectorPort).catch(() => null);
  if (!inspector) return NaN;
  try {
    return (await inspector.wasmMemoryBytes()).reduce((a, b) => a + b, 0);
  } catch {
    return NaN;
  } finally {
    inspector.close();
  }
}

/** Samples the isolate's memory (no GC) until `done` settles; the largest sample. */
async function samplePeak(w: Launched, done: Promise<unknown>): Promise<number | null> {
  if (!w.inspectorPort) return null;
  const inspector = await IsolateInspector.connect(w.inspectorPort).catch(() => null);
  if (!inspector) return null;
  let finished = false;
  void done.finally(() => (finished = true)).catch(() => {});
  let peak = 0;
  try {
    while (!finished) {
      const h = await inspector.heap(false).catch(() => null);
      if (h) peak = Math.max(peak, jsBytes(h));
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return peak || null;
  } finally {
    inspector.close();
  }
}

/** What the edge worker loads (src/serving/model-registry.ts, graph 'optimized'). */
const servedGraph = (b: BuiltBundle) => servedGraphObjects(b.manifest);

function previous(): LargestResult | null {
  const path = join(WORK, 'results', 'largest.json');
  if (!existsSync(path)) return null;
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { result: LargestResult }).result;
  } catch {
    return null;
  }
}

export async function runLargest(ctx: Context): Promise<LargestResult> {
  const rounds = ctx.rounds(3, 1);
  const maxTokens = ctx.options.quick ? 8 : 16;
  const promptTokens = 32;
  const models = largestModels(ctx.options.quick);
  const dtypes = chosenDtypes();
  const failures: Failure[] = [];
  const measuredAt = new Date().toISOString();
  const earlier = previous();
  const tableBuilds = [...(earlier?.tableBuilds ?? [])];

  // One s3rver folder; table sets stay there by version (published once). It is emptied when a
  // family's table set changed version, so old copies do not pile up.
  const s3Dir = join(WORK, 's3-largest');
  const stamp = join(WORK, 's3-largest.tables');
  const held = new Map<string, string>(
    existsSync(stamp)
      ? readFileSync(stamp, 'utf8')
          .split(',')
          .filter((e) => e.includes('='))
          .map((e) => e.split('=') as [string, string])
      : [],
  );
  // Its own copy of the edge worker: the shared bench/.work/edge-worker is rebuilt (deleted first)
  // by any other bench run, and a launch that read it mid-rebuild failed.
  const t0 = performance.now();
  const script = buildWorkerScript(null, join(WORK, 'edge-worker-largest'));
  ctx.buildSeconds['edge worker for largest (wrangler deploy --dry-run)'] = (performance.now() - t0) / 1000;
  // The same passage, cut to promptTokens in each model's own tokenizer (the random-weight models'
  // tokenizer is not the demo model's: the demo's 32 tokens are 64 of theirs).
  const prompts = new Map<string, string>();
  const promptFor = async (bundle: BuiltBundle) => {
    const path = join(bundle.dir, bundle.manifest.objects.tokenizer.path);
    if (!prompts.has(path)) prompts.set(path, await ctx.prompt(promptTokens, new TextTokenizer(JSON.parse(readFileSync(path, 'utf8')))));
    return prompts.get(path)!;
  };
  const instances: LargestInstance[] = [];
  const tableSets = new Map<string, BuiltBundle>();
  const bundles: { model: LargestModel; dtype: ComputeDtype; bundle: BuiltBundle | null }[] = [];
  // Keep earlier measurements of (model, dtype) pairs this run did not measure.
  const key = (i: LargestInstance) => `${i.name}/${i.computeDtype}`;
  const order = (i: LargestInstance) => i.computeParams + ['f32', 'f16', 'int8', 'int4'].indexOf(i.computeDtype) * 1e12;
  const result = (): LargestResult => {
    const measured = new Set(instances.map(key));
    const kept = (earlier?.instances ?? []).filter((i) => !measured.has(key(i)));
    const r: LargestResult = {
      suite: 'largest',
      rounds,
      maxTokens,
      promptTokens,
      dtypes,
      tableBuilds,
      instances: [...kept, ...instances].sort((a, b) => order(a) - order(b)),
      ortMemory: earlier?.ortMemory,
      fit: earlier?.fit,
      failures,
    };
    mergeIntoResult(r); // the Node measurements of bench/lib/ort-memory.ts --ort / --fit, when taken
    return r;
  };
  // Written after every model, so a run stopped part-way leaves what it measured
  // (`npx tsx bench/run.ts --report-only` renders it); bench/run.ts overwrites it at the end.
  const env = runEnv();
  const started = performance.now();
  const command = `npx tsx bench/run.ts ${process.argv.slice(2).join(' ')}`.trim();
  const writePartial = () => {
    const meta = { command, date: new Date().toISOString(), quick: ctx.options.quick, seconds: (performance.now() - started) / 1000, env };
    writeFileSync(join(WORK, 'results', 'largest.json'), JSON.stringify({ meta, result: result() }, null, 1));
  };
  let s3: Awaited<ReturnType<typeof startS3>> | null = null;
  try {
    for (const model of models) {
      const setName = tableSetName(model.shape);
      if (!tableSets.has(setName)) {
        ctx.log(`largest: table set ${setName} ...`);
        const set = await largeTableSet(model.shape);
        if (set.buildSeconds) {
          ctx.buildSeconds[`largest ${setName}`] = set.buildSeconds;
          const entry = { name: setName, tableBytes: tableBytes(set.manifest), seconds: set.buildSeconds, measuredAt };
          const i = tableBuilds.findIndex((b) => b.name === setName);
          if (i === -1) tableBuilds.push(entry);
          else tableBuilds[i] = entry;
        }
        tableSets.set(setName, set);
        if (held.has(setName) && held.get(setName) !== set.manifest.version) {
          await s3?.close().catch(() => {});
          s3 = null;
          rmSync(s3Dir, { recursive: true, force: true });
          held.clear();
        }
        s3 ??= await startS3(s3Dir);
        const t = performance.now();
        await publish(s3.store, set.dir, `tables-${set.manifest.version}`);
        held.set(setName, set.manifest.version);
        writeFileSync(stamp, [...held].map(([n, v]) => `${n}=${v}`).join(','));
        ctx.log(
          `largest: tables ${set.manifest.version} on s3rver (${(tableBytes(set.manifest) / 2 ** 30).toFixed(2)} GiB, ${((performance.now() - t) / 1000).toFixed(0)} s)`,
        );
      }
      const set = tableSets.get(setName)!;
      for (const dtype of dtypes.filter((d) => model.dtypes.includes(d))) {
        let bundle: BuiltBundle | null = null;
        let error: string | undefined;
        try {
          const t = performance.now();
          // Every model is a variant built by this run's builder (the table set's own graph is not served).
          bundle = await largeVariant(model.shape, dtype, set);
          if (bundle.buildSeconds) ctx.buildSeconds[`largest ${largeName(model.shape)} ${dtype}`] = bundle.buildSeconds;
          ctx.log(`largest: bundle ${largeName(model.shape)} ${dtype} ready (${((performance.now() - t) / 1000).toFixed(0)} s)`);
        } catch (e) {
          error = String((e as Error).message ?? e).slice(0, 400);
          ctx.log(`largest: bundle ${largeName(model.shape)} ${dtype} failed: ${error}`);
        }
        bundles.push({ model, dtype, bundle });
        await serve(model, dtype, bundle, error);
        writePartial();
      }
    }
  } finally {
    await s3?.close().catch(() => {});
  }

  async function serve(model: LargestModel, dtype: ComputeDtype, bundle: BuiltBundle | null, error: string | undefined): Promise<void> {
    const store = s3!;
    const name = largeName(model.shape);
    const plan = planServing(bundle?.manifest.config ?? tableSets.get(tableSetName(model.shape))!.manifest.config);
    const settings = Object.entries(model.vars ?? {}).map(([k, v]) => `${k}=${v}`);
    const base: LargestInstance = {
      label: settings.length ? `${model.label} (${settings.join(', ')})` : model.label,
      name,
      shape: model.shape,
      computeDtype: dtype,
      measuredAt,
      computeParams: plan.activeParams,
      embeddingParams: plan.embeddingParams,
      graphBytes: bundle ? servedGraph(bundle).reduce((n, ref) => n + ref.bytes, 0) : NaN,
      servedGraph: bundle
        ? servedGraph(bundle)
            .map((ref) => ref.path)
            .join(' + ')
        : 'n/a',
      onnxBytes: bundle?.manifest.objects.compute.bytes ?? NaN,
      tableBytes: bundle ? tableBytes(bundle.manifest) : NaN,
      tableDtype: bundle?.manifest.tables?.layout.dtype ?? 'n/a',
      rowBytes: bundle?.manifest.tables?.layout.rowBytes ?? NaN,
      buildSeconds: bundle?.buildSeconds ?? 0,
      instanceStartMs: NaN,
      firstRequestMs: NaN,
      coldHeadersMs: NaN,
      coldFinishMs: NaN,
      coldMemoryWaitMs: NaN,
      graphReadMs: NaN,
      heapPeakSampled: null,
      heapIdle: null,
      heapLoaded: null,
      heapAfter: null,
      heapAfterNoGc: null,
      wasmLoaded: NaN,
      wasmAfter: NaN,
      rssAfter: NaN,
      hwm: NaN,
      warmTtftMs: null,
      decodePerTokenMs: null,
      memoryPerDecodeMs: null,
      originBytesPerToken: NaN,
    };
    if (!bundle) {
      instances.push({ ...base, error: `build: ${error}` });
      return;
    }
    ctx.log(`largest: serving ${name} ${dtype} (${(plan.activeParams / 1e6).toFixed(1)}M compute params) ...`);
    const modelName = `largest-${dtype}-${name}`;
    const prompt = await promptFor(bundle);
    const body = (max_tokens: number) => ({ model: modelName, prompt, max_tokens, temperature: 0.8, seed: 5 });
    await publish(store.store, bundle.dir, modelName);
    // The origin alone: Node's GET of the graph's objects, in parallel as the worker reads them (median of 3).
    const graphKeys = servedGraph(bundle).map((ref) => bundleKey(bundle.manifest.version, ref.path));
    const reads: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await Promise.all(graphKeys.map((key) => store.store.get(key)));
      reads.push(performance.now() - t);
    }
    base.graphReadMs = median(reads);
    let w: Launched | null = null;
    try {
      w = await launchWorker({
        scriptDir: script,
        // No isolate row cache or hot set: the isolate holds the compute path only (both are
        // budgets taken from the same 128 MB; wrangler.toml's defaults add 8 + 32 MiB at most).
        vars: { ...ctx.vars, ...store.vars, ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', ...model.vars },
        inspect: true,
      });
      base.instanceStartMs = w.startMs;
      base.firstRequestMs = (await requestJson(w.url, '/health')).ms;
      base.heapIdle = await heapOf(w);
      const cold = streamCompletion(w.url, body(1));
      const [coldResult, peak] = await Promise.all([cold, samplePeak(w, cold)]);
      base.heapPeakSampled = peak;
      base.coldHeadersMs = coldResult.headersMs;
      base.coldFinishMs = coldResult.finishMs;
      base.coldMemoryWaitMs = coldResult.timing?.memory_wait_ms ?? NaN;
      base.promptTokensServed = coldResult.usage?.prompt_tokens ?? NaN;
      base.heapLoaded = await heapOf(w);
      base.wasmLoaded = await wasmOf(w);
      const runs: { full: StreamResult; pre: StreamResult }[] = [];
      const url = w.url;
      for (let round = 0; round < rounds; round++) {
        const pre = await withRetry(`${name} ${dtype} round ${round + 1} (1 token)`, failures, () => streamCompletion(url, body(1)));
        const full = await withRetry(`${name} ${dtype} round ${round + 1}`, failures, () => streamCompletion(url, body(maxTokens)));
        runs.push({ full, pre });
      }
      const tokens = (r: StreamResult) => (r.usage?.completion_tokens ?? NaN) - 1;
      const per = (r: { full: StreamResult; pre: StreamResult }, key: string) =>
        ((r.full.timing?.[key] ?? NaN) - (r.pre.timing?.[key] ?? NaN)) / tokens(r.full);
      base.warmTtftMs = summarize(runs.map((r) => r.pre.finishMs));
      base.decodePerTokenMs = summarize(runs.map((r) => (r.full.finishMs - r.pre.finishMs) / tokens(r.full)));
      base.memoryPerDecodeMs = summarize(runs.map((r) => per(r, 'memory_wait_ms')));
      base.originBytesPerToken = median(runs.map((r) => per(r, 'origin_bytes')));
      base.heapAfterNoGc = await heapOf(w, false);
      base.heapAfter = await heapOf(w);
      base.wasmAfter = await wasmOf(w);
      const m = (w.pid && processMemory(w.pid)) || { rss: NaN, hwm: NaN };
      base.rssAfter = m.rss;
      base.hwm = m.hwm;
      instances.push(base);
      ctx.log(
        `largest: ${name} ${dtype}: JS ${(jsBytes(base.heapAfter) / 2 ** 20).toFixed(1)} MiB + wasm ${(base.wasmAfter / 2 ** 20).toFixed(1)} MiB after GC, ${base.decodePerTokenMs.median.toFixed(1)} ms/token, cold TTFT ${base.coldFinishMs.toFixed(0)} ms`,
      );
    } catch (e) {
      const message = String((e as Error).message ?? e).slice(0, 400);
      if (w?.pid) {
        const m = processMemory(w.pid);
        base.rssAfter = m?.rss ?? NaN;
        base.hwm = m?.hwm ?? NaN;
      }
      instances.push({ ...base, error: message });
      ctx.log(`largest: ${name} ${dtype} failed: ${message}`);
    } finally {
      await w?.dispose().catch(() => {});
    }
  }

  // Where the wasm memory goes (Node, a child process per measurement): LARGEST_ORT_MEMORY=1, as it
  // takes minutes; `npx tsx bench/lib/ort-memory.ts --ort`, then `--merge`, adds it to a stored result.
  const ortMemory = (earlier?.ortMemory ?? []).filter(
    (e) => !bundles.some((b) => b.bundle && largeName(b.model.shape) === e.name && b.dtype === e.computeDtype),
  );
  if (process.env.LARGEST_ORT_MEMORY === '1')
    for (const { model, dtype, bundle } of bundles) {
      if (!bundle) continue;
      ctx.log(`largest: onnxruntime-web memory of ${largeName(model.shape)} ${dtype} (Node) ...`);
      ortMemory.push(await ortMemoryEntry(largeName(model.shape), dtype, bundle.dir));
    }
  return { ...result(), ortMemory };
}
