/**
 * How a served graph's onnxruntime session is created. A graph optimized at build time
 * (cli/optimize-graph.ts, onnxruntime's ORT format) needs no load-time graph optimization, so
 * it is off. Weights are still prepacked for MLAS's GEMM: skipping that saved little of the
 * create and made every decode step slower (docs/BENCHMARKS.md §6, the ways to load the graph).
 * The CPU memory arena and memory pattern keep their defaults: turning them off did not shorten
 * the create, which is mostly onnxruntime's allocation planner (docs/architecture.md "Cold start").
 */
import type { InferenceSession } from 'onnxruntime-common';

/** The first bytes of an ORT-format graph: a flatbuffer whose file identifier is `ORTM`. */
export function isOrtFormat(graph: Uint8Array): boolean {
  return graph.byteLength >= 8 && graph[4] === 0x4f && graph[5] === 0x52 && graph[6] === 0x54 && graph[7] === 0x4d;
}

/** Session options for a graph: no load-time optimization for one optimized at build time, onnxruntime's defaults otherwise. */
export function sessionOptionsFor(graph: Uint8Array): InferenceSession.SessionOptions {
  if (!isOrtFormat(graph)) return {};
  // Not use_ort_model_bytes_directly: onnxruntime-web frees its copy of the bytes after create.
  return { graphOptimizationLevel: 'disabled' };
}
