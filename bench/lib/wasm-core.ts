/**
 * The serving core over a bench bundle in Node with onnxruntime-web's WASM build (one thread, as
 * workerd runs it), its whole table held in the isolate: the batching scripts measure steps, and no
 * row of theirs waits for a read.
 */
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';
import * as ortWeb from 'onnxruntime-web/wasm';
import { localServingCore } from '../../cli/local-bundle.ts';
import type { ServingCore } from '../../src/serving/serving-core.ts';
import { sessionOptionsFor } from '../../src/serving/session-options.ts';
import { type BuiltBundle, tableBytes } from './bundles.ts';

ortWeb.env.wasm.numThreads = 1;
ortWeb.env.wasm.proxy = false;
export const Tensor = ortWeb.Tensor as unknown as TensorConstructor;

export function wasmServingCore(bundle: BuiltBundle, maxDecodeBatch: number): ServingCore {
  const bytes = tableBytes(bundle.manifest);
  return localServingCore(bundle.dir, bundle.manifest, {
    createSession: (g) => ortWeb.InferenceSession.create(g.graph, sessionOptionsFor(g)) as unknown as Promise<InferenceSession>,
    Tensor,
    settings: {
      hierarchy: { isolateBytes: bytes + (1 << 20), hotSetBytes: bytes, pageBytes: 0, originConcurrency: 6, coalesceGapBytes: 0 },
      maxDecodeBatch,
    },
  });
}
