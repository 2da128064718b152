/**
 * Publishing: every object of a version under its immutable prefix, each read back and checked
 * against the manifest's sha256, then the manifest, then the completeness marker, and only then
 * the model's pointer. An interrupted publish leaves the pointer alone and resumes where it
 * stopped (objects already there with the right hash are not uploaded again).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import { bundleObjects, MANIFEST_FILE, parseManifest, type BundleManifest, type ObjectRef } from '../src/bundle/manifest.ts';
import { InputError } from '../src/errors.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { bundleKey, objectKey, type ModelPointer, type ObjectStore } from '../src/storage/object-store.ts';
import { readJsonFile } from './checkpoint.ts';

/** An object to publish: its manifest entry and where its bytes come from. */
export interface Payload {
  ref: ObjectRef;
  read(): Uint8Array;
}

export interface PublishResult {
  version: string;
  uploadedObjects: number;
  uploadedBytes: number;
  skippedObjects: number;
  alreadyPublished: boolean;
  pointer: ModelPointer | null;
}

export interface PublishOptions {
  /** Point this model at the version once it is complete. */
  model?: string;
  progress?: boolean;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** The objects a version owns (not those it shares with a base). */
export function ownObjects(manifest: BundleManifest): ObjectRef[] {
  return bundleObjects(manifest).filter((o) => !o.from);
}

/** Reads a local bundle folder and checks every file against its manifest before anything is sent. */
export function localBundle(dir: string): { manifest: BundleManifest; manifestBytes: Uint8Array; payloads: Payload[] } {
  const path = join(dir, MANIFEST_FILE);
  const manifest = parseManifest(readJsonFile(path, `${MANIFEST_FILE} (is ${dir} a bundle?)`), path);
  const payloads = ownObjects(manifest).map((ref) => {
    const file = join(dir, ref.path);
    if (!existsSync(file)) throw new InputError(`bundle ${dir} is missing ${ref.path}`);
    return { ref, read: () => readFileSync(file) };
  });
  for (const p of payloads) {
    if (sha256(p.read()) !== p.ref.sha256)
      throw new InputError(`${join(dir, p.ref.path)} does not match the sha256 in its manifest (corrupted?); nothing was published`);
  }
  return { manifest, manifestBytes: readFileSync(path), payloads };
}

export async function publishVersion(
  store: ObjectStore,
  manifest: BundleManifest,
  manifestBytes: Uint8Array,
  payloads: Payload[],
  options: PublishOptions = {},
): Promise<PublishResult> {
  const catalog = new Catalog(store);
  const { version } = manifest;
  const result: PublishResult = {
    version,
    uploadedObjects: 0,
    uploadedBytes: 0,
    skippedObjects: 0,
    alreadyPublished: false,
    pointer: null,
  };
  if (await catalog.published(version)) {
    result.alreadyPublished = true;
    result.skippedObjects = payloads.length;
  } else {
    for (const shared of bundleObjects(manifest).filter((o) => o.from)) {
      if (!(await catalog.published(shared.from!)))
        throw new InputError(`version ${version} builds on ${shared.from}, which is not complete in this store`);
    }
    await catalog.markPublishing(version);
    const total = payloads.reduce((n, p) => n + p.ref.bytes, 0);
    const bar = new cliProgress.SingleBar(
      { format: 'publish {bar} {percentage}% | {done}/{size} MB | {rate} MB/s', stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    const started = Date.now();
    let done = 0;
    const show = (bytes: number) => {
      if (!options.progress) return;
      const seconds = Math.max((Date.now() - started) / 1000, 1e-3);
      bar.update(bytes, { done: (bytes / 1e6).toFixed(1), size: (total / 1e6).toFixed(1), rate: (bytes / 1e6 / seconds).toFixed(1) });
    };
    if (options.progress) bar.start(total, 0, { done: '0.0', size: (total / 1e6).toFixed(1), rate: '0.0' });
    try {
      for (const payload of payloads) {
        const key = objectKey(version, payload.ref);
        if (await hasObject(store, key, payload.ref)) {
          result.skippedObjects++;
        } else {
          await store.put(key, payload.read(), { onProgress: (bytes) => show(done + bytes) });
          if (!(await hasObject(store, key, payload.ref))) {
            throw new InputError(`${key} does not match its sha256 after upload (corrupted in transit?); the pointer was not changed`);
          }
          result.uploadedObjects++;
          result.uploadedBytes += payload.ref.bytes;
        }
        done += payload.ref.bytes;
        show(done);
      }
    } finally {
      if (options.progress) bar.stop();
    }
    await store.put(bundleKey(version, MANIFEST_FILE), manifestBytes);
    await catalog.markPublished({
      version,
      publishedAt: new Date().toISOString(),
      bytes: total,
      ...(manifest.base ? { base: manifest.base } : {}),
    });
  }
  if (options.model) result.pointer = await catalog.setPointer(options.model, version);
  return result;
}

/** Whether the store holds `key` with exactly the bytes of `ref` (read back and hashed). */
async function hasObject(store: ObjectStore, key: string, ref: ObjectRef): Promise<boolean> {
  const bytes = await store.get(key);
  return !!bytes && bytes.byteLength === ref.bytes && sha256(bytes) === ref.sha256;
}

/** Publishes a local bundle folder (and points `model` at it). */
export function publishBundle(store: ObjectStore, dir: string, options: PublishOptions = {}): Promise<PublishResult> {
  const { manifest, manifestBytes, payloads } = localBundle(dir);
  return publishVersion(store, manifest, manifestBytes, payloads, options);
}
