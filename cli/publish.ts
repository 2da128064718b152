/**
 * Putting a local bundle into an object store: every object under bundles/<version>/, the
 * manifest last (a version without its manifest is not complete), then the model's pointer.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MANIFEST_FILE, parseManifest, type BundleManifest } from '../src/bundle/manifest.ts';
import { bundleKey, pointerKey, type ModelPointer, type ObjectStore } from '../src/storage/object-store.ts';

export function bundleObjects(manifest: BundleManifest): { path: string }[] {
  return [manifest.objects.compute, manifest.objects.tokenizer, ...(manifest.objects.reference ? [manifest.objects.reference] : []), ...(manifest.tables?.shards ?? [])];
}

export async function uploadBundle(store: ObjectStore, bundleDir: string): Promise<BundleManifest> {
  const manifestBytes = readFileSync(join(bundleDir, MANIFEST_FILE));
  const manifest = parseManifest(JSON.parse(manifestBytes.toString('utf8')));
  for (const object of bundleObjects(manifest)) await store.put(bundleKey(manifest.version, object.path), readFileSync(join(bundleDir, object.path)));
  await store.put(bundleKey(manifest.version, MANIFEST_FILE), manifestBytes);
  return manifest;
}

export async function setPointer(store: ObjectStore, model: string, version: string): Promise<void> {
  const pointer: ModelPointer = { model, version, updatedAt: new Date().toISOString() };
  await store.put(pointerKey(model), new TextEncoder().encode(JSON.stringify(pointer)));
}
