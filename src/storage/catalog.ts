/**
 * What a bucket holds: versions (complete or not), which version each model serves, and the
 * rules for flipping pointers and collecting garbage. A version is complete once its
 * `published.json` exists; publishers write it last, after verifying every object.
 */
import { MANIFEST_FILE, parseManifest, type BundleManifest } from '../bundle/manifest.ts';
import { InputError } from '../errors.ts';
import { bundleKey, MODELS_PREFIX, pointerKey, type ModelPointer, type ObjectStore } from './object-store.ts';

export const PUBLISHED_FILE = 'published.json';
export const PUBLISHING_FILE = 'publishing.json';
const BUNDLES_PREFIX = 'bundles/';

export interface PublishedRecord {
  version: string;
  publishedAt: string;
  /** Bytes of the objects this version owns (shared objects count with their owner). */
  bytes: number;
  /** For a patch: the version it edits. */
  base?: string;
}

export interface VersionInfo extends PublishedRecord {
  /** Models whose pointer names this version. */
  currentFor: string[];
}

export interface GcPlan {
  delete: string[];
  keep: { version: string; reason: string }[];
}

const decodeJson = <T>(bytes: Uint8Array): T => JSON.parse(new TextDecoder().decode(bytes)) as T;
const encodeJson = (value: unknown) => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);

export class Catalog {
  constructor(readonly store: ObjectStore) {}

  /** Every version with an object in the store, and whether it is complete. */
  async allVersions(): Promise<{ version: string; complete: boolean; keys: string[] }[]> {
    const byVersion = new Map<string, string[]>();
    for (const key of await this.store.list(BUNDLES_PREFIX)) {
      const version = key.slice(BUNDLES_PREFIX.length).split('/')[0];
      byVersion.set(version, [...(byVersion.get(version) ?? []), key]);
    }
    return [...byVersion].map(([version, keys]) => ({ version, keys, complete: keys.includes(bundleKey(version, PUBLISHED_FILE)) }));
  }

  /** Complete versions, newest first, with the models that serve them. */
  async versions(): Promise<VersionInfo[]> {
    const pointers = await this.pointers();
    const complete = (await this.allVersions()).filter((v) => v.complete);
    const records = await Promise.all(complete.map((v) => this.published(v.version)));
    return records
      .map((r) => ({ ...r!, currentFor: pointers.filter((p) => p.version === r!.version).map((p) => p.model) }))
      .sort((a, b) => b.publishedAt.localeCompare(a.publishedAt) || a.version.localeCompare(b.version));
  }

  async published(version: string): Promise<PublishedRecord | null> {
    const bytes = await this.store.get(bundleKey(version, PUBLISHED_FILE));
    return bytes ? decodeJson<PublishedRecord>(bytes) : null;
  }

  /** The manifest of a complete version; a clear error for any other. */
  async manifest(version: string): Promise<BundleManifest> {
    if (!(await this.published(version)))
      throw new InputError(`unknown version ${version} (not a complete version in this store; see \`flexmem versions\`)`);
    const bytes = await this.store.get(bundleKey(version, MANIFEST_FILE));
    if (!bytes) throw new InputError(`version ${version} has no manifest`);
    return parseManifest(decodeJson(bytes), `${version}/${MANIFEST_FILE}`);
  }

  async pointers(): Promise<ModelPointer[]> {
    const keys = (await this.store.list(MODELS_PREFIX)).filter((k) => k.endsWith('.json'));
    const pointers = await Promise.all(keys.map((k) => this.pointer(k.slice(MODELS_PREFIX.length, -'.json'.length))));
    return pointers.filter((p): p is ModelPointer => p !== null);
  }

  async pointer(model: string): Promise<ModelPointer | null> {
    const bytes = await this.store.get(pointerKey(model));
    return bytes ? decodeJson<ModelPointer>(bytes) : null;
  }

  /** Points `model` at `version`, which must be complete. */
  async setPointer(model: string, version: string, now = new Date()): Promise<ModelPointer> {
    if (!(await this.published(version)))
      throw new InputError(`unknown version ${version} (not a complete version in this store; see \`flexmem versions\`)`);
    const pointer: ModelPointer = { model, version, updatedAt: now.toISOString() };
    await this.store.put(pointerKey(model), encodeJson(pointer));
    return pointer;
  }

  async markPublishing(version: string, now = new Date()): Promise<void> {
    await this.store.put(bundleKey(version, PUBLISHING_FILE), encodeJson({ version, startedAt: now.toISOString() }));
  }

  /** The completeness marker, written last. */
  async markPublished(record: PublishedRecord): Promise<void> {
    await this.store.put(bundleKey(record.version, PUBLISHED_FILE), encodeJson(record));
    await this.store.delete(bundleKey(record.version, PUBLISHING_FILE));
  }

  /**
   * Which versions `gc --keep N` deletes. Never: a version a model serves, one of the N newest,
   * one a kept version builds on (a patch's base, transitively), anything newer than the grace
   * period, or an incomplete upload younger than the grace period (it may still be running).
   */
  async planGc(keepNewest: number, graceMs: number, now = new Date()): Promise<GcPlan> {
    const all = await this.allVersions();
    const complete = await this.versions();
    const keep = new Map<string, string>();
    for (const v of complete) {
      if (v.currentFor.length) keep.set(v.version, `current for ${v.currentFor.join(', ')}`);
    }
    for (const v of complete.slice(0, keepNewest)) keep.set(v.version, keep.get(v.version) ?? `one of the ${keepNewest} newest`);
    for (const v of complete) {
      if (now.getTime() - Date.parse(v.publishedAt) < graceMs) keep.set(v.version, keep.get(v.version) ?? 'newer than the grace period');
    }
    // Bases of kept patches stay, transitively.
    const baseOf = new Map(complete.map((v) => [v.version, v.base]));
    for (const version of [...keep.keys()]) {
      for (let base = baseOf.get(version); base; base = baseOf.get(base)) if (!keep.has(base)) keep.set(base, `base of ${version}`);
    }
    const deletions: string[] = [];
    for (const v of all) {
      if (keep.has(v.version)) continue;
      if (!v.complete) {
        const started = await this.store.get(bundleKey(v.version, PUBLISHING_FILE));
        const startedAt = started ? Date.parse(decodeJson<{ startedAt: string }>(started).startedAt) : 0;
        if (now.getTime() - startedAt < graceMs) {
          keep.set(v.version, 'an upload newer than the grace period');
          continue;
        }
      }
      deletions.push(v.version);
    }
    return { delete: deletions, keep: [...keep].map(([version, reason]) => ({ version, reason })) };
  }

  /** Deletes a version: its completeness marker first, so it is never half-listed. */
  async deleteVersion(version: string): Promise<void> {
    const keys = (await this.store.list(bundleKey(version, ''))).filter((k) => k !== bundleKey(version, PUBLISHED_FILE));
    await this.store.delete(bundleKey(version, PUBLISHED_FILE));
    for (const key of keys) await this.store.delete(key);
  }
}
