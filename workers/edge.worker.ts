/**
 * The edge worker: a thin adapter, like Hono's runtime adapters. It maps this isolate's bindings
 * onto the serving core's parts (src/serving/serving-core.ts) once, on first use, and serves the
 * OpenAI-compatible API of src/api over it.
 */
import { createApiApp } from '../src/api/app.ts';
import type { ApiHost } from '../src/api/host.ts';
import { createServingCore } from '../src/serving/serving-core.ts';
import { accessSettings, apiLimits, originStore, pageCaches, rateLimitSettings, readSettings, type Env } from './bindings.ts';
import { onnxRuntime } from './onnx-runtime.ts';

let isolate: Omit<ApiHost, 'background'> | null = null;

function isolateHost(env: Env): Omit<ApiHost, 'background'> {
  if (isolate) return isolate;
  const ort = onnxRuntime();
  const core = createServingCore({
    origin: originStore(env),
    pageCaches: pageCaches(env),
    createSession: (graph) => ort.InferenceSession.create(graph),
    Tensor: ort.Tensor,
    settings: readSettings(env),
  });
  isolate = { core, limits: apiLimits(env), access: accessSettings(env), rateLimit: rateLimitSettings(env) };
  return isolate;
}

export default createApiApp<Env>((c) => ({ ...isolateHost(c.env), background: (work) => c.executionCtx.waitUntil(work) }));
