/**
 * The arithmetic floor of continuous batching on this machine: how fast 16 concurrent streams
 * could possibly be if batching cost nothing but the matrix products every token needs.
 *
 * A decode step multiplies each row by every weight matrix of the compute graph. Batching shares a
 * run's fixed cost, not those multiply-adds. So the floor is: the served graph's weight
 * multiply-adds per token, timed as ONE matrix product ([M, K] × [K, N] with K·N of them: the most
 * efficient form they can take, fewer and larger calls than any graph makes) in onnxruntime-web's
 * WASM, one thread, the build workerd runs. 16 streams of `tokens` tokens after `promptTokens`-token
 * prompts need 16 prompts' products (one product of 16 · promptTokens rows) and tokens − 1 decode
 * rounds of 16 rows at least. Beside it, in the same run and runtime, one stream's whole generation
 * through the real Decoder (bench/lib/steps.ts): the bound on the speed-up is 16 × that / the floor.
 * docs/architecture.md, "Continuous batching", discusses it.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-web/wasm';
import { readServedGraph } from '../../cli/local-bundle.ts';
import type { BundleManifest } from '../../src/bundle/manifest.ts';
import { GraphBuilder } from '../../src/onnx/graph-builder.ts';
import { openNodeModel } from './node-steps.ts';
import { fmt, median } from './stats.ts';

const { onnx } = onnxProto;
const STREAMS = 16;
const x = (r: number) => `${r.toFixed(2)}×`;

export interface BatchingFloor {
  streams: number;
  promptTokens: number;
  tokens: number;
  /** Multiply-adds per token of the graph's products with a weight (attention's products with the cache excluded). */
  macsPerToken: number;
  /** One product with every weight multiply-add, ms: one row; `streams` rows (a decode round); `streams` prompts at once. */
  gemmOneRowMs: number;
  gemmRoundMs: number;
  gemmPromptsMs: number;
  /** GFLOP/s of the decode round's product. */
  roundGflops: number;
  /** One stream, prompt then tokens − 1 decode steps, through the Decoder in the same runtime, ms. */
  oneStreamMs: number;
  /** streams prompts + (tokens − 1) rounds of products alone, ms. */
  floorMs: number;
  /** streams × oneStreamMs / floorMs: the most any batching can speed up the streams' total tokens/s. */
  boundRatio: number;
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
  dir: string,
  manifest: BundleManifest,
  options: { promptTokens: number; tokens: number; rounds: number },
): Promise<BatchingFloor> {
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  const { promptTokens, tokens, rounds } = options;
  const macsPerToken = weightMacsPerToken(readServedGraph(dir, manifest).graph);
  const k = manifest.config.hidden_size;
  const n = Math.round(macsPerToken / k);
  const model = await openNodeModel('web-node', dir, manifest);
  const ids = Array.from({ length: promptTokens + tokens }, (_, i) => (i * 7 + 3) % manifest.config.vocab_size);
  const plan = { ids, prefill: promptTokens, steps: tokens - 1 };
  const t = { one: [] as number[], round: [] as number[], prompts: [] as number[], stream: [] as number[] };
  try {
    await model.run('zero', plan);
    // Interleaved, so a change in the machine's load touches every figure alike.
    for (let r = 0; r < rounds; r++) {
      t.one.push(await productMs(1, k, n, 20));
      t.round.push(await productMs(STREAMS, k, n, 20));
      t.prompts.push(await productMs(STREAMS * promptTokens, k, n, 3));
      const started = performance.now();
      await model.run('zero', plan);
      t.stream.push(performance.now() - started);
    }
  } finally {
    await model.release();
  }
  const gemmRoundMs = median(t.round);
  const gemmPromptsMs = median(t.prompts);
  const oneStreamMs = median(t.stream);
  const floorMs = gemmPromptsMs + (tokens - 1) * gemmRoundMs;
  return {
    streams: STREAMS,
    promptTokens,
    tokens,
    macsPerToken: k * n,
    gemmOneRowMs: median(t.one),
    gemmRoundMs,
    gemmPromptsMs,
    roundGflops: (2 * STREAMS * k * n) / gemmRoundMs / 1e6,
    oneStreamMs,
    floorMs,
    boundRatio: (STREAMS * oneStreamMs) / floorMs,
  };
}

/** The floor as a line of docs/BENCHMARKS.md §7, beside the load suite's own one stream (`soloInterTokenP50Ms`, through HTTP). */
export function floorNote(f: BatchingFloor, soloInterTokenP50Ms: number): string {
  const n = (v: number) => fmt(v);
  return `- **The floor of batching on this machine** (bench/lib/batching-floor.ts; onnxruntime-web's WASM in Node, one thread, the build workerd runs): batching shares a run's fixed cost, not the multiply-adds of each row. The served graph multiplies each token by ${n(f.macsPerToken / 1e6)}M weights; as one matrix product, the fastest form they take, ${f.streams} rows take ${n(f.gemmRoundMs)} ms (${n(f.roundGflops)} GFLOP/s; one row ${n(f.gemmOneRowMs)} ms) and the ${f.streams} prompts' ${f.streams * f.promptTokens} rows ${n(f.gemmPromptsMs)} ms. So ${f.streams} streams of ${f.tokens} tokens need at least ${n(f.floorMs)} ms of products alone, where one stream's whole generation through the Decoder in the same runtime takes ${n(f.oneStreamMs)} ms: no batching can make ${f.streams} streams more than ${x(f.boundRatio)} one stream's tokens/s, and no ${f.streams}-row decode step can take less than ${n(f.gemmRoundMs)} ms, ${x(f.gemmRoundMs / soloInterTokenP50Ms)} one stream's inter-token p50 above.`;
}
