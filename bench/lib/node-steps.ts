/**
 * The step benchmark's Node side: the same loop (bench/lib/steps.ts) under onnxruntime-node
 * (native, one or default intra-op threads) and onnxruntime-web's wasm under Node.
 */
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';
import * as ortNode from 'onnxruntime-node';
import { localServingCore } from '../../cli/local-bundle.ts';
import { createNodeSession } from '../../cli/node-session.ts';
import { sessionOptionsFor, type GraphObjects } from '../../src/serving/session-options.ts';
import type { BundleManifest } from '../../src/bundle/manifest.ts';
import { runLookups, runSteps, zeroRows, type StepPlan } from './steps.ts';

export type NodeRuntime = 'node-1t' | 'node' | 'web-node';

export interface NodeModel {
  run(rows: 'hot' | 'zero' | 'none', plan: StepPlan): Promise<number>;
  lookups(ids: number[], n: number): Promise<number>;
  release(): Promise<void>;
}

/** A session factory and Tensor constructor for each runtime measured. */
async function runtimeParts(
  runtime: NodeRuntime,
): Promise<{ createSession: (graph: GraphObjects) => Promise<InferenceSession>; Tensor: TensorConstructor }> {
  if (runtime === 'web-node') {
    const ortWeb = await import('onnxruntime-web/wasm');
    ortWeb.env.wasm.numThreads = 1;
    ortWeb.env.wasm.proxy = false;
    return {
      createSession: async (graph) =>
        (await ortWeb.InferenceSession.create(graph.graph, sessionOptionsFor(graph))) as unknown as InferenceSession,
      Tensor: ortWeb.Tensor as unknown as TensorConstructor,
    };
  }
  // Default threads, but no spin-waiting after a run: spinning threads would steal the core the
  // interleaved measurements of the other runtimes (and the machine's other jobs) run on.
  const options: ortNode.InferenceSession.SessionOptions =
    runtime === 'node-1t'
      ? { intraOpNumThreads: 1, interOpNumThreads: 1 }
      : { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } };
  return {
    createSession: (graph) => createNodeSession(graph, options),
    Tensor: ortNode.Tensor as unknown as TensorConstructor,
  };
}

/**
 * The bundle at `dir` served by the serving core under `runtime`, with every row in the isolate's
 * hot set (as the worker's L0 would serve them).
 */
export async function openNodeModel(runtime: NodeRuntime, dir: string, manifest: BundleManifest): Promise<NodeModel> {
  const tableBytes = manifest.tables?.shards.reduce((n, s) => n + s.bytes, 0) ?? 0;
  const core = localServingCore(dir, manifest, {
    ...(await runtimeParts(runtime)),
    settings: {
      hierarchy: { isolateBytes: tableBytes + (1 << 20), hotSetBytes: tableBytes, pageBytes: 0, originConcurrency: 6, coalesceGapBytes: 0 },
    },
  });
  const bundle = await core.bundle(manifest.version);
  const hot = core.rows(bundle);
  await core.hotSetReady(bundle);
  const zero = manifest.tables ? zeroRows(manifest.tables.layout.rowValues) : null;
  return {
    run: (rows, plan) => runSteps(core.decoder(bundle, rows === 'none' ? null : rows === 'zero' ? zero : hot), plan),
    lookups: (ids, n) => runLookups(hot!, ids, n),
    release: () => core.close(),
  };
}
