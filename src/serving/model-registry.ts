/**
 * Which bundle each model serves, and the loaded bundles themselves. A model's pointer object is
 * re-read at most every `pointerTtlMs`, so a published version goes live without a redeploy; a
 * loaded bundle (manifest, tokenizer, compute session) is kept per version for the isolate's
 * life, a few versions at most. A request pins the LoadedBundle it got and never mixes versions.
 * docs/architecture.md ("Versions and pointers") explains why.
 */
import type { InferenceSession } from 'onnxruntime-common';
import type { BundleManifest } from '../bundle/manifest.ts';
import type { StepSession } from '../engine/decoder.ts';
import { InputError, InternalError } from '../errors.ts';
import { MODEL_NAME, MODELS_PREFIX, objectKey, pointerKey, VERSION_ID, type ModelPointer } from '../storage/object-store.ts';
import { TextTokenizer } from '../tokenizer/tokenizer.ts';
import { parseStored, type BundleReader } from './bundle-reader.ts';
import { queuedSession } from './session-queue.ts';

export interface LoadedBundle {
  version: string;
  manifest: BundleManifest;
  tokenizer: TextTokenizer;
  /** The graph's session; runs are queued (one wasm instance per isolate). */
  session: StepSession;
  /** A patch's rows (stored layout), by token id: they take precedence over the tables. */
  overrides: ReadonlyMap<number, Uint8Array>;
}

/** Which graph a loaded bundle runs: the served one, or the reference oracle (memory path in-graph). */
export type GraphChoice = 'compute' | 'reference';

export interface RegistryOptions {
  pointerTtlMs: number;
  /** Loaded versions kept per isolate (memory is 128 MB). */
  maxLoadedVersions: number;
  graph: GraphChoice;
  createSession: (graph: Uint8Array) => Promise<InferenceSession>;
  /** Called with a version evicted from the isolate, so its cached rows can go too. */
  onEvict: (version: string) => void;
  now: () => number;
}

export class UnknownModelError extends InputError {
  constructor(model: string) {
    super(`The model \`${model}\` does not exist`, 404);
  }
}
const unknownModel = (model: string) => new UnknownModelError(model);

export class ModelRegistry {
  private readonly pointers = new Map<string, { pointer: Promise<ModelPointer>; readAt: number }>();
  private readonly bundles = new Map<string, Promise<LoadedBundle>>();
  private modelList: { names: Promise<string[]>; readAt: number } | null = null;

  constructor(
    private readonly reader: BundleReader,
    private readonly options: RegistryOptions,
  ) {}

  /** The bundle `model` serves now. */
  async current(model: string): Promise<LoadedBundle> {
    const pointer = await this.pointer(model);
    return this.load(pointer.version);
  }

  /** Every model with a pointer in the store, and the version it serves. */
  async list(): Promise<ModelPointer[]> {
    const now = this.options.now();
    if (!this.modelList || now - this.modelList.readAt > this.options.pointerTtlMs) {
      const names = this.reader
        .list(MODELS_PREFIX)
        .then((keys) => keys.filter((k) => k.endsWith('.json')).map((k) => k.slice(MODELS_PREFIX.length, -'.json'.length)));
      this.modelList = { names, readAt: now };
      names.catch(() => (this.modelList = null));
    }
    const names = await this.modelList.names;
    return Promise.all(names.map((name) => this.pointer(name)));
  }

  /** A version by id, whichever model serves it (or none). */
  load(version: string): Promise<LoadedBundle> {
    let loaded = this.bundles.get(version);
    if (!loaded) {
      loaded = this.loadBundle(version);
      this.bundles.set(version, loaded);
      loaded.catch(() => this.bundles.delete(version));
      while (this.bundles.size > this.options.maxLoadedVersions) {
        const oldest = this.bundles.keys().next().value!;
        this.bundles.delete(oldest);
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

  private pointer(model: string): Promise<ModelPointer> {
    if (!MODEL_NAME.test(model)) return Promise.reject(unknownModel(model));
    const now = this.options.now();
    const cached = this.pointers.get(model);
    if (cached && now - cached.readAt <= this.options.pointerTtlMs) return cached.pointer;
    const pointer = this.reader.optional(pointerKey(model)).then((bytes) => {
      if (!bytes) throw unknownModel(model);
      return parseStored(pointerKey(model), () => parsePointer(model, JSON.parse(new TextDecoder().decode(bytes))));
    });
    this.pointers.set(model, { pointer, readAt: now });
    // A failed read is not cached: the next request tries again (but an old pointer keeps serving).
    pointer.catch(() => {
      if (this.pointers.get(model)?.pointer === pointer) {
        if (cached) this.pointers.set(model, cached);
        else this.pointers.delete(model);
      }
    });
    return cached ? pointer.catch(() => cached.pointer) : pointer;
  }

  private async loadBundle(version: string): Promise<LoadedBundle> {
    const manifest = await this.reader.manifest(version);
    const graphRef = this.options.graph === 'compute' ? manifest.objects.compute : manifest.objects.reference;
    if (!graphRef) throw new InputError(`bundle ${version} has no reference graph (build it with --reference)`);
    const [graph, tokenizerBytes] = await Promise.all([
      this.reader.verified(version, graphRef),
      this.reader.verified(version, manifest.objects.tokenizer),
    ]);
    const tokenizer = parseStored(
      objectKey(version, manifest.objects.tokenizer),
      () => new TextTokenizer(JSON.parse(new TextDecoder().decode(tokenizerBytes))),
    );
    const session = queuedSession(await this.options.createSession(graph));
    return { version, manifest, tokenizer, session, overrides: await this.overrides(version, manifest) };
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
