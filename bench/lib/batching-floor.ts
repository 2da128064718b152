/**
 * The arithmetic floor of continuous batching on this machine: the part of a burst of 16 streams
 * that no batching removes.
 *
 * A decode step multiplies each row by every weight matrix of the compute graph. Batching shares a
 * run's fixed cost, not those multiply-adds. So the floor is: the served graph's weight
 * multiply-adds per token, timed as ONE matrix product ([M, K] × [K, N] with K·N of them: fewer
 * and larger calls than any graph makes) in onnxruntime-web's WASM, one thread, the build workerd
 * runs. 16 streams of `tokens` tokens after `promptTokens`-token prompts need 16 prompts' products
 * (16 products of promptTokens rows: one of all 16 · promptTokens rows writes a 1,024 × N output and
 * measured slower than the 16 prompts take in workerd) and tokens − 1 decode rounds of 16 rows.
 * The load suite sets it against the time its own one stream allows the burst (floorNote).
 * docs/architecture.md, "Continuous batching", discusses it.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-web/wasm';
import { GraphBuilder } from '../../src/onnx/graph-builder.ts';
import { fmt, median } from './stats.ts';

const { onnx } = onnxProto;
const STREAMS = 16;

export interface BatchingFloor {
  streams: number;
  promptTokens: number;
  tokens: number;
  /** Multiply-adds per token of the graph's products with a weight (attention's products with the cache excluded). */
  macsPerToken: number;
  /** One product with every weight multiply-add, ms: one row; `streams` rows (a decode round); a prompt's rows, times `streams`. */
  gemmOneRowMs: number;
  gemmRoundMs: number;
  gemmPromptsMs: number;
  /** GFLOP/s of the decode round's product. */
  roundGflops: number;
  /** streams prompts + (tokens − 1) rounds of products alone, ms. */
  floorMs: number;
}

/** Weight multiply-adds per token: for each MatMul, FusedMatMul or Gemm with an initializer operand, that operand's size. */
export function weightMacsPerToken(graph: Uint8Array): number {
  const g = onnx.ModelProto.decode(graph).graph!;
  const sizes = new Map((g.initializer ?? []).map((t) => [t.name!, (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1)]));
  let macs = 0;
  for (const node of g.node ?? []) {
    if (!['MatMul', 'FusedMatMul', 'Gemm'].includes(node.opType!)) continue;
    const weight = (node.input ?? []).slice(0, 2).find((name) => sizes.has(name));
    if (weight) macs += sizes.get(weight)!;
  }
  return macs;
}

/** Median ms of a [rows, k] × [k, n] product in onnxruntime-web's WASM. */
async function productMs(rows: number, k: number, n: number, runs: number): Promise<number> {
  const g = new GraphBuilder('product');
  const x = g.input('x', 'float', [rows, k]);
  const w = g.initializer(
    'w',
    Float32Array.from({ length: k * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
    [k, n],
  );
  g.output(g.matmul(x, w), 'y', 'float', [rows, n]);
  const session = await ort.InferenceSession.create(g.toModel());
  try {
    const feeds = {
      x: new ort.Tensor(
        'float32',
        Float32Array.from({ length: rows * k }, (_, i) => (i % 13) / 13),
        [rows, k],
      ),
    };
    for (let i = 0; i < 3; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const started = performance.now();
      await session.run(feeds);
      times.push(performance.now() - started);
    }
    return median(times);
  } finally {
    await session.release();
  }
}

export async function measureBatchingFloor(
  graph: Uint8Array,
  hiddenSize: number,
  options: { promptTokens: number; tokens: number; rounds: number },
): Promise<BatchingFloor> {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  const { promptTokens, tokens, rounds } = options;
  const k = hiddenSize;
  const n = Math.round(weightMacsPerToken(graph) / k);
  const t = { one: [] as number[], round: [] as number[], prompts: [] as number[] };
  // Interleaved, so a change in the machine's load touches every figure alike.
  for (let r = 0; r < rounds; r++) {
    t.one.push(await productMs(1, k, n, 20));
    t.round.push(await productMs(STREAMS, k, n, 20));
    t.prompts.push(STREAMS * (await productMs(promptTokens, k, n, 10)));
  }
  const gemmRoundMs = median(t.round);
  const gemmPromptsMs = median(t.prompts);
  return {
    streams: STREAMS,
    promptTokens,
    tokens,
    macsPerToken: k * n,
    gemmOneRowMs: median(t.one),
    gemmRoundMs,
    gemmPromptsMs,
    roundGflops: (2 * STREAMS * k * n) / gemmRoundMs / 1e6,
    floorMs: gemmPromptsMs + (tokens - 1) * gemmRoundMs,
  };
}

/**
 * The floor as a line of docs/BENCHMARKS.md §7, against the load suite's own one stream (through
 * HTTP): the time the goal of 4× its tokens/s allows the burst, and what it leaves per run for
 * everything but the products, beside one stream's whole step.
 */
export function floorNote(f: BatchingFloor, solo: { tokensPerSecond: number; interTokenP50Ms: number }): string {
  const n = (v: number) => fmt(v);
  const budgetMs = ((f.streams * f.tokens) / (4 * solo.tokensPerSecond)) * 1000;
  const runs = f.streams + f.tokens - 1;
  const leftPerRun = (budgetMs - f.floorMs) / runs;
  return `- **The floor of batching on this machine** (bench/lib/batching-floor.ts; onnxruntime-web's WASM in Node, one thread, the build workerd runs): batching shares a run's fixed cost, not the multiply-adds of each row. The served graph multiplies each token by ${n(f.macsPerToken / 1e6)}M weights; as one matrix product, ${f.streams} rows take ${n(f.gemmRoundMs)} ms (${n(f.roundGflops)} GFLOP/s; one row ${n(f.gemmOneRowMs)} ms) and the ${f.streams} prompts' ${f.promptTokens} rows each ${n(f.gemmPromptsMs)} ms in all, so a burst of ${f.streams} streams of ${f.tokens} tokens needs at least ${n(f.floorMs)} ms of products. At 4× one stream's ${n(solo.tokensPerSecond)} tokens/s the burst would have ${n(budgetMs)} ms: the products alone take ${n((100 * f.floorMs) / budgetMs)}% of it${
    leftPerRun > 0
      ? `, and everything else (attention over the cache, copying the cache into the heap, the other kernels, each run's fixed cost, sampling, HTTP) would have to fit in ${n(leftPerRun)} ms per run over its ${runs} runs, where one stream's whole step (inter-token p50 ${n(solo.interTokenP50Ms)} ms) spends all but ${n(f.gemmOneRowMs)} ms of its time outside the products`
      : ', before anything else a step does'
  }.`;
}
