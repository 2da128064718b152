/**
 * The serving core: everything between a request (HTTP or a CLI command) and the engine, built
 * once per isolate or process from the parts a platform provides. The worker
 * (workers/edge.worker.ts), the CLI (cli/local-bundle.ts) and the benchmarks are adapters that
 * only map their platform onto `ServingParts`; the core owns the model registry, the memory
 * hierarchy, the origin read policy (src/serving/bundle-reader.ts), session queueing and the
 * generation counters. docs/architecture.md walks one request through it.
 */
import type { InferenceSession, TensorConstructor } from 'onnxruntime-common';
import type { RowSource } from '../bundle/row-source.ts';
import { Decoder, type StepSession } from '../engine/decoder.ts';
import { generate, GenerationCounters, type GenerationRequest, type GenerationResult, type TextDelta } from '../engine/generation.ts';
import { canBatch, StepBatcher, type BatcherStats } from '../engine/step-batcher.ts';
import {
  DEFAULT_HIERARCHY,
  emptyTierStats,
  MemoryHierarchy,
  type CountedRowSource,
  type HierarchyConfig,
  type TierStats,
} from '../memory/memory-hierarchy.ts';
import type { PageCache } from '../memory/page-cache.ts';
import type { BundleObject, ModelPointer, ObjectStore } from '../storage/object-store.ts';
import { Admission, DEFAULT_ADMISSION, type AdmissionLimits } from './admission.ts';
import { BundleReader } from './bundle-reader.ts';
import { Metrics } from './metrics.ts';
import { DEFAULT_ORIGIN_POLICY, type OriginPolicy } from './retry.ts';
import { ModelRegistry, type GraphChoice, type LoadedBundle, type ModelHealth } from './model-registry.ts';
import type { GraphObjects } from './session-options.ts';

export type { GraphChoice, LoadedBundle } from './model-registry.ts';

/** Keeps work alive after a response has been sent (Workers: `ctx.waitUntil`). */
export type Background = (work: Promise<unknown>) => void;

export interface ServingSettings {
  /** How long a model's pointer is trusted before it is read again (a new version goes live). */
  pointerTtlMs: number;
  /** How long a held pointer keeps serving while re-reading it fails (the origin is down, the object broken). */
  pointerMaxStaleMs: number;
  /** Attempts and deadline of every origin read (src/serving/retry.ts). */
  origin: OriginPolicy;
  /** Bundle versions kept loaded at once (an isolate has 128 MB). */
  maxLoadedVersions: number;
  hierarchy: HierarchyConfig;
  /** 'reference' runs the oracle graph, which computes the memory path itself (parity, eval). */
  graph: GraphChoice;
  /** Generations at once in this isolate, and the short queue in front of them (src/serving/admission.ts). */
  admission: AdmissionLimits;
  /**
   * Most decode steps of concurrent generations run as one session.run (src/engine/step-batcher.ts);
   * 1 runs every step alone. Graphs without `attention_mask` or `new_key_values` (built before them) never batch.
   */
  maxDecodeBatch: number;
  /** Most prompt tokens per session.run (src/engine/decoder.ts maxRunTokens); 0 runs a prompt at once. */
  maxRunTokens: number;
}

export const DEFAULT_SETTINGS: ServingSettings = {
  pointerTtlMs: 5000,
  pointerMaxStaleMs: 300_000,
  origin: DEFAULT_ORIGIN_POLICY,
  maxLoadedVersions: 4,
  hierarchy: DEFAULT_HIERARCHY,
  graph: 'compute',
  admission: DEFAULT_ADMISSION,
  maxDecodeBatch: 16,
  maxRunTokens: 0,
};

/** What a platform hands the core. */
export interface ServingParts {
  /** L3: the bucket holding bundles and pointers. */
  origin: ObjectStore;
  /** L1/L2 caches of pages of rows, nearest first (Cache API, KV); none in the CLI. */
  pageCaches?: PageCache[];
  /** Opens a graph in this platform's onnxruntime (web in workerd, node in the CLI). */
  createSession: (graph: GraphObjects) => Promise<InferenceSession>;
  Tensor: TensorConstructor;
  settings?: Partial<ServingSettings>;
  /** Milliseconds; inside a deployed Worker it advances only across I/O. */
  clock?: () => number;
}

/** Wraps the row source of one generation; the tier counts stay the hierarchy's. */
export type RowReadWrapper = (source: CountedRowSource) => RowSource;

/** One running generation: its text deltas, and where its time and rows went so far. */
export interface Generation {
  deltas: AsyncGenerator<TextDelta, GenerationResult>;
  metrics(): GenerationMetrics;
}

export interface GenerationMetrics {
  memoryWaitMs: number;
  tiers: TierStats;
}

export interface ServingCore {
  readonly settings: ServingSettings;
  readonly counters: GenerationCounters;
  /** This isolate's generation slots: `active` and `queued` for /health and /metrics. */
  readonly admission: Admission;
  /** This isolate's counters and histograms, for GET /metrics. */
  readonly metrics: Metrics;
  readonly clock: () => number;
  /** This platform's onnxruntime Tensor constructor (the inspector feeds batched steps itself). */
  readonly Tensor: TensorConstructor;
  /** The origin reader: bundle objects under the read policy (GET /v1/bundles/…, src/api/bundle-objects.ts). */
  readonly origin: BundleReader;
  /** Whether each model can be served (src/serving/model-registry.ts, `health`). */
  modelHealth(background?: Background): Promise<ModelHealth[]>;
  /** Every model with a pointer, and the version it serves. */
  listModels(background?: Background): Promise<ModelPointer[]>;
  /** The bundle `model` serves now; a request pins it for its whole life. */
  current(model: string, background?: Background): Promise<LoadedBundle>;
  /** A bundle version by id. */
  bundle(version: string): Promise<LoadedBundle>;
  /** The memory rows of one request on `bundle` (null for a graph that takes none). */
  rows(bundle: LoadedBundle, background?: Background): CountedRowSource | null;
  /** A decoder over `bundle`, reading rows through the hierarchy. */
  decoder(bundle: LoadedBundle, rows: RowSource | null): Decoder;
  /**
   * `readRows` wraps this generation's row source (per-request memory overrides, provenance): it
   * changes what this one generation reads, never what is cached or shared.
   */
  generate(bundle: LoadedBundle, request: GenerationRequest, background?: Background, readRows?: RowReadWrapper): Generation;
  /** `length` bytes at `offset` of one of `bundle`'s objects, read from the origin under its policy (the inspector's lens). */
  readRange(bundle: LoadedBundle, object: BundleObject, offset: number, length: number): Promise<Uint8Array>;
  /** Resolves once `bundle`'s hot set is in the isolate (warm-up, benchmarks). */
  hotSetReady(bundle: LoadedBundle): Promise<void>;
  /** Releases the loaded sessions (a CLI command or benchmark that is done). */
  close(): Promise<void>;
  /** What the step batcher of `bundle`'s session has done (null when its steps are not batched). */
  batchStats(bundle: LoadedBundle): BatcherStats | null;
}

export function createServingCore(parts: ServingParts): ServingCore {
  const settings: ServingSettings = { ...DEFAULT_SETTINGS, ...parts.settings };
  const clock = parts.clock ?? (() => Date.now());
  const metrics = new Metrics();
  const reader = new BundleReader(parts.origin, settings.origin, {
    retried: (times) => metrics.inc('flexmem_origin_retries_total', {}, times),
    failed: () => metrics.inc('flexmem_origin_errors_total'),
  });
  const hierarchy = new MemoryHierarchy(parts.pageCaches ?? [], settings.hierarchy, () =>
    metrics.inc('flexmem_row_checksum_failures_total'),
  );
  const registry = new ModelRegistry(reader, {
    pointerTtlMs: settings.pointerTtlMs,
    pointerMaxStaleMs: settings.pointerMaxStaleMs,
    maxLoadedVersions: settings.maxLoadedVersions,
    graph: settings.graph,
    createSession: parts.createSession,
    onEvict: (version) => hierarchy.forget(version),
    // The first request's hot rows are read while the session is created, not after it. The read
    // waits for the row checksums (small, read beside the graph, so still well before the create):
    // an origin that checks the hot set as it passes (src/web/verified-object-cache.ts) needs them.
    onManifest: ({ version, manifest, rowChecksums, background }) => {
      const { tables } = manifest;
      if (!tables || settings.graph === 'reference') return;
      const preload = rowChecksums.then(
        () => hierarchy.preloadHotSet({ version, tables, origin: reader.ranges(version), background }),
        () => {}, // the load fails with it, and says why
      );
      background?.(preload);
    },
    now: clock,
  });
  const counters = new GenerationCounters();
  const admission = new Admission(settings.admission);
  metrics.collect(() => {
    metrics.set('flexmem_active_generations', {}, counters.active);
    metrics.set('flexmem_queued_generations', {}, admission.queued);
    metrics.set('flexmem_cancelled_generations_total', {}, counters.cancelled);
  });

  const rows = (bundle: LoadedBundle, background?: Background): CountedRowSource | null => {
    const { tables } = bundle.manifest;
    if (!tables || settings.graph === 'reference') return null;
    return hierarchy.rowsFor({
      version: bundle.version,
      tables,
      origin: reader.ranges(bundle.version),
      overrides: bundle.overrides,
      rowChecksums: bundle.rowChecksums,
      background,
    });
  };
  // One batcher per loaded session: the generations of one bundle version batch together.
  const batchers = new WeakMap<StepSession, StepBatcher | null>();
  const batcherOf = (bundle: LoadedBundle): StepBatcher | null => {
    const { session } = bundle;
    if (!batchers.has(session)) {
      const batches = settings.maxDecodeBatch >= 2 && canBatch(session);
      const { config } = bundle.manifest;
      const observe = (stepped: number) => {
        metrics.inc('flexmem_decode_batches_total');
        metrics.inc('flexmem_decode_batch_rows_total', {}, stepped);
      };
      batchers.set(
        session,
        batches ? new StepBatcher({ session, Tensor: parts.Tensor, config, maxBatch: settings.maxDecodeBatch, observe }) : null,
      );
    }
    return batchers.get(session)!;
  };
  const decoder = (bundle: LoadedBundle, source: RowSource | null) =>
    new Decoder({
      session: bundle.session,
      Tensor: parts.Tensor,
      config: bundle.manifest.config,
      rows: source,
      clock,
      batcher: batcherOf(bundle),
      maxRunTokens: settings.maxRunTokens,
    });

  return {
    settings,
    counters,
    admission,
    metrics,
    clock,
    Tensor: parts.Tensor,
    origin: reader,
    modelHealth: (background) => registry.health(background),
    listModels: (background) => registry.list(background),
    current: (model, background) => registry.current(model, background),
    bundle: (version) => registry.load(version),
    rows,
    decoder,
    generate(bundle, request, background, readRows) {
      const source = rows(bundle, background);
      const stepper = decoder(bundle, source && readRows ? readRows(source) : source);
      const model = {
        decoder: stepper,
        decode: (ids: number[]) => bundle.tokenizer.decode(ids),
        eosTokenId: bundle.manifest.config.eos_token_id,
      };
      return {
        deltas: generate(model, request, counters),
        metrics: () => ({ memoryWaitMs: stepper.memoryWaitMs, tiers: structuredClone(source?.stats ?? emptyTierStats()) }),
      };
    },
    close: () => registry.close(),
    batchStats: (bundle) => batcherOf(bundle)?.stats ?? null,
    readRange: (bundle, object, offset, length) => reader.ranges(bundle.version).read(object, offset, length),
    hotSetReady: (bundle) => hierarchy.hotSetReady(bundle.manifest.tables?.shards[0]?.from ?? bundle.version),
  };
}
