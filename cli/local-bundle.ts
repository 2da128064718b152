/**
 * A bundle folder on the local file system, served by the same core as the worker
 * (src/serving/serving-core.ts) with onnxruntime-node: the folder is seen as a store that holds
 * one version, and its rows come through the same memory hierarchy (no page caches).
 */
import { readFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { MANIFEST_FILE, parseManifest, servedGraphObjects, type BundleManifest } from '../src/bundle/manifest.ts';
import type { CountedRowSource } from '../src/memory/memory-hierarchy.ts';
import type { Decoder } from '../src/engine/decoder.ts';
import { InputError } from '../src/errors.ts';
import {
  createServingCore,
  type GraphChoice,
  type LoadedBundle,
  type ServingCore,
  type ServingParts,
} from '../src/serving/serving-core.ts';
import { servedGraph, type GraphObjects } from '../src/serving/session-options.ts';
import { bundleKey, type ByteRange, type ObjectStore } from '../src/storage/object-store.ts';
import type { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { readJsonFile } from './checkpoint.ts';
import { createNodeSession } from './node-session.ts';

/**
 * Bundle folders as a read-only store holding the versions their manifests name: one folder for
 * `run` and `eval`, two for `inspect --diff dirA dirB`.
 */
export class BundleFolderStore implements ObjectStore {
  private readonly folders: { dir: string; prefix: string }[];

  constructor(folders: { dir: string; version: string }[]) {
    this.folders = folders.map(({ dir, version }) => ({ dir, prefix: bundleKey(version, '') }));
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const folder = this.folders.find((f) => key.startsWith(f.prefix));
    if (!folder) return null;
    const path = join(folder.dir, key.slice(folder.prefix.length));
    if (!range) return readFile(path).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : Promise.reject(error)));
    const file = await open(path, 'r');
    try {
      const buffer = Buffer.alloc(range.length);
      const { bytesRead } = await file.read(buffer, 0, range.length, range.offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }

  async list(): Promise<string[]> {
    return [];
  }

  async put(): Promise<void> {
    throw new Error('a bundle folder is read-only');
  }

  async delete(): Promise<void> {
    throw new Error('a bundle folder is read-only');
  }
}

export interface LocalBundle {
  core: ServingCore;
  bundle: LoadedBundle;
  manifest: BundleManifest;
  tokenizer: TextTokenizer;
  rows: CountedRowSource | null;
  decoder: Decoder;
}

export type { GraphChoice };

/** The serving core's settings for one local bundle: a small isolate LRU, no hot set, no pages. */
const LOCAL_SETTINGS = { hierarchy: { isolateBytes: 8 << 20, hotSetBytes: 0, pageBytes: 0, originConcurrency: 6, coalesceGapBytes: 0 } };

/** The manifest of a bundle folder, with a one-line error for anything that is not one. */
export function readLocalManifest(dir: string): BundleManifest {
  return parseManifest(readJsonFile(join(dir, MANIFEST_FILE), `${MANIFEST_FILE} (is ${dir} a bundle?)`), join(dir, MANIFEST_FILE));
}

/** The graph the worker serves, read from a bundle folder as a runtime is handed it. */
export function readServedGraph(dir: string, manifest: BundleManifest): GraphObjects {
  return servedGraph(
    manifest,
    servedGraphObjects(manifest).map((ref) => new Uint8Array(readFileSync(join(dir, ref.path)))),
  );
}

/** The serving core over one bundle folder, with onnxruntime-node (or another runtime's parts). */
export function localServingCore(dir: string, manifest: BundleManifest, parts: Partial<ServingParts> = {}): ServingCore {
  return createServingCore({
    origin: new BundleFolderStore([{ dir, version: manifest.version }]),
    createSession: (graph) => createNodeSession(graph),
    Tensor: ort.Tensor,
    ...parts,
    settings: { ...LOCAL_SETTINGS, ...parts.settings },
  });
}

/** `graph` defaults to what the worker serves: the graph optimized at build time when the bundle has one. */
export async function openLocalBundle(dir: string, graph: GraphChoice = 'optimized'): Promise<LocalBundle> {
  const manifest = readLocalManifest(dir);
  if (graph === 'reference' && !manifest.objects.reference)
    throw new InputError(`bundle ${dir} has no reference graph (build it with --reference)`);
  if (manifest.base)
    throw new InputError(`bundle ${dir} is a patch of ${manifest.base}: its other objects live in a store (serve it from there)`);
  const core = localServingCore(dir, manifest, { settings: { graph } });
  const bundle = await core.bundle(manifest.version);
  const rows = core.rows(bundle);
  return { core, bundle, manifest, tokenizer: bundle.tokenizer, rows, decoder: core.decoder(bundle, rows) };
}
