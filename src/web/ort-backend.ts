/**
 * onnxruntime-web in a page: WebGPU (the JSEP build) when `navigator.gpu` gives an adapter, WASM
 * otherwise, or the one asked for. Each backend's build is imported only when chosen, and its
 * wasm comes from the static assets (src/web/ort-assets.ts), single-threaded: threads need a
 * cross-origin isolated page, which a page calling the API cross-origin usually is not.
 */
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';
import { sessionOptionsFor, type GraphObjects } from '../serving/session-options.ts';
import { GZIP_SUFFIX, ORT_ASSETS } from './ort-assets.ts';
import type { Traffic } from './edge-origin.ts';

export type Backend = keyof typeof ORT_ASSETS;
export type BackendChoice = Backend | 'auto';
/** Session options passed to onnxruntime-web as they are (the execution provider is the backend's). */
export type SessionTuning = Omit<InferenceSession.SessionOptions, 'executionProviders'>;

export interface OrtRuntime {
  backend: Backend;
  /** The WebGPU adapter's description (vendor, architecture), null on WASM. */
  adapter: string | null;
  createSession(graph: GraphObjects): Promise<InferenceSession>;
  Tensor: TensorConstructor;
}

interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; description?: string };
}
interface NavigatorWithGpu {
  gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> };
}

/**
 * On WebGPU, onnxruntime-web 1.30's graph optimizations change the flex demo's logits by up to
 * 12 (measured against onnxruntime-node; 4.6e-4 without them, tests/browser-client.test.ts):
 * a fusion its JSEP kernels get wrong. Until that is found and fixed, WebGPU runs the graph as built.
 */
const BACKEND_DEFAULTS: Record<Backend, SessionTuning> = { webgpu: { graphOptimizationLevel: 'disabled' }, wasm: {} };

/** The WebGPU adapter, or null when this browser has none (or refuses one). */
async function webGpuAdapter(): Promise<GpuAdapterLike | null> {
  const gpu = (globalThis.navigator as NavigatorWithGpu | undefined)?.gpu;
  if (!gpu) return null;
  return gpu.requestAdapter().catch(() => null);
}

const describe = (adapter: GpuAdapterLike) =>
  [adapter.info?.vendor, adapter.info?.architecture, adapter.info?.description].filter(Boolean).join(' ') || 'unknown adapter';

/** Loads the runtime of the chosen backend, counting the bytes of its wasm in `traffic`. */
export async function loadOrtRuntime(
  choice: BackendChoice,
  assetsUrl: string,
  fetcher: typeof fetch,
  traffic: Traffic,
  sessionOptions: SessionTuning = {},
): Promise<OrtRuntime> {
  const adapter = choice === 'wasm' ? null : await webGpuAdapter();
  if (choice === 'webgpu' && !adapter) throw new Error('WebGPU was asked for, but navigator.gpu gives no adapter in this browser');
  const backend: Backend = adapter ? 'webgpu' : 'wasm';
  const files = ORT_ASSETS[backend];
  const base = new URL(assetsUrl.endsWith('/') ? assetsUrl : `${assetsUrl}/`, globalThis.location?.href);
  const [ort, wasmBinary] = await Promise.all([
    backend === 'webgpu' ? import('onnxruntime-web') : import('onnxruntime-web/wasm'),
    gunzip(fetcher, new URL(files.wasm + GZIP_SUFFIX, base), traffic),
  ]);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmBinary = wasmBinary;
  // The glue module, for the builds that do not embed it (the `onnxruntime-web-use-extern-wasm` condition).
  ort.env.wasm.wasmPaths = { mjs: new URL(files.glue, base).href };
  return {
    backend,
    adapter: adapter && describe(adapter),
    createSession: (graph) =>
      ort.InferenceSession.create(graph.graph, {
        ...sessionOptionsFor(graph),
        ...BACKEND_DEFAULTS[backend],
        ...sessionOptions,
        executionProviders: [backend],
      }),
    Tensor: ort.Tensor,
  };
}

async function gunzip(fetcher: typeof fetch, url: URL, traffic: Traffic): Promise<Uint8Array> {
  const response = await fetcher(url);
  traffic.requests++;
  if (!response.ok || !response.body) throw new Error(`GET ${url}: ${response.status} ${response.statusText} (the onnxruntime-web assets)`);
  const compressed = new Uint8Array(await response.arrayBuffer());
  traffic.bytes += compressed.byteLength;
  const inflated = new Blob([compressed]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(inflated).arrayBuffer());
}
