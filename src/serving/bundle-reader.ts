/**
 * How the serving core reads from the origin store: the one place that decides what a failed or
 * incomplete read means. Bundles are immutable and were verified when published, so anything
 * other than the exact bytes asked for is a fault of the store (an InternalError naming the
 * object, for the log), never an empty row or a silently short table.
 */
import { MANIFEST_FILE, parseManifest, type BundleManifest, type ObjectRef } from '../bundle/manifest.ts';
import type { RangeReader } from '../bundle/row-source.ts';
import { InternalError } from '../errors.ts';
import { bundleKey, objectKey, type BundleObject, type ObjectStore } from '../storage/object-store.ts';
import { sha256Hex } from '../util/sha256.ts';

/** One more read after a failed one: a dropped connection to the origin should not end a generation. */
const READ_ATTEMPTS = 2;

export class BundleReader {
  constructor(private readonly store: ObjectStore) {}

  /** Keys under `prefix`. */
  list(prefix: string): Promise<string[]> {
    return this.withRetry(prefix, () => this.store.list(prefix));
  }

  /** The object at `key`, or null when the store has no such object. */
  async optional(key: string): Promise<Uint8Array | null> {
    return this.withRetry(key, () => this.store.get(key));
  }

  /** `version`'s manifest, checked. */
  async manifest(version: string): Promise<BundleManifest> {
    const key = bundleKey(version, MANIFEST_FILE);
    const bytes = await this.optional(key);
    if (!bytes) throw new InternalError(`${key} is not in the store`);
    const manifest = parseStored(key, () => parseManifest(JSON.parse(new TextDecoder().decode(bytes)), 'manifest'));
    if (manifest.version !== version) throw new InternalError(`${key} is the manifest of version ${manifest.version}`);
    return manifest;
  }

  /** A whole object of `version`, refused unless its sha256 matches the manifest. */
  async verified(version: string, ref: ObjectRef): Promise<Uint8Array> {
    const key = objectKey(version, ref);
    const bytes = await this.optional(key);
    if (!bytes) throw new InternalError(`${key} is missing from the store`);
    if ((await sha256Hex(bytes)) !== ref.sha256) throw new InternalError(`${key} does not match its sha256; refusing to serve it`);
    return bytes;
  }

  /** Range reads of `version`'s objects (table shards), exactly `length` bytes or an error. */
  ranges(version: string): RangeReader {
    return {
      read: async (object: BundleObject, offset: number, length: number) => {
        const key = objectKey(version, object);
        const bytes = await this.withRetry(key, () => this.store.get(key, { offset, length }));
        if (!bytes) throw new InternalError(`${key} is missing from the store`);
        if (bytes.byteLength !== length) throw new InternalError(`${key}: read ${bytes.byteLength} bytes at ${offset}, expected ${length}`);
        return bytes;
      },
    };
  }

  private async withRetry<T>(key: string, read: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await read();
      } catch (error) {
        if (attempt >= READ_ATTEMPTS)
          throw new InternalError(`reading ${key} failed: ${(error as Error).message ?? error}`, { cause: error });
      }
    }
  }
}

/**
 * Parses the object at `key`. Whatever the parser objects to (an InputError, which would mean a
 * user's file is wrong, or a JSON SyntaxError) is a fault of the store's object: an InternalError
 * that names it.
 */
export function parseStored<T>(key: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new InternalError(`${key}: ${(error as Error).message}`, { cause: error });
  }
}
