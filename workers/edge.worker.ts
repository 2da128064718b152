/**
 * The edge worker: the OpenAI-compatible API of src/api over this isolate's bindings. Everything
 * heavy (bundles, sessions, cached rows) is created once per isolate on first use.
 */
import type { Context } from 'hono';
import { createApiApp, type Serving } from '../src/api/app.ts';
import { GenerationCounters } from '../src/api/generation.ts';
import { MemoryHierarchy } from '../src/memory/memory-hierarchy.ts';
import { CacheApiPageCache, KvPageCache, type PageCache } from '../src/memory/page-cache.ts';
import { ModelRegistry } from '../src/serving/model-registry.ts';
import { objectKey, type BundleObject, type ObjectStore } from '../src/storage/object-store.ts';
import { originStore, readSettings, type Env } from './bindings.ts';
import { onnxRuntime } from './onnx-runtime.ts';

interface IsolateState {
  serving: Omit<Serving, 'rowsFor'>;
  hierarchy: MemoryHierarchy;
  origin: ObjectStore;
}

let isolate: IsolateState | null = null;

function isolateState(env: Env): IsolateState {
  if (isolate) return isolate;
  const settings = readSettings(env);
  const ort = onnxRuntime();
  const origin = originStore(env);
  const pageCaches: PageCache[] = [];
  if (settings.useCacheApi) pageCaches.push(new CacheApiPageCache((caches as unknown as { default: Cache }).default));
  if (env.ROWS_KV) pageCaches.push(new KvPageCache(env.ROWS_KV));
  const hierarchy = new MemoryHierarchy(pageCaches, settings.hierarchy);
  const registry = new ModelRegistry(origin, (graph) => ort.InferenceSession.create(graph), { pointerTtlMs: settings.pointerTtlMs, maxLoadedVersions: 4 }, (version) =>
    hierarchy.forget(version),
  );
  isolate = {
    origin,
    hierarchy,
    serving: { registry, Tensor: ort.Tensor, counters: new GenerationCounters(), clock: () => Date.now(), maxBodyBytes: settings.maxBodyBytes, defaultMaxTokens: settings.defaultMaxTokens },
  };
  return isolate;
}

function servingFor(c: Context<{ Bindings: Env }>): Serving {
  const { serving, hierarchy, origin } = isolateState(c.env);
  const background = (work: Promise<unknown>) => c.executionCtx.waitUntil(work);
  return {
    ...serving,
    rowsFor: (bundle, stats) => {
      const tables = bundle.manifest.tables;
      if (!tables) return null;
      // One retry: a dropped connection to the origin should not end a generation.
      const get = (key: string, offset: number, length: number) => origin.get(key, { offset, length });
      const reader = {
        read: async (object: BundleObject, offset: number, length: number) => {
          const key = objectKey(bundle.version, object);
          const bytes = await get(key, offset, length).catch(() => get(key, offset, length));
          return bytes ?? new Uint8Array(0);
        },
      };
      return hierarchy.rowsFor(bundle.version, tables, reader, stats, background, bundle.overrides);
    },
  };
}

export default createApiApp<Env>(servingFor);
