/**
 * Where bundles live: a bucket of immutable objects plus one small pointer object per model.
 * Implementations: an R2 binding (workers/r2-store.ts), any S3-compatible endpoint
 * (s3-store.ts), a local folder (cli/). Keys are relative to the store's own prefix.
 */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface PutOptions {
  /** Called with the bytes sent so far (large uploads go in parts). */
  onProgress?: (sentBytes: number) => void;
}

export interface ObjectStore {
  /** The whole object, or `range` of it; null when the object does not exist. `signal` gives up on the read. */
  get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Uint8Array | null>;
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<void>;
  /** Keys under `prefix`, in lexicographic order. */
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
}

/**
 * Bucket layout:
 *   bundles/<version>/<object path>   an immutable bundle (manifest.json, compute.onnx, tables/…)
 *   models/<model>.json               the pointer: which version a model serves now
 */
export const bundleKey = (version: string, path: string) => `bundles/${version}/${path}`;
/** The key of an object of `version`'s manifest, which may live under another version (`from`). */
export const objectKey = (version: string, object: BundleObject) => bundleKey(object.from ?? version, object.path);

/** An object as a manifest names it. */
export interface BundleObject {
  path: string;
  from?: string;
}
export const pointerKey = (model: string) => `models/${model}.json`;
export const MODELS_PREFIX = 'models/';

export interface ModelPointer {
  model: string;
  version: string;
  updatedAt: string;
}

/** Model names are single key segments: letters, digits, dot, dash, underscore. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/**
 * What `versionId` (src/bundle/manifest.ts) makes: 20 hex digits. A pointer naming anything else
 * ("../x", which would read outside `bundles/`, or "latest") is refused before it is used as a key.
 */
export const VERSION_ID = /^[0-9a-f]{20}$/;
