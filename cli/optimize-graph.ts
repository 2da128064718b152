/**
 * Optimizes a compute graph once, at build time, with onnxruntime-node, and writes it in ORT
 * format, which onnxruntime-web's WASM build loads with its own optimizer off
 * (src/serving/session-options.ts): the cold isolate skips the graph rewrites it would otherwise
 * redo on every first load. 'extended' fusions only: the CPU kernels of both runtimes implement
 * them; 'all' would add layout rewrites specific to the machine that runs the build. The bytes are
 * made canonical (cli/ort-format.ts), so the same graph always optimizes to the same object and a
 * rebuilt bundle keeps its version id.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { canonicalOrtGraph } from './ort-format.ts';

export async function optimizeGraph(graph: Uint8Array): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'flexmem-optimize-'));
  try {
    const input = join(dir, 'graph.onnx');
    const output = join(dir, 'graph.ort');
    writeFileSync(input, graph);
    const session = await ort.InferenceSession.create(input, {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: output,
      extra: { session: { save_model_format: 'ORT' } },
    });
    await session.release();
    return canonicalOrtGraph(new Uint8Array(readFileSync(output)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
