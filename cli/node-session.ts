/**
 * Opens a served graph in onnxruntime-node. onnxruntime-node reads a graph's external data only
 * from files beside a graph it loads by path (the `externalData` session option is
 * onnxruntime-web's alone), so a graph whose weights are apart (cli/optimize-graph.ts) is written
 * with them to a private folder and loaded from there; onnxruntime holds the weights once create
 * returns, and the folder goes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InputError } from '../src/errors.ts';
import { sessionOptionsFor, type GraphObjects } from '../src/serving/session-options.ts';

export async function createNodeSession(
  graph: GraphObjects,
  tuning: ort.InferenceSession.SessionOptions = {},
): Promise<ort.InferenceSession> {
  const { externalData, ...options } = { ...sessionOptionsFor(graph), ...tuning };
  if (!graph.weights) return ort.InferenceSession.create(graph.graph, options);
  const { path, data } = graph.weights;
  if (basename(path) !== path) throw new InputError(`a graph's weights must lie beside it, not at ${path}`);
  const dir = mkdtempSync(join(tmpdir(), 'flexmem-graph-'));
  try {
    writeFileSync(join(dir, 'graph.onnx'), graph.graph);
    writeFileSync(join(dir, path), data);
    return await ort.InferenceSession.create(join(dir, 'graph.onnx'), options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
