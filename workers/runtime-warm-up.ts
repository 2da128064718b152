/**
 * The first onnxruntime-web session of an isolate costs far more than any later one: instantiating
 * the precompiled wasm module takes a few milliseconds, but onnxruntime's own start and the first
 * call of each wasm function it runs (which V8 compiles when first called) come on top of loading
 * the graph (docs/BENCHMARKS.md §6, docs/architecture.md "Cold start"). A session over a one-node
 * graph pays the runtime's share of that without any bundle, so the edge worker runs it at module
 * scope, while the isolate starts, instead of inside the first request. Workers forbid I/O there,
 * not computation, and this needs none.
 */
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';

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
  InferenceSession: { create(graph: Uint8Array): Promise<InferenceSession> };
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
