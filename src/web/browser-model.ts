/**
 * A model computed in this browser, its memory read from the edge. Given the worker's URL, it asks
 * GET /v1/models for the version a model serves, opens that version through the same serving core
 * the worker runs (src/serving/serving-core.ts): the manifest, graph, tokenizer and row checksums
 * are read and checked against the manifest, rows come through the same MemoryHierarchy (hot set
 * and LRU in memory, pages in Cache Storage, the edge's bundle-object route as origin), and text
 * comes from the same generation loop. Only the runtime differs: onnxruntime-web on WebGPU or WASM.
 * docs/browser.md says what it downloads and why.
 */
import { DEFAULT_TEMPLATE_STOPS, renderChat, type ChatMessage } from '../api/chat-template.ts';
import { recordTiers, type TierRecorder } from '../api/row-provenance.ts';
import type { Decoder } from '../engine/decoder.ts';
import type { GenerationResult, TextDelta } from '../engine/generation.ts';
import { samplingWithDefaults } from '../engine/sampler.ts';
import { InputError } from '../errors.ts';
import { DEFAULT_HIERARCHY, type HierarchyConfig, type TierStats } from '../memory/memory-hierarchy.ts';
import type { PageCache } from '../memory/page-cache.ts';
import { createServingCore, type LoadedBundle } from '../serving/serving-core.ts';
import type { TextTokenizer } from '../tokenizer/tokenizer.ts';
import { CacheStoragePageCache, DEFAULT_PAGE_BUDGET_BYTES } from './cache-storage-pages.ts';
import { authHeaders, EdgeObjectStore, type EdgeConnection, type Traffic } from './edge-origin.ts';
import { loadOrtRuntime, type Backend, type BackendChoice, type SessionTuning } from './ort-backend.ts';
import { VerifiedObjectCache } from './verified-object-cache.ts';

export interface BrowserModelOptions {
  /** The worker's URL, e.g. https://flexmem.example.workers.dev */
  url: string;
  model: string;
  /** Sent as a bearer key with every request to the worker (unless its bundle route is public). */
  apiKey?: string;
  /** 'auto' (the default) takes WebGPU when the browser gives an adapter, WASM otherwise. */
  backend?: BackendChoice;
  /** onnxruntime-web session options (graph optimization level, logging), the execution provider aside. */
  sessionOptions?: SessionTuning;
  /** Where onnxruntime-web's files are served (scripts/copy-ort-assets.ts); default `<url>/ort/`. */
  ortAssetsUrl?: string;
  /** Cache Storage for objects and pages, across visits; false keeps nothing beyond this page. */
  cache?: false | { storage?: CacheStorage; pageBudgetBytes?: number };
  /** The in-memory tiers and the origin reads: hot set, LRU, page size, reads in flight. */
  hierarchy?: Partial<HierarchyConfig>;
  fetch?: typeof fetch;
}

/**
 * The browser's defaults: the worker's, with a 2 MiB hot set (it is downloaded on a first visit,
 * before the first token) and 16 MiB of decoded rows in memory.
 */
export const BROWSER_HIERARCHY: HierarchyConfig = { ...DEFAULT_HIERARCHY, isolateBytes: 16 << 20, hotSetBytes: 2 << 20 };

export interface BrowserGenerateRequest {
  /** A prompt, or chat messages rendered with the model's template (as POST /v1/chat/completions does). */
  prompt?: string;
  messages?: ChatMessage[];
  /** Default 256, and never past the context. */
  maxTokens?: number;
  /** 0 is greedy; default 1, as OpenAI's. */
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  stop?: string[];
  /** Each token's log-probability and this many alternatives (null, the default, for none). */
  logprobs?: number | null;
  /** Ends the generation after the token being computed. */
  signal?: AbortSignal;
  /**
   * Each delta's `rows` name the tier that served each fed token's row, as the API's
   * `flexmem.provenance` does ('isolate': this page's memory, 'cache': Cache Storage, 'origin': the edge).
   */
  provenance?: boolean;
}

export interface BrowserGenerationStats {
  backend: Backend;
  version: string;
  promptTokens: number;
  completionTokens: number;
  /** Rows looked up and where each came from (hot/lru: memory, cache: Cache Storage, origin: the edge). */
  rows: TierStats;
  /** Requests and bytes this generation sent to the edge. */
  network: Traffic;
  memoryWaitMs: number;
}

/** The text deltas of one generation, as they are computed; `stats()` at any time. */
export interface BrowserGeneration extends AsyncIterable<TextDelta> {
  stats(): BrowserGenerationStats;
}

export interface BrowserModel {
  readonly model: string;
  readonly version: string;
  readonly backend: Backend;
  /** The WebGPU adapter in use, null on WASM. */
  readonly adapter: string | null;
  readonly tokenizer: TextTokenizer;
  generate(request: BrowserGenerateRequest): BrowserGeneration;
  /** A decoder over this version's rows, for scoring (logits of given tokens). */
  decoder(): Decoder;
  /** Resolves when the hot set is in memory. */
  hotSetReady(): Promise<void>;
  /** What went over the network: bundle objects and rows, and the runtime's wasm. */
  traffic(): { bundle: Traffic; runtime: Traffic };
  close(): Promise<void>;
}

/** The version `model` serves now, from GET /v1/models. */
async function currentVersion(edge: EdgeConnection, model: string): Promise<string> {
  const response = await edge.fetch(`${edge.url}/v1/models`, { headers: authHeaders(edge), cache: 'no-store' });
  if (!response.ok) throw new Error(`GET ${edge.url}/v1/models: ${response.status} ${await response.text()}`);
  const { data } = (await response.json()) as { data: { id: string; bundle_version?: string }[] };
  const version = data.find((m) => m.id === model)?.bundle_version;
  if (!version) throw new InputError(`the worker at ${edge.url} does not serve a model ${model}`);
  return version;
}

export async function openBrowserModel(options: BrowserModelOptions): Promise<BrowserModel> {
  const edge: EdgeConnection = {
    url: options.url.replace(/\/+$/, ''),
    apiKey: options.apiKey,
    fetch: options.fetch ?? fetch.bind(globalThis),
  };
  const hierarchy = { ...BROWSER_HIERARCHY, ...options.hierarchy };
  const storage = options.cache === false ? null : (options.cache?.storage ?? globalThis.caches ?? null);
  const pageCaches: PageCache[] = storage
    ? [new CacheStoragePageCache(storage, (options.cache || undefined)?.pageBudgetBytes ?? DEFAULT_PAGE_BUDGET_BYTES)]
    : [];
  const store = new EdgeObjectStore(edge, storage ? 'no-store' : 'default');
  const runtimeTraffic: Traffic = { requests: 0, bytes: 0 };
  const [version, runtime] = await Promise.all([
    currentVersion(edge, options.model),
    loadOrtRuntime(
      options.backend ?? 'auto',
      options.ortAssetsUrl ?? `${edge.url}/ort/`,
      edge.fetch,
      runtimeTraffic,
      options.sessionOptions,
    ),
  ]);
  const core = createServingCore({
    origin: new VerifiedObjectCache(store, storage, hierarchy.hotSetBytes),
    pageCaches,
    createSession: runtime.createSession,
    Tensor: runtime.Tensor,
    settings: { hierarchy, maxLoadedVersions: 1 },
    clock: () => performance.now(),
  });
  const bundle = await core.bundle(version);
  core.rows(bundle); // starts the hot-set read now, while the page waits for a prompt

  return {
    model: options.model,
    version,
    backend: runtime.backend,
    adapter: runtime.adapter,
    tokenizer: bundle.tokenizer,
    generate(request) {
      const { promptIds, stops } = promptOf(bundle, request);
      const room = bundle.manifest.config.max_position_embeddings - promptIds.length;
      const maxTokens = Math.min(request.maxTokens ?? 256, room);
      if (maxTokens < 1)
        throw new InputError(`the prompt's ${promptIds.length} tokens leave no room in the context of ${room + promptIds.length}`);
      const before = { ...store.traffic };
      let recorder: TierRecorder | null = null;
      const { deltas, metrics } = core.generate(
        bundle,
        {
          promptIds,
          maxTokens,
          sampling: samplingWithDefaults(request),
          stop: [...(request.stop ?? []), ...stops],
          logprobs: request.logprobs ?? null,
          signal: request.signal,
          fedRowTier: request.provenance ? () => recorder?.lastTier() ?? null : undefined,
        },
        undefined,
        request.provenance
          ? (source) => {
              recorder = recordTiers(source.stats, source);
              return recorder.rows;
            }
          : undefined,
      );
      let completionTokens = 0;
      async function* counted(): AsyncGenerator<TextDelta, GenerationResult> {
        const iterator = deltas[Symbol.asyncIterator]();
        for (;;) {
          const next = await iterator.next();
          if (next.done) return next.value;
          completionTokens += next.value.finish?.completionTokens ?? 0;
          yield next.value;
        }
      }
      return {
        [Symbol.asyncIterator]: counted,
        stats: () => {
          const { tiers, memoryWaitMs } = metrics();
          const network = { requests: store.traffic.requests - before.requests, bytes: store.traffic.bytes - before.bytes };
          return {
            backend: runtime.backend,
            version,
            promptTokens: promptIds.length,
            completionTokens,
            rows: tiers,
            network,
            memoryWaitMs,
          };
        },
      };
    },
    decoder: () => core.decoder(bundle, core.rows(bundle)),
    hotSetReady: () => core.hotSetReady(bundle),
    traffic: () => ({ bundle: { ...store.traffic }, runtime: { ...runtimeTraffic } }),
    close: () => core.close(),
  };
}

function promptOf(bundle: LoadedBundle, request: BrowserGenerateRequest): { promptIds: number[]; stops: string[] } {
  if ((request.prompt === undefined) === (request.messages === undefined)) throw new InputError('give either prompt or messages');
  const template = bundle.manifest.chatTemplate;
  const text = request.messages ? renderChat(request.messages, template) : (request.prompt as string);
  const promptIds = bundle.tokenizer.encode(text);
  if (promptIds.length === 0) throw new InputError('the prompt is empty');
  return { promptIds, stops: request.messages && !template ? DEFAULT_TEMPLATE_STOPS : [] };
}
