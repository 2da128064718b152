/**
 * The edge worker: a thin adapter, like Hono's runtime adapters. It maps this isolate's bindings
 * onto the serving core's parts (src/serving/serving-core.ts) once, on first use, and serves the
 * OpenAI-compatible API of src/api over it.
 */
import { createApiApp } from '../src/api/app.ts';
import type { ApiHost } from '../src/api/host.ts';
import { createServingCore } from '../src/serving/serving-core.ts';
import { sessionOptionsFor } from '../src/serving/session-options.ts';
import { accessSettings, apiLimits, originStore, pageCaches, rateLimitSettings, readSettings, type Env } from './bindings.ts';
import { onnxRuntime } from './onnx-runtime.ts';
import { warmUpKernels } from './runtime-warm-up.ts';

/**
 * onnxruntime's start and a first run of the model graph's kernels happen while the isolate starts,
 * not in its first request (workers/runtime-warm-up.ts). The kernels' warm-up starts the runtime
 * itself: a one-node session before it (`warmUpRuntime`) added start time and took nothing off
 * the first request (docs/architecture.md "Cold start").
 * A failed warm-up is only logged: the first real session meets the same fault and reports it.
 */
const runtimeReady = warmUpKernels(onnxRuntime()).catch((error: unknown) => console.warn(`onnxruntime warm-up failed: ${String(error)}`));

let isolate: Omit<ApiHost, 'background'> | null = null;

function isolateHost(env: Env): Omit<ApiHost, 'background'> {
  if (isolate) return isolate;
  const ort = onnxRuntime();
  const core = createServingCore({
    origin: originStore(env),
    pageCaches: pageCaches(env),
    createSession: async (graph) => {
      await runtimeReady;
      return ort.InferenceSession.create(graph.graph, sessionOptionsFor(graph));
    },
    Tensor: ort.Tensor,
    // The graph optimized at build time when the bundle has it: no graph rewrites on a cold isolate.
    settings: { ...readSettings(env), graph: 'optimized' },
  });
  isolate = { core, limits: apiLimits(env), access: accessSettings(env), rateLimit: rateLimitSettings(env) };
  return isolate;
}

export default createApiApp<Env>((c) => ({ ...isolateHost(c.env), background: (work) => c.executionCtx.waitUntil(work) }));
