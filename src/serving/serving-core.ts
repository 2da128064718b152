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
import { Decoder } from '../engine/decoder.ts';
import { generate, GenerationCounters, type GenerationRequest, type GenerationResult, type TextDelta } from '../engine/generation.ts';
import {
  DEFAULT_HIERARCHY,
  emptyTierStats,
  MemoryHierarchy,
  type CountedRowSource,
  type HierarchyConfig,
  type TierStats,
} from '../memory/memory-hierarchy.ts';
import type { PageCache } from '../memory/page-cache.ts';
import type { ModelPointer, ObjectStore } from '../storage/object-store.ts';
import { BundleReader } from './bundle-reader.ts';
import { ModelRegistry, type GraphChoice, type LoadedBundle } from './model-registry.ts';

export type { GraphChoice, LoadedBundle } from './model-registry.ts';

/** Keeps work alive after a response has been sent (Workers: `ctx.waitUntil`). */
export type Background = (work: Promise<unknown>) => void;

export interface ServingSettings {
  /** How long a model's pointer is trusted before it is read again (a new version goes live). */
  pointerTtlMs: number;
  /** Bundle versions kept loaded at once (an isolate has 128 MB). */
  maxLoadedVersions: number;
  hierarchy: HierarchyConfig;
  /** 'reference' runs the oracle graph, which computes the memory path itself (parity, eval). */
  graph: GraphChoice;
}

export const DEFAULT_SETTINGS: ServingSettings = {
  pointerTtlMs: 5000,
  maxLoadedVersions: 4,
  hierarchy: DEFAULT_HIERARCHY,
  graph: 'compute',
};

/** What a platform hands the core. */
export interface ServingParts {
  /** L3: the bucket holding bundles and pointers. */
  origin: ObjectStore;
  /** L1/L2 caches of pages of rows, nearest first (Cache API, KV); none in the CLI. */
  pageCaches?: PageCache[];
  /** Opens a graph in this platform's onnxruntime (web in workerd, node in the CLI). */
  createSession: (graph: Uint8Array) => Promise<InferenceSession>;
  Tensor: TensorConstructor;
  settings?: Partial<ServingSettings>;
  /** Milliseconds; inside a deployed Worker it advances only across I/O. */
  clock?: () => number;
}

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
  readonly clock: () => number;
  /** Every model with a pointer, and the version it serves. */
  listModels(): Promise<ModelPointer[]>;
  /** The bundle `model` serves now; a request pins it for its whole life. */
  current(model: string): Promise<LoadedBundle>;
  /** A bundle version by id. */
  bundle(version: string): Promise<LoadedBundle>;
  /** The memory rows of one request on `bundle` (null for a graph that takes none). */
  rows(bundle: LoadedBundle, background?: Background): CountedRowSource | null;
  /** A decoder over `bundle`, reading rows through the hierarchy. */
  decoder(bundle: LoadedBundle, rows: RowSource | null): Decoder;
  generate(bundle: LoadedBundle, request: GenerationRequest, background?: Background): Generation;
  /** Resolves once `bundle`'s hot set is in the isolate (warm-up, benchmarks). */
  hotSetReady(bundle: LoadedBundle): Promise<void>;
  /** Releases the loaded sessions (a CLI command or benchmark that is done). */
  close(): Promise<void>;
}

export function createServingCore(parts: ServingParts): ServingCore {
  const settings: ServingSettings = { ...DEFAULT_SETTINGS, ...parts.settings };
  const clock = parts.clock ?? (() => Date.now());
  const reader = new BundleReader(parts.origin);
  const hierarchy = new MemoryHierarchy(parts.pageCaches ?? [], settings.hierarchy);
  const registry = new ModelRegistry(reader, {
    pointerTtlMs: settings.pointerTtlMs,
    maxLoadedVersions: settings.maxLoadedVersions,
    graph: settings.graph,
    createSession: parts.createSession,
    onEvict: (version) => hierarchy.forget(version),
    now: clock,
  });
  const counters = new GenerationCounters();

  const rows = (bundle: LoadedBundle, background?: Background): CountedRowSource | null => {
    const { tables } = bundle.manifest;
    if (!tables || settings.graph === 'reference') return null;
    return hierarchy.rowsFor({
      version: bundle.version,
      tables,
      origin: reader.ranges(bundle.version),
      overrides: bundle.overrides,
      background,
    });
  };
  const decoder = (bundle: LoadedBundle, source: RowSource | null) =>
    new Decoder({ session: bundle.session, Tensor: parts.Tensor, config: bundle.manifest.config, rows: source, clock });

  return {
    settings,
    counters,
    clock,
    listModels: () => registry.list(),
    current: (model) => registry.current(model),
    bundle: (version) => registry.load(version),
    rows,
    decoder,
    generate(bundle, request, background) {
      const source = rows(bundle, background);
      const stepper = decoder(bundle, source);
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
    hotSetReady: (bundle) => hierarchy.hotSetReady(bundle.manifest.tables?.shards[0]?.from ?? bundle.version),
  };
}
