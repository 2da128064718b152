/**
 * How the serving core reads from the origin store: the one place that decides what a failed or
 * incomplete read means. Every read runs under the origin policy (src/serving/retry.ts): bounded
 * attempts within a deadline. Bundles are immutable and were verified when published, so anything
 * other than the exact bytes asked for is a fault of the store (an InternalError naming the
 * object, for the log), never an empty row or a silently short table.
 */
import { MANIFEST_FILE, parseManifest, type BundleManifest, type ObjectRef } from '../bundle/manifest.ts';
import type { RangeReader } from '../bundle/row-source.ts';
import { InternalError } from '../errors.ts';
import { bundleKey, objectKey, type BundleObject, type ObjectStore } from '../storage/object-store.ts';
import { sha256Hex } from '../util/sha256.ts';
import { DEFAULT_ORIGIN_POLICY, withinPolicy, type OriginPolicy } from './retry.ts';

/** What the reader reports, for the metrics (src/serving/metrics.ts). */
export interface OriginEvents {
  retried(times: number): void;
  /** A read failed for good, after its retries. */
  failed(): void;
}

const NO_EVENTS: OriginEvents = { retried: () => {}, failed: () => {} };

export class BundleReader {
  constructor(
    private readonly store: ObjectStore,
    private readonly policy: OriginPolicy = DEFAULT_ORIGIN_POLICY,
    private readonly events: OriginEvents = NO_EVENTS,
  ) {
    if (!(policy.attempts >= 1 && policy.deadlineMs > 0 && policy.backoffMs >= 0))
      throw new InternalError(`origin policy: attempts must be at least 1 and the deadline above 0, got ${JSON.stringify(policy)}`);
  }

  /** Longer than a read of a small object can take: one still pending after this has lost its request. */
  get settleMs(): number {
    return this.policy.deadlineMs + 1000;
  }

  /** Keys under `prefix`. */
  list(prefix: string): Promise<string[]> {
    return this.read(prefix, 0, () => this.store.list(prefix));
  }

  /** The object at `key` (of `bytes` bytes when known), or null when the store has no such object. */
  optional(key: string, bytes = 0): Promise<Uint8Array | null> {
    return this.read(key, bytes, (signal) => this.store.get(key, undefined, signal));
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
    const bytes = await this.optional(key, ref.bytes);
    if (!bytes) throw new InternalError(`${key} is missing from the store`);
    if ((await sha256Hex(bytes)) !== ref.sha256) throw new InternalError(`${key} does not match its sha256; refusing to serve it`);
    return bytes;
  }

  /** One read under the policy, with its retries and a final failure reported. */
  private async read<T>(what: string, bytes: number, read: (signal: AbortSignal) => Promise<T>): Promise<T> {
    let attempts = 0;
    try {
      return await withinPolicy(this.policy, what, bytes, (signal) => {
        attempts++;
        return read(signal);
      });
    } catch (error) {
      this.events.failed();
      throw error;
    } finally {
      if (attempts > 1) this.events.retried(attempts - 1);
    }
  }

  /** Range reads of `version`'s objects (table shards), exactly `length` bytes or an error. */
  ranges(version: string): RangeReader {
    return {
      read: async (object: BundleObject, offset: number, length: number) => {
        const key = objectKey(version, object);
        const bytes = await this.read(`${key} at ${offset}+${length}`, length, async (signal) => {
          const bytes = await this.store.get(key, { offset, length }, signal);
          // A short read is a cut connection more often than a short object: it is tried again.
          if (bytes && bytes.byteLength !== length) throw new Error(`read ${bytes.byteLength} bytes at ${offset}, expected ${length}`);
          return bytes;
        });
        if (!bytes) throw new InternalError(`${key} is missing from the store`);
        return bytes;
      },
    };
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
