/**
 * The step benchmark's Node side: the same loop (bench/lib/steps.ts) under onnxruntime-node
 * (native, one or default intra-op threads) and onnxruntime-web's wasm under Node.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';
import * as ortNode from 'onnxruntime-node';
import type { BundleManifest } from '../../src/bundle/manifest.ts';
import type { RowSource } from '../../src/bundle/row-source.ts';
import { FileRangeReader } from '../../cli/local-bundle.ts';
import { DEFAULT_HIERARCHY, MemoryHierarchy } from '../../src/memory/memory-hierarchy.ts';
import { runLookups, runSteps, zeroRows, type StepPlan } from './steps.ts';

export type NodeRuntime = 'node-1t' | 'node' | 'web-node';

export interface NodeModel {
  run(rows: 'hot' | 'zero' | 'none', plan: StepPlan): Promise<number>;
  lookups(ids: number[], n: number): Promise<number>;
  release(): Promise<void>;
}

/** Hot rows as the worker's L0 would serve them: the whole table in the isolate hot set. */
export async function hotRows(dir: string, manifest: BundleManifest): Promise<RowSource> {
  const tables = manifest.tables!;
  const bytes = tables.shards.reduce((n, s) => n + s.bytes, 0);
  const hierarchy = new MemoryHierarchy([], { ...DEFAULT_HIERARCHY, isolateBytes: bytes + (1 << 20), hotSetBytes: bytes });
  const rows = hierarchy.rowsFor(manifest.version, tables, new FileRangeReader(dir));
  await hierarchy.hotSetReady(manifest.version);
  return rows;
}

export async function openNodeModel(runtime: NodeRuntime, dir: string, manifest: BundleManifest, graphPath = manifest.objects.compute.path): Promise<NodeModel> {
  const graph = readFileSync(join(dir, graphPath));
  let session: InferenceSession;
  let Tensor: TensorConstructor;
  if (runtime === 'web-node') {
    const ortWeb = await import('onnxruntime-web/wasm');
    ortWeb.env.wasm.numThreads = 1;
    ortWeb.env.wasm.proxy = false;
    session = (await ortWeb.InferenceSession.create(graph)) as unknown as InferenceSession;
    Tensor = ortWeb.Tensor as unknown as TensorConstructor;
  } else {
    // Default threads, but no spin-waiting after a run: spinning threads would steal the core the
    // interleaved measurements of the other runtimes (and the machine's other jobs) run on.
    const options: ortNode.InferenceSession.SessionOptions =
      runtime === 'node-1t' ? { intraOpNumThreads: 1, interOpNumThreads: 1 } : { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } };
    session = await ortNode.InferenceSession.create(graph, options);
    Tensor = ortNode.Tensor as unknown as TensorConstructor;
  }
  const hot = manifest.tables ? await hotRows(dir, manifest) : null;
  const zero = manifest.tables ? zeroRows(manifest.tables.layout.rowValues) : null;
  return {
    run: (rows, plan) => runSteps(session, Tensor, manifest.config, rows === 'none' ? null : rows === 'zero' ? zero : hot, plan),
    lookups: (ids, n) => runLookups(hot!, ids, n),
    release: () => session.release(),
  };
}
