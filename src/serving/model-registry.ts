/**
 * Which bundle each model serves, and the loaded bundles themselves. A model's pointer object is
 * re-read at most every `pointerTtlMs`, so a published version goes live without a redeploy; a
 * loaded bundle (manifest, tokenizer, compute session) is kept per version for the isolate's
 * life, a few versions at most. A request pins the LoadedBundle it got and never mixes versions.
 * docs/architecture.md ("Versions and pointers") explains why.
 */
import type { InferenceSession } from 'onnxruntime-common';
import { servedGraphObjects, type BundleManifest, type ObjectRef } from '../bundle/manifest.ts';
import { decodeRowChecksums } from '../bundle/row-checksums.ts';
import type { StepSession } from '../engine/decoder.ts';
import { InputError, InternalError } from '../errors.ts';
import { MODEL_NAME, MODELS_PREFIX, objectKey, pointerKey, VERSION_ID, type ModelPointer } from '../storage/object-store.ts';
import { TextTokenizer } from '../tokenizer/tokenizer.ts';
import { parseStored, type BundleReader } from './bundle-reader.ts';
import { ServableModels } from './model-list.ts';
import { StaleWhileError } from './stale-while-error.ts';
import { queuedSession } from './session-queue.ts';
import { servedGraph, type GraphObjects } from './session-options.ts';

export interface LoadedBundle {
  version: string;
  manifest: BundleManifest;
  tokenizer: TextTokenizer;
  /** The graph's session; runs are queued (one wasm instance per isolate). */
  session: StepSession;
  /** A patch's rows (stored layout), by token id: they take precedence over the tables. */
  overrides: ReadonlyMap<number, Uint8Array>;
  /** The checksum of every table row, by token id (empty without tables): rows read are checked against it. */
  rowChecksums: Uint32Array;
}

/**
 * Which graph a loaded bundle runs: `compute` is compute.onnx as built (the browser client: its
 * WebGPU kernels are not the ones the build optimized for); `optimized` is the same graph
 * optimized at build time for onnxruntime's CPU kernels, its weights beside it (the worker and
 * the CLI, docs/architecture.md "Cold start"), or compute.onnx for a bundle built without it; `reference`
 * is the oracle that computes the memory path in-graph.
 */
export type GraphChoice = 'compute' | 'optimized' | 'reference';

export interface RegistryOptions {
  pointerTtlMs: number;
  /** How long a held pointer keeps serving while re-reading it fails. */
  pointerMaxStaleMs: number;
  /** Loaded versions kept per isolate (memory is 128 MB). */
  maxLoadedVersions: number;
  graph: GraphChoice;
  createSession: (graph: GraphObjects) => Promise<InferenceSession>;
  /** Called with a version evicted from the isolate, or whose load failed, so its cached rows can go too. */
  onEvict: (version: string) => void;
  /**
   * Called as soon as a version's manifest is read, before its graph is: the first request's rows
   * can be read while the session is created (the serving core starts the hot set here;
   * docs/architecture.md "Cold start").
   */
  onManifest?: (loading: LoadingBundle) => void;
  now: () => number;
}

type Background = (work: Promise<unknown>) => void;

/** A version whose load has begun: what is known of it before its session exists. */
export interface LoadingBundle {
  version: string;
  manifest: BundleManifest;
  /** The checksum of every table row, by token id, once read and checked (the load fails if this rejects). */
  rowChecksums: Promise<Uint32Array>;
  /** Keeps work started for the load alive past the request that started it (Workers: ctx.waitUntil). */
  background?: Background;
}

export interface ModelHealth {
  model: string;
  version: string | null;
  status: 'ready' | 'available' | 'unavailable';
}

export class UnknownModelError extends InputError {
  constructor(model: string) {
    super(`The model \`${model}\` does not exist`, 404);
  }
}
const unknownModel = (model: string) => new UnknownModelError(model);

export class ModelRegistry {
  private readonly pointers: StaleWhileError<ModelPointer>;
  private readonly bundles = new Map<string, Promise<LoadedBundle>>();
  private readonly modelNames: StaleWhileError<string[]>;
  private readonly servable = new ServableModels();
  /** Versions whose load has finished and that are still held. */
  private readonly ready = new Set<string>();

  constructor(
    private readonly reader: BundleReader,
    private readonly options: RegistryOptions,
  ) {
    const stale = {
      ttlMs: options.pointerTtlMs,
      maxStaleMs: options.pointerMaxStaleMs,
      settleMs: reader.settleMs,
      now: options.now,
      log: (message: string) => console.warn(message),
    };
    this.pointers = new StaleWhileError((model) => this.readPointer(model), pointerKey, stale);
    this.modelNames = new StaleWhileError(
      (prefix) =>
        reader.list(prefix).then((keys) => keys.filter((k) => k.endsWith('.json')).map((k) => k.slice(prefix.length, -'.json'.length))),
      (prefix) => `the model list (${prefix})`,
      stale,
    );
  }

  /** The bundle `model` serves now. */
  /** `background` keeps a pointer read it starts alive past its request (Workers: ctx.waitUntil). */
  async current(model: string, background?: Background): Promise<LoadedBundle> {
    const pointer = await this.pointer(model, background);
    return this.load(pointer.version, background);
  }

  /** Every model with a pointer in the store that can be served, and the version it serves. */
  async list(background?: Background): Promise<ModelPointer[]> {
    const names = (await this.modelNames.get(MODELS_PREFIX, background)) ?? [];
    return this.servable.list(names, (name) => this.pointer(name, background));
  }

  /**
   * Whether each model can be served, as this isolate knows it: `ready` (its version is loaded
   * here), `available` (its pointer reads; the version loads on the first request), or
   * `unavailable` (the pointer cannot be read or is malformed; the log has why).
   */
  async health(background?: Background): Promise<ModelHealth[]> {
    const names = (await this.modelNames.get(MODELS_PREFIX, background).catch(() => null)) ?? [];
    return Promise.all(
      names.map(async (model) => {
        try {
          const { version } = await this.pointer(model, background);
          return { model, version, status: this.ready.has(version) ? ('ready' as const) : ('available' as const) };
        } catch {
          return { model, version: null, status: 'unavailable' as const };
        }
      }),
    );
  }

  /** A version by id, whichever model serves it (or none). `background` keeps what its load starts alive. */
  load(version: string, background?: Background): Promise<LoadedBundle> {
    let loaded = this.bundles.get(version);
    if (!loaded) {
      loaded = this.loadBundle(version, background);
      this.bundles.set(version, loaded);
      loaded.then(
        () => this.bundles.has(version) && this.ready.add(version),
        () => {
          if (this.bundles.get(version) !== loaded) return;
          this.bundles.delete(version);
          this.options.onEvict(version); // rows read for it while it loaded
        },
      );
      while (this.bundles.size > this.options.maxLoadedVersions) {
        const oldest = this.bundles.keys().next().value!;
        this.bundles.delete(oldest);
        this.ready.delete(oldest);
        this.options.onEvict(oldest);
      }
    }
    return loaded;
  }

  /** Releases every loaded session (a process that is done serving). */
  async close(): Promise<void> {
    const loaded = [...this.bundles.values()];
    this.bundles.clear();
    await Promise.all(
      loaded.map((bundle) =>
        bundle.then(
          (b) => b.session.release(),
          () => {},
        ),
      ),
    );
  }

  private async pointer(model: string, background?: Background): Promise<ModelPointer> {
    if (!MODEL_NAME.test(model)) throw unknownModel(model);
    const pointer = await this.pointers.get(model, background);
    if (!pointer) throw unknownModel(model);
    return pointer;
  }

  /** The pointer object as stored now, or null when there is none. */
  private async readPointer(model: string): Promise<ModelPointer | null> {
    const bytes = await this.reader.optional(pointerKey(model));
    return bytes && parseStored(pointerKey(model), () => parsePointer(model, JSON.parse(new TextDecoder().decode(bytes))));
  }

  private async loadBundle(version: string, background?: Background): Promise<LoadedBundle> {
    const manifest = await this.reader.manifest(version);
    const checksums = this.rowChecksums(version, manifest);
    // Reads the first request will need start before the graph's: once the create runs, this
    // isolate's one thread does nothing else.
    this.options.onManifest?.({ version, manifest, rowChecksums: checksums, background });
    // The session is created as soon as the graph is read and checked, while the other objects are still being read.
    const session = this.session(version, manifest);
    const rest = Promise.all([
      this.reader
        .verified(version, manifest.objects.tokenizer)
        .then((bytes) =>
          parseStored(objectKey(version, manifest.objects.tokenizer), () => new TextTokenizer(JSON.parse(new TextDecoder().decode(bytes)))),
        ),
      checksums,
      this.overrides(version, manifest),
    ]);
    const [created, others] = await Promise.allSettled([session, rest]);
    if (others.status === 'rejected') {
      if (created.status === 'fulfilled') await created.value.release().catch(() => {});
      throw others.reason;
    }
    if (created.status === 'rejected') throw created.reason;
    const [tokenizer, rowChecksums, overrides] = others.value;
    return { version, manifest, tokenizer, session: queuedSession(created.value), overrides, rowChecksums };
  }

  private async session(version: string, manifest: BundleManifest): Promise<InferenceSession> {
    const { compute, computeOptimized, reference } = manifest.objects;
    const create = (ref: ObjectRef) =>
      this.reader.verified(version, ref).then((graph) => this.options.createSession({ graph, optimized: false }));
    if (this.options.graph === 'reference') {
      if (!reference) throw new InputError(`bundle ${version} has no reference graph (build it with --reference)`);
      return create(reference);
    }
    if (this.options.graph === 'compute' || !computeOptimized) return create(compute);
    // The optimized graph may hold fused operators a runtime of another onnxruntime release (or an
    // ORT-format version) it cannot read; compute.onnx computes the same, just slower to load. A
    // failed read or a wrong hash is not retried this way: that is the store's fault.
    const bytes = await Promise.all(servedGraphObjects(manifest).map((ref) => this.reader.verified(version, ref)));
    return this.options.createSession(servedGraph(manifest, bytes)).catch((error: unknown) => {
      console.warn(`bundle ${version}: ${computeOptimized.path} does not load here (${String(error)}); loading ${compute.path} instead`);
      return create(compute);
    });
  }

  private async rowChecksums(version: string, manifest: BundleManifest): Promise<Uint32Array> {
    if (!manifest.tables) return new Uint32Array(0);
    const { checksums } = manifest.tables;
    const bytes = await this.reader.verified(version, checksums);
    return parseStored(objectKey(version, checksums), () => decodeRowChecksums(bytes, manifest.config.vocab_size));
  }

  private async overrides(version: string, manifest: BundleManifest): Promise<Map<number, Uint8Array>> {
    const rows = new Map<number, Uint8Array>();
    if (!manifest.overrides || !manifest.tables) return rows;
    const bytes = await this.reader.verified(version, manifest.overrides);
    const { rowBytes } = manifest.tables.layout;
    manifest.overrides.tokens.forEach((id, i) => {
      rows.set(id, bytes.subarray(i * rowBytes, (i + 1) * rowBytes));
    });
    return rows;
  }
}

/** A pointer object as the store holds it; its version must be a plain key segment. */
function parsePointer(model: string, raw: unknown): ModelPointer {
  const pointer = raw as Partial<ModelPointer> | null;
  if (typeof pointer?.version !== 'string' || !VERSION_ID.test(pointer.version))
    throw new InternalError('the pointer is malformed (no valid version)');
  return { model, version: pointer.version, updatedAt: typeof pointer.updatedAt === 'string' ? pointer.updatedAt : '' };
}
