/**
 * Issue 6, items 2 and 3, and the hot-tier memory path: one decode step of the demo model, the
 * same loop (bench/lib/steps.ts: the project's Decoder over a fixed token sequence) in
 * onnxruntime-web inside workerd (bench worker, timed from the client) and in Node
 * (onnxruntime-node with 1 and default threads, onnxruntime-web's wasm). Per-step time is
 * (time of prefill + N steps - time of prefill alone) / N, both measured every round.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { requestJson } from '../lib/client.ts';
import type { Context } from '../lib/context.ts';
import { openNodeModel, type NodeModel, type NodeRuntime } from '../lib/node-steps.ts';
import { median, pairedRatio, shuffled, summarize, type Summary } from '../lib/stats.ts';
import { measureLargeVocab, type LargeVocabResult } from '../lib/large-vocab.ts';
import type { StepPlan } from '../lib/steps.ts';
import { launchWorker, seedR2, type Launched } from '../lib/worker.ts';

export type Runtime = 'workerd' | NodeRuntime;
/** The straightforward sampler (src/engine/sampler-reference.ts), the yardstick of the fast one. */
export const SAMPLE_REFERENCE_131072 = 'straightforward sampler (sampler-reference.ts), temperature 0.8, vocab 131072';
export type StepConfig = 'hot-f16' | 'hot-f32' | 'zero' | 'dense';

export const RUNTIME_LABELS: Record<Runtime, string> = {
  workerd: 'onnxruntime-web in workerd',
  'node-1t': 'onnxruntime-node, 1 thread',
  node: 'onnxruntime-node, default threads',
  'web-node': 'onnxruntime-web (wasm) in Node',
};

export const CONFIG_LABELS: Record<StepConfig, string> = {
  'hot-f16': 'compute.onnx + rows from L0 (f16 tables, as served)',
  'hot-f32': 'compute.onnx + rows from L0 (f32 tables)',
  zero: 'compute.onnx + a constant block of rows (no lookup)',
  dense: 'reference.onnx (dense-equivalent, memory path in the graph)',
};

const MODEL_OF: Record<StepConfig, { model: string; rows: 'hot' | 'zero' | 'none' }> = {
  'hot-f16': { model: 'flex', rows: 'hot' },
  'hot-f32': { model: 'flex-f32', rows: 'hot' },
  zero: { model: 'flex', rows: 'zero' },
  dense: { model: 'flex-dense', rows: 'none' },
};

export interface Cell {
  runtime: Runtime;
  config: StepConfig;
  perStepMs: number[];
  summary: Summary;
}

export interface StepsResult {
  suite: 'steps';
  rounds: number;
  plan: { prefill: number; steps: number };
  pairs: number;
  cells: Cell[];
  /** Per round paired ratios. */
  ratios: {
    workerdVsNode1t: number;
    workerdVsNode: number;
    workerdVsWebNode: number;
    hotF16OverheadWorkerd: number;
    hotF32OverheadWorkerd: number;
    hotF16OverheadNode1t: number;
    hotF32OverheadNode1t: number;
    denseVsHotWorkerd: number;
    denseVsZeroWorkerd: number;
    denseVsHotNode1t: number;
    denseVsZeroNode1t: number;
  };
  micro: {
    /** One row lookup from L0 (hot set) including decode to f32, microseconds. */
    lookupUs: Record<string, number>;
    /** One f16 row decode with src/bundle/row-codec.ts decodeRow ('workerd src', 'node src'), microseconds. */
    decodeUs: Record<string, number>;
    rowBytes: number;
    rowValues: number;
    /** Per-token work outside session.run in workerd, microseconds (bench worker /overhead). */
    overheadUs?: Record<string, number>;
    /** Each overhead as a fraction of the compute graph's decode step in workerd (`zero`), paired per round of this run. */
    overheadVsStep?: Record<string, number>;
    /** Sampling against the decode step of the demo's shape at vocabulary 131072 (bench/lib/large-vocab.ts). */
    largeVocab?: LargeVocabResult;
  };
  weights: {
    computeBytes: number;
    referenceBytes: number;
    tableBytesF16: number;
    tableBytesF32: number;
    computeFile: number;
    referenceFile: number;
  };
  clock: { busyClientMs: number; dateDelta: number; perfDelta: number };
}

/** Bytes of a graph's initializers (its weights). */
export function initializerBytes(path: string): number {
  const model = onnxProto.onnx.ModelProto.decode(readFileSync(path));
  let total = 0;
  for (const t of model.graph?.initializer ?? []) {
    total += t.rawData?.byteLength ?? 0;
    total +=
      (t.floatData?.length ?? 0) * 4 + (t.int64Data?.length ?? 0) * 8 + (t.int32Data?.length ?? 0) * 4 + (t.doubleData?.length ?? 0) * 8;
  }
  return total;
}

export async function runSteps(ctx: Context): Promise<StepsResult> {
  const rounds = ctx.rounds(5, 3);
  const plan = { prefill: 32, steps: ctx.options.quick ? 48 : 64 };
  // Each cell of a round is (median of `pairs` runs with N steps - median of `pairs` prefill-only runs) / N.
  const pairs = ctx.options.quick ? 1 : 3;
  const demo = await ctx.demoBundle();
  const demo32 = await ctx.demoBundleF32();
  const dense = await ctx.denseBundle();
  const ids = await ctx.validationIds(plan.prefill + plan.steps);
  const script = ctx.benchScript();
  const seed = await seedR2(script, [
    { dir: demo.dir, model: 'flex', version: demo.manifest.version },
    { dir: demo32.dir, model: 'flex-f32', version: demo32.manifest.version },
    { dir: dense.dir, model: 'flex-dense', version: dense.manifest.version },
  ]);
  const worker: Launched = await launchWorker({ scriptDir: script, seed });
  // Quick mode compares workerd with single-threaded onnxruntime-node only.
  const runtimes: Runtime[] = ctx.options.quick ? ['workerd', 'node-1t'] : ['workerd', 'node-1t', 'node', 'web-node'];
  const configs: StepConfig[] = ['hot-f16', 'hot-f32', 'zero', 'dense'];
  const node = new Map<string, NodeModel>();
  const cells = new Map<string, Cell>();
  for (const runtime of runtimes)
    for (const config of configs) cells.set(`${runtime}/${config}`, { runtime, config, perStepMs: [], summary: summarize([]) });

  const timeOnce = async (runtime: Runtime, config: StepConfig, p: StepPlan): Promise<number> => {
    const { model, rows } = MODEL_OF[config];
    if (runtime === 'workerd') {
      const r = await requestJson(worker.url, '/steps', { model, rows, ...p });
      if (r.status !== 200) throw new Error(`bench worker /steps: ${JSON.stringify(r.json)}`);
      return r.ms;
    }
    const m = node.get(`${runtime}/${config}`)!;
    const t = performance.now();
    await m.run(rows, p);
    return performance.now() - t;
  };
  try {
    // The clock check: does workerd's clock move while a request computes without I/O?
    const clock = await requestJson(worker.url, '/clock?spin=20000000');

    for (const runtime of runtimes.filter((r) => r !== 'workerd')) {
      for (const config of configs) {
        const b = config === 'hot-f32' ? demo32 : config === 'dense' ? dense : demo;
        node.set(`${runtime}/${config}`, await openNodeModel(runtime as NodeRuntime, b.dir, b.manifest));
      }
    }
    const full: StepPlan = { ids, ...plan };
    const none: StepPlan = { ids, prefill: plan.prefill, steps: 0 };
    for (const runtime of runtimes) for (const config of configs) await timeOnce(runtime, config, { ids, prefill: plan.prefill, steps: 8 });
    for (let round = 0; round < rounds; round++) {
      for (const runtime of shuffled(runtimes, round + 101)) {
        for (const config of shuffled(configs, round + 202)) {
          const a: number[] = [];
          const b: number[] = [];
          for (let p = 0; p < pairs; p++) {
            a.push(await timeOnce(runtime, config, full));
            b.push(await timeOnce(runtime, config, none));
          }
          cells.get(`${runtime}/${config}`)!.perStepMs.push((median(a) - median(b)) / plan.steps);
        }
      }
      ctx.log(`steps: round ${round + 1}/${rounds} done`);
    }
    for (const cell of cells.values()) cell.summary = summarize(cell.perStepMs);

    // Micro: one L0 lookup (hot set row + decode to f32) and one f16 row decode.
    const lookupIds = ids.slice(0, 64);
    const micro: StepsResult['micro'] = {
      lookupUs: {},
      decodeUs: {},
      rowBytes: demo.manifest.tables!.layout.rowBytes,
      rowValues: demo.manifest.tables!.layout.rowValues,
    };
    const diffs = (xs: number[]) => median(xs);
    const lookupW: Record<string, number[]> = { 'workerd f16': [], 'workerd f32': [], 'node f16': [], 'node f32': [] };
    const decodeW: Record<string, number[]> = { 'workerd src': [], 'node src': [] };
    const { decodeRow } = await import('../../src/bundle/row-codec.ts');
    const layout = demo.manifest.tables!.layout;
    const row = new Uint8Array(layout.rowBytes);
    for (let i = 0; i < row.length; i += 2) row[i + 1] = 0x3c;
    const out = new Float32Array(layout.rowValues);
    for (let round = 0; round < rounds; round++) {
      for (const [model, key, n] of [
        ['flex', 'f16', 100],
        ['flex-f32', 'f32', 3000],
      ] as const) {
        const a: number[] = [];
        const b: number[] = [];
        for (let p = 0; p < pairs; p++) {
          a.push((await requestJson(worker.url, '/lookups', { model, ids: lookupIds, n })).ms);
          b.push((await requestJson(worker.url, '/lookups', { model, ids: lookupIds, n: 0 })).ms);
        }
        lookupW[`workerd ${key}`].push(((median(a) - median(b)) / n) * 1000);
        const m = node.get(`node-1t/${key === 'f16' ? 'hot-f16' : 'hot-f32'}`)!;
        const t = performance.now();
        await m.lookups(lookupIds, n);
        lookupW[`node ${key}`].push(((performance.now() - t) / n) * 1000);
      }
      {
        // One decodeRow takes a few µs: enough decodes per request to stand above a request's noise.
        const n = 5000;
        const a: number[] = [];
        const b: number[] = [];
        for (let p = 0; p < pairs; p++) {
          a.push((await requestJson(worker.url, '/decode', { model: 'flex', n })).ms);
          b.push((await requestJson(worker.url, '/decode', { model: 'flex', n: 0 })).ms);
        }
        decodeW['workerd src'].push(((median(a) - median(b)) / n) * 1000);
        const t = performance.now();
        for (let i = 0; i < n; i++) decodeRow(row, layout, out, 0);
        decodeW['node src'].push(((performance.now() - t) / n) * 1000);
      }
    }
    // Per-token work the worker does besides session.run, in workerd.
    const streamIds = await ctx.validationIds(256);
    const overheadCases: [string, Record<string, unknown>, number][] = [
      ['sampleToken, temperature 0.8, vocab 4096', { what: 'sample', vocab: 4096 }, 200],
      ['sampleToken, temperature 0.8, vocab 32768', { what: 'sample', vocab: 32768 }, 60],
      ['sampleToken, temperature 0.8, vocab 131072', { what: 'sample', vocab: 131072 }, 30],
      [SAMPLE_REFERENCE_131072, { what: 'sample-reference', vocab: 131072 }, 6],
      ['sampleToken, temperature 0.8, top_p 0.95, vocab 131072', { what: 'sample', vocab: 131072, sampling: { topP: 0.95 } }, 30],
      ['sampleToken, temperature 0.8, top_k 40, vocab 131072', { what: 'sample', vocab: 131072, sampling: { topK: 40 } }, 30],
      [
        'sampleToken, temperature 0.8, top_k 50, top_p 0.9, min_p 0.05, vocab 131072',
        { what: 'sample', vocab: 131072, sampling: { topK: 50, topP: 0.9, minP: 0.05 } },
        30,
      ],
      ['sampleToken, temperature 0 (argmax), vocab 4096', { what: 'greedy', vocab: 4096 }, 2000],
      ['sampleToken, temperature 0 (argmax: one pass over the logits), vocab 131072', { what: 'greedy', vocab: 131072 }, 100],
      ['TextStreamer.push, mean over a 64-token generation', { what: 'stream', ids: streamIds }, 64],
      ['TextStreamer.push, mean over a 256-token generation', { what: 'stream', ids: streamIds }, 256],
      ['await setTimeout(0) (the generation loop yields once per token)', { what: 'yield' }, 200],
    ];
    const overheadW: Record<string, number[]> = Object.fromEntries(overheadCases.map(([k]) => [k, [] as number[]]));
    for (let round = 0; round < rounds; round++) {
      for (const [key, params, n] of overheadCases) {
        const a: number[] = [];
        const b: number[] = [];
        for (let p = 0; p < pairs; p++) {
          const r = await requestJson(worker.url, '/overhead', { model: 'flex', ...params, n });
          if (r.status !== 200) throw new Error(`bench worker /overhead: ${JSON.stringify(r.json)}`);
          a.push(r.ms);
          b.push((await requestJson(worker.url, '/overhead', { model: 'flex', ...params, n: 0 })).ms);
        }
        overheadW[key].push(((median(a) - median(b)) / n) * 1000);
      }
    }
    micro.overheadUs = Object.fromEntries(Object.entries(overheadW).map(([k, v]) => [k, median(v)]));
    const stepPerRound = cells.get('workerd/zero')?.perStepMs ?? [];
    micro.overheadVsStep = Object.fromEntries(
      Object.entries(overheadW).map(([k, v]) => [k, median(v.map((us, round) => us / 1000 / stepPerRound[round % stepPerRound.length]))]),
    );

    micro.largeVocab = await measureLargeVocab(demo.manifest.tables!.layout.rowValues, rounds);
    ctx.log('steps: sampling against a decode step at vocabulary 131072 done');
    for (const [k, v] of Object.entries(lookupW)) micro.lookupUs[k] = diffs(v);
    for (const [k, v] of Object.entries(decodeW)) micro.decodeUs[k] = diffs(v);

    const per = (runtime: Runtime, config: StepConfig) => cells.get(`${runtime}/${config}`)!.perStepMs;
    const overhead = (runtime: Runtime, config: StepConfig) => pairedRatio(per(runtime, config), per(runtime, 'zero')) - 1;
    const has = (runtime: Runtime) => runtimes.includes(runtime);
    const ratios = {
      workerdVsNode1t: pairedRatio(per('workerd', 'zero'), per('node-1t', 'zero')),
      workerdVsNode: has('node') ? pairedRatio(per('workerd', 'zero'), per('node', 'zero')) : NaN,
      workerdVsWebNode: has('web-node') ? pairedRatio(per('workerd', 'zero'), per('web-node', 'zero')) : NaN,
      hotF16OverheadWorkerd: overhead('workerd', 'hot-f16'),
      hotF32OverheadWorkerd: overhead('workerd', 'hot-f32'),
      hotF16OverheadNode1t: overhead('node-1t', 'hot-f16'),
      hotF32OverheadNode1t: overhead('node-1t', 'hot-f32'),
      denseVsHotWorkerd: pairedRatio(per('workerd', 'dense'), per('workerd', 'hot-f16')),
      denseVsZeroWorkerd: pairedRatio(per('workerd', 'dense'), per('workerd', 'zero')),
      denseVsHotNode1t: pairedRatio(per('node-1t', 'dense'), per('node-1t', 'hot-f16')),
      denseVsZeroNode1t: pairedRatio(per('node-1t', 'dense'), per('node-1t', 'zero')),
    };
    const weights = {
      computeBytes: initializerBytes(join(demo.dir, demo.manifest.objects.compute.path)),
      referenceBytes: initializerBytes(join(demo.dir, demo.manifest.objects.reference!.path)),
      tableBytesF16: demo.manifest.tables!.shards.reduce((n, s) => n + s.bytes, 0),
      tableBytesF32: demo32.manifest.tables!.shards.reduce((n, s) => n + s.bytes, 0),
      computeFile: demo.manifest.objects.compute.bytes,
      referenceFile: demo.manifest.objects.reference!.bytes,
    };
    return {
      suite: 'steps',
      rounds,
      plan,
      pairs,
      cells: [...cells.values()],
      ratios,
      micro,
      weights,
      clock: { busyClientMs: clock.ms, dateDelta: clock.json.dateDelta, perfDelta: clock.json.perfDelta },
    };
  } finally {
    for (const m of node.values()) await m.release().catch(() => {});
    await worker.dispose().catch(() => {});
  }
}
