/**
 * Which bundle each model serves, and the loaded bundles themselves. A model's pointer object is
 * re-read at most every `pointerTtlMs`, so a published version goes live without a redeploy; a
 * loaded bundle (manifest, tokenizer, compute session) is kept per version for the isolate's
 * life, a few versions at most. A request pins the LoadedBundle it got and never mixes versions.
 */
import type { InferenceSession } from 'onnxruntime-common';
import { MANIFEST_FILE, parseManifest, type BundleManifest, type ObjectRef } from '../bundle/manifest.ts';
import type { StepSession } from '../engine/decoder.ts';
import { FlexmemError } from '../errors.ts';
import { bundleKey, MODEL_NAME, MODELS_PREFIX, objectKey, pointerKey, type ModelPointer, type ObjectStore } from '../storage/object-store.ts';
import { TextTokenizer } from '../tokenizer/tokenizer.ts';
import { sha256Hex } from '../util/sha256.ts';

export interface LoadedBundle {
  model: string;
  version: string;
  manifest: BundleManifest;
  tokenizer: TextTokenizer;
  /** The compute graph's session; runs are serialized (one wasm instance per isolate). */
  session: StepSession;
  /** A patch's rows (stored layout), by token id: they take precedence over the tables. */
  overrides: Map<number, Uint8Array>;
}

export class UnknownModelError extends FlexmemError {}

export interface RegistryOptions {
  pointerTtlMs: number;
  /** Loaded versions kept per isolate (memory is 128 MB). */
  maxLoadedVersions: number;
  now?: () => number;
}

export class ModelRegistry {
  private readonly pointers = new Map<string, { pointer: Promise<ModelPointer>; readAt: number }>();
  private readonly bundles = new Map<string, Promise<LoadedBundle>>();
  private modelList: { names: Promise<string[]>; readAt: number } | null = null;

  constructor(
    private readonly store: ObjectStore,
    private readonly createSession: (graph: Uint8Array) => Promise<InferenceSession>,
    private readonly options: RegistryOptions,
    /** Called with a version evicted from the isolate, so its cached rows can go too. */
    private readonly onEvict: (version: string) => void = () => {},
  ) {}

  /** The bundle `model` serves now. */
  async current(model: string): Promise<LoadedBundle> {
    const pointer = await this.pointer(model);
    return this.load(model, pointer.version);
  }

  /** Every model with a pointer in the store, and the version it serves. */
  async list(): Promise<ModelPointer[]> {
    const now = this.now();
    if (!this.modelList || now - this.modelList.readAt > this.options.pointerTtlMs) {
      const names = this.store.list(MODELS_PREFIX).then((keys) => keys.filter((k) => k.endsWith('.json')).map((k) => k.slice(MODELS_PREFIX.length, -'.json'.length)));
      this.modelList = { names, readAt: now };
      names.catch(() => (this.modelList = null));
    }
    const names = await this.modelList.names;
    return Promise.all(names.map((name) => this.pointer(name)));
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private pointer(model: string): Promise<ModelPointer> {
    if (!MODEL_NAME.test(model)) return Promise.reject(new UnknownModelError(`The model \`${model}\` does not exist`));
    const now = this.now();
    const cached = this.pointers.get(model);
    if (cached && now - cached.readAt <= this.options.pointerTtlMs) return cached.pointer;
    const pointer = this.store.get(pointerKey(model)).then((bytes) => {
      if (!bytes) throw new UnknownModelError(`The model \`${model}\` does not exist`);
      const parsed = JSON.parse(new TextDecoder().decode(bytes)) as ModelPointer;
      if (typeof parsed.version !== 'string') throw new FlexmemError(`pointer of model ${model} is malformed`);
      return parsed;
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

  private load(model: string, version: string): Promise<LoadedBundle> {
    const key = `${model}@${version}`;
    let loaded = this.bundles.get(key);
    if (!loaded) {
      loaded = this.loadBundle(model, version);
      this.bundles.set(key, loaded);
      loaded.catch(() => this.bundles.delete(key));
      while (this.bundles.size > this.options.maxLoadedVersions) {
        const oldest = this.bundles.keys().next().value!;
        this.bundles.delete(oldest);
        this.onEvict(oldest.slice(oldest.indexOf('@') + 1));
      }
    }
    return loaded;
  }

  private async loadBundle(model: string, version: string): Promise<LoadedBundle> {
    const manifestBytes = await this.store.get(bundleKey(version, MANIFEST_FILE));
    if (!manifestBytes) throw new FlexmemError(`model ${model} points to version ${version}, which is not in the store`);
    const manifest = parseManifest(JSON.parse(new TextDecoder().decode(manifestBytes)), `${version}/${MANIFEST_FILE}`);
    if (manifest.version !== version) throw new FlexmemError(`bundle ${version} has a manifest of version ${manifest.version}`);
    const [graph, tokenizerBytes] = await Promise.all([this.verified(version, manifest.objects.compute), this.verified(version, manifest.objects.tokenizer)]);
    const tokenizer = new TextTokenizer(JSON.parse(new TextDecoder().decode(tokenizerBytes)));
    const session = serialize(await this.createSession(graph));
    return { model, version, manifest, tokenizer, session, overrides: await this.overrides(version, manifest) };
  }

  private async overrides(version: string, manifest: BundleManifest): Promise<Map<number, Uint8Array>> {
    const rows = new Map<number, Uint8Array>();
    if (!manifest.overrides || !manifest.tables) return rows;
    const bytes = await this.verified(version, manifest.overrides);
    const { rowBytes } = manifest.tables.layout;
    manifest.overrides.tokens.forEach((id, i) => rows.set(id, bytes.subarray(i * rowBytes, (i + 1) * rowBytes)));
    return rows;
  }

  /** An object of the bundle, refused unless its sha256 matches the manifest. */
  private async verified(version: string, ref: ObjectRef): Promise<Uint8Array> {
    const bytes = await this.store.get(objectKey(version, ref));
    if (!bytes) throw new FlexmemError(`bundle ${version} is missing ${ref.path}`);
    if ((await sha256Hex(bytes)) !== ref.sha256) throw new FlexmemError(`bundle ${version}: ${ref.path} does not match its sha256; refusing to serve it`);
    return bytes;
  }
}

/** Runs one session.run at a time: onnxruntime-web's single wasm instance is not reentrant. */
function serialize(session: InferenceSession): StepSession {
  let queue: Promise<unknown> = Promise.resolve();
  return {
    inputNames: session.inputNames,
    run: ((feeds: InferenceSession.FeedsType) => {
      const result = queue.then(() => session.run(feeds));
      queue = result.catch(() => {});
      return result;
    }) as StepSession['run'],
  };
}
