/**
 * Whole bundle objects (manifest, graph, tokenizer, row checksums, patch rows) and the hot set,
 * kept in Cache Storage across visits, in front of the edge: a second visit downloads none of
 * them. Nothing is kept before it is checked: a manifest must hash to its version id, an object
 * must match the manifest's sha256, and every row of the hot set its checksum; a damaged download
 * is passed on (the serving core's reader refuses it and says why) but never stored.
 *
 * The objects of the last `keepVersions` versions opened are kept; older ones are deleted when a
 * version is opened. Rows outside the hot set go through the page tier (cache-storage-pages.ts).
 */
import { MANIFEST_FILE, parseManifest, versionId, type BundleManifest } from '../bundle/manifest.ts';
import { decodeRowChecksums, firstCorruptRow } from '../bundle/row-checksums.ts';
import { InternalError } from '../errors.ts';
import { bundleKey, objectKey, type ByteRange, type ObjectStore } from '../storage/object-store.ts';
import { sha256Hex } from '../util/sha256.ts';

export const OBJECT_CACHE_NAME = 'flexmem-objects';
const ORIGIN = 'https://objects.flexmem.local/';
const INDEX_URL = `${ORIGIN}versions.json`;

/** The hot-set read the memory hierarchy makes: rows [0, count) of the first shard. */
interface HotSet {
  length: number;
  rowBytes: number;
  firstToken: number;
  checksumsKey: string;
}

interface Expected {
  sha256: string;
  /** Set for the row checksums object: decoded once it is verified, for the hot set's check. */
  vocab?: number;
}

export class VerifiedObjectCache implements ObjectStore {
  private readonly expected = new Map<string, Expected>();
  private readonly hotSets = new Map<string, HotSet>();
  private readonly checksums = new Map<string, Uint32Array>();
  private cache: Promise<Cache | null> | null = null;

  constructor(
    private readonly edge: ObjectStore,
    private readonly storage: CacheStorage | null,
    /** The hierarchy's hot-set budget: the hot set is its first floor(hotSetBytes / rowBytes) rows. */
    private readonly hotSetBytes: number,
    private readonly keepVersions = 2,
  ) {}

  async get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Uint8Array | null> {
    const hot = range && range.offset === 0 ? this.hotSets.get(key) : undefined;
    const cacheable = !range || (hot !== undefined && range.length === hot.length);
    const url = ORIGIN + key + (range ? `?bytes=${range.offset}-${range.offset + range.length - 1}` : '');
    if (cacheable) {
      const held = await this.open().then((cache) => cache?.match(url));
      if (held) return this.checked(key, new Uint8Array(await held.arrayBuffer()), hot, false);
    }
    const bytes = await this.edge.get(key, range, signal);
    if (!bytes || !cacheable) return bytes;
    return this.checked(key, bytes, hot, true, url);
  }

  /** Registers a verified manifest's objects, and stores `bytes` when they pass the check that applies. */
  private async checked(key: string, bytes: Uint8Array, hot: HotSet | undefined, fresh: boolean, url?: string): Promise<Uint8Array> {
    const intact = await this.intact(key, bytes, hot);
    if (intact && fresh && url) await this.open().then((cache) => cache?.put(url, new Response(bytes.slice())).catch(() => {}));
    return bytes;
  }

  private async intact(key: string, bytes: Uint8Array, hot: HotSet | undefined): Promise<boolean> {
    const manifestOf = /^bundles\/([0-9a-f]{20})\/manifest\.json$/.exec(key);
    if (manifestOf) return this.registerManifest(manifestOf[1], bytes);
    if (hot) {
      const checksums = this.checksums.get(hot.checksumsKey);
      return !!checksums && firstCorruptRow(bytes, hot.rowBytes, hot.firstToken, checksums) < 0;
    }
    const expected = this.expected.get(key);
    if (!expected || (await sha256Hex(bytes)) !== expected.sha256) return false;
    if (expected.vocab !== undefined) this.checksums.set(key, decodeRowChecksums(bytes, expected.vocab));
    return true;
  }

  /** A manifest is trusted when it hashes to its own version id; then its objects' hashes are. */
  private async registerManifest(version: string, bytes: Uint8Array): Promise<boolean> {
    let manifest: BundleManifest;
    let written: BundleManifest;
    try {
      written = JSON.parse(new TextDecoder().decode(bytes));
      manifest = parseManifest(written, bundleKey(version, MANIFEST_FILE));
    } catch {
      return false;
    }
    // Hashed as the build wrote it: parsing puts the config's keys in its own order, which JSON.stringify would see.
    const { version: claimed, ...served } = written;
    if (claimed !== version || manifest.version !== version || (await versionId(served)) !== version)
      throw new InternalError(`the manifest of ${version} from the edge does not hash to its version id; refusing it`);
    const keys = [bundleKey(version, MANIFEST_FILE)];
    const expect = (ref: { path: string; sha256: string; from?: string }, vocab?: number) => {
      const key = objectKey(version, ref);
      this.expected.set(key, { sha256: ref.sha256, vocab });
      keys.push(key);
    };
    expect(manifest.objects.compute);
    expect(manifest.objects.tokenizer);
    if (manifest.overrides) expect(manifest.overrides);
    const { tables } = manifest;
    if (tables) {
      expect(tables.checksums, manifest.config.vocab_size);
      const shard = tables.shards[0];
      const count = Math.min(shard.tokenCount, Math.floor(this.hotSetBytes / tables.layout.rowBytes));
      if (count > 0) {
        const shardKey = objectKey(version, shard);
        const hot = { length: count * tables.layout.rowBytes, rowBytes: tables.layout.rowBytes, firstToken: shard.firstToken };
        this.hotSets.set(shardKey, { ...hot, checksumsKey: objectKey(version, tables.checksums) });
        keys.push(`${shardKey}?bytes=0-${hot.length - 1}`);
      }
    }
    await this.keepOnly(version, keys);
    return true;
  }

  /** Records `version` as the latest opened and deletes what only older versions used. */
  private async keepOnly(version: string, keys: string[]): Promise<void> {
    const cache = await this.open();
    if (!cache) return;
    const saved = await cache.match(INDEX_URL);
    const raw: unknown = saved ? await saved.json().catch(() => []) : [];
    const previous = (Array.isArray(raw) ? raw : []).filter(
      (entry): entry is { version: string; keys: string[] } => typeof entry?.version === 'string' && Array.isArray(entry.keys),
    );
    const kept = [{ version, keys }, ...previous.filter((entry) => entry.version !== version)].slice(0, this.keepVersions);
    const wanted = new Set([INDEX_URL, ...kept.flatMap((entry) => entry.keys.map((key) => ORIGIN + key))]);
    for (const request of await cache.keys()) if (!wanted.has(request.url)) await cache.delete(request);
    await cache.put(INDEX_URL, Response.json(kept));
  }

  private open(): Promise<Cache | null> {
    this.cache ??= this.storage ? this.storage.open(OBJECT_CACHE_NAME) : Promise.resolve(null);
    return this.cache;
  }

  put(key: string, body: Uint8Array): Promise<void> {
    return this.edge.put(key, body);
  }

  list(prefix: string): Promise<string[]> {
    return this.edge.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.edge.delete(key);
  }
}
