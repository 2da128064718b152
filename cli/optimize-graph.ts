/**
 * Optimizes a compute graph once, at build time, with onnxruntime-node: the cold isolate loads it
 * with onnxruntime's own optimizer off (src/serving/session-options.ts) and skips the graph
 * rewrites it would otherwise redo on every first load. 'extended' fusions only: the CPU kernels of
 * both runtimes implement them; 'all' would add layout rewrites specific to the machine that runs
 * the build.
 *
 * The result is an ONNX graph whose weights are a second object, ONNX external data: onnxruntime-web
 * copies each weight from it straight to the buffer it keeps, where a graph with its weights inside
 * is first copied whole into the wasm heap, which never shrinks (docs/architecture.md "Weights
 * beside the graph"). onnxruntime-node writes both deterministically, so the same graph always
 * gives the same objects and a rebuilt bundle keeps its version id.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { withoutOutputIdentities } from './output-identities.ts';

/** The name the optimized graph gives its external data, and so the path of that object in a bundle. */
export const WEIGHTS_PATH = 'compute.weights';

export interface OptimizedGraph {
  /** The optimized ONNX graph, without the weights of its larger initializers. */
  graph: Uint8Array;
  /** Those weights: the external data `graph` reads from WEIGHTS_PATH. */
  weights: Uint8Array;
}

export async function optimizeGraph(graph: Uint8Array): Promise<OptimizedGraph> {
  const optimized = await onnxruntimeOptimized(graph);
  return { ...optimized, graph: withoutOutputIdentities(optimized.graph) };
}

/** The graph as onnxruntime-node's optimizer writes it, its outputs still copied through Identities (bench/lib/batch-output-copies.ts). */
export async function onnxruntimeOptimized(graph: Uint8Array): Promise<OptimizedGraph> {
  const dir = mkdtempSync(join(tmpdir(), 'flexmem-optimize-'));
  try {
    const input = join(dir, 'graph.onnx');
    const output = join(dir, 'optimized.onnx');
    writeFileSync(input, graph);
    const session = await ort.InferenceSession.create(input, {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: output,
      extra: { session: { optimized_model_external_initializers_file_name: WEIGHTS_PATH } },
    });
    await session.release();
    return { graph: new Uint8Array(readFileSync(output)), weights: new Uint8Array(readFileSync(join(dir, WEIGHTS_PATH))) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
