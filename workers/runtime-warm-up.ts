/**
 * The first onnxruntime-web session of an isolate costs far more than any later one: instantiating
 * the precompiled wasm module takes a few milliseconds, but onnxruntime's own start and the first
 * call of each wasm function it runs (which V8 compiles when first called) come on top of loading
 * the graph (docs/BENCHMARKS.md §6, docs/architecture.md "Cold start"). The edge worker runs
 * `warmUpKernels` at module scope, while the isolate starts, instead of inside the first request:
 * Workers forbid I/O there, not computation, and this needs none. `warmUpRuntime`, a session over
 * a one-node graph, is onnxruntime's start alone: the bench worker times it as a phase of its own;
 * the edge worker no longer runs it, since the kernels' warm-up starts the runtime anyway.
 */
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';
import { Decoder } from '../src/engine/decoder.ts';
import { sessionOptionsFor } from '../src/serving/session-options.ts';
import { WARM_UP_CONFIG, WARM_UP_MODEL_BASE64, WARM_UP_ROW_VALUES, WARM_UP_WEIGHTS } from './warm-up-graph.ts';

/**
 * `y = x + 1` over a float[1], as src/onnx/graph-builder.ts writes it (graph `flexmem_warm_up`,
 * opset 17); tests/optimized-graph.test.ts rebuilds it and compares the bytes.
 */
export const WARM_UP_GRAPH = Uint8Array.from([
  8, 8, 18, 7, 102, 108, 101, 120, 109, 101, 109, 58, 130, 1, 10, 25, 10, 1, 120, 10, 5, 99, 111, 110, 115, 116, 18, 3, 65, 100, 100, 26, 3,
  65, 100, 100, 34, 3, 65, 100, 100, 10, 30, 10, 3, 65, 100, 100, 18, 1, 121, 26, 10, 121, 47, 105, 100, 101, 110, 116, 105, 116, 121, 34,
  8, 73, 100, 101, 110, 116, 105, 116, 121, 18, 15, 102, 108, 101, 120, 109, 101, 109, 95, 119, 97, 114, 109, 95, 117, 112, 42, 18, 10, 1,
  1, 16, 1, 66, 5, 99, 111, 110, 115, 116, 74, 4, 0, 0, 128, 63, 90, 15, 10, 1, 120, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 98, 15, 10, 1,
  121, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 66, 4, 10, 0, 16, 17,
]);

interface Runtime {
  InferenceSession: { create(graph: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession> };
  Tensor: TensorConstructor;
}

/** Starts `ort` (runtime, allocator, the session and run paths) with one create and one run of the warm-up graph. */
export async function warmUpRuntime(ort: Runtime): Promise<void> {
  const session = await ort.InferenceSession.create(WARM_UP_GRAPH);
  try {
    const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });
    if ((y.data as Float32Array)[0] !== 2) throw new Error(`the warm-up graph computed ${y.data[0]} for 1 + 1`);
  } finally {
    await session.release();
  }
}

function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Runs the kernels of a served Flex-MemoryLLM graph once: the same architecture built and optimized
 * as every bundle's served graph, its weights beside it (scripts/build-warm-up-graph.ts), one layer of tiny width, loaded
 * with the served session options, then a prefill and a decode step. The first run of each kernel
 * is one-time work (the first call of its wasm functions) that otherwise lands in the first
 * request's prefill; it shortens the served graph's create little if at all: that cost is onnxruntime's
 * allocation planner over the whole graph (docs/architecture.md "Cold start"). One layer is the
 * smallest graph with every kernel: more layers or more runs cost startup time and gained nothing.
 */
export async function warmUpKernels(ort: Runtime): Promise<void> {
  const graph = {
    graph: decodeBase64(WARM_UP_MODEL_BASE64),
    optimized: true,
    weights: { path: WARM_UP_WEIGHTS.path, data: decodeBase64(WARM_UP_WEIGHTS.base64) },
  };
  const session = await ort.InferenceSession.create(graph.graph, sessionOptionsFor(graph));
  try {
    const rows = {
      rowValues: WARM_UP_ROW_VALUES,
      rows: async (ids: readonly number[]) => new Float32Array(ids.length * WARM_UP_ROW_VALUES),
    };
    const decoder = new Decoder({ session, Tensor: ort.Tensor, config: WARM_UP_CONFIG, rows });
    const state = decoder.start();
    await decoder.step(state, [1, 2, 3, 4, 5, 6, 7, 8], 'last');
    const logits = await decoder.step(state, [9]);
    if (logits.length !== WARM_UP_CONFIG.vocab_size || !logits.every(Number.isFinite))
      throw new Error('the warm-up model computed logits of the wrong size or not finite');
  } finally {
    await session.release();
  }
}
