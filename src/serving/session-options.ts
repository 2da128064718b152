/**
 * How a served graph's onnxruntime session is created. A graph optimized at build time
 * (cli/optimize-graph.ts) needs no load-time graph optimization, so it is off. Weights are still
 * prepacked for MLAS's GEMM: skipping that saved little of the create and made every decode step
 * slower (docs/BENCHMARKS.md §6, the ways to load the graph). The CPU memory arena and memory
 * pattern keep their defaults: turning them off did not shorten the create, which is mostly
 * onnxruntime's allocation planner (docs/architecture.md "Cold start").
 */
import type { InferenceSession } from 'onnxruntime-common';
import { servedGraphObjects, type BundleManifest } from '../bundle/manifest.ts';

/** A graph as a runtime is handed it: its bytes, and how to load them. */
export interface GraphObjects {
  /** ONNX, or (optimized bundles built before external weights) onnxruntime's ORT format. */
  graph: Uint8Array;
  /** Optimized at build time: loaded with onnxruntime's graph optimizer off. */
  optimized: boolean;
  /** The graph's weights as ONNX external data, under the name the graph gives them. */
  weights?: { path: string; data: Uint8Array };
}

/**
 * The graph a bundle serves, as a runtime is handed it, from the bytes of its objects in the order
 * of servedGraphObjects (the graph optimized at build time and its weights, else compute.onnx).
 */
export function servedGraph(manifest: BundleManifest, bytes: readonly Uint8Array[]): GraphObjects {
  const [graph, weights] = servedGraphObjects(manifest);
  return { graph: bytes[0], optimized: graph !== manifest.objects.compute, weights: weights && { path: weights.path, data: bytes[1] } };
}

/** Session options for a graph: no load-time optimization for one optimized at build time, onnxruntime's defaults otherwise. */
export function sessionOptionsFor(graph: GraphObjects): InferenceSession.SessionOptions {
  return {
    ...(graph.optimized ? { graphOptimizationLevel: 'disabled' as const } : {}),
    ...(graph.weights ? { externalData: [graph.weights] } : {}),
  };
}
