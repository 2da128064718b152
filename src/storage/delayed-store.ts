import type { ByteRange, ObjectStore, PutOptions } from './object-store.ts';

/**
 * An origin with added latency per read, to measure the system as if its bucket were far away
 * (benchmarks set ORIGIN_LATENCY_MS; a local R2 answers in well under a millisecond).
 */
export class DelayedStore implements ObjectStore {
  constructor(
    private readonly inner: ObjectStore,
    private readonly latencyMs: number,
  ) {}

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    return this.inner.get(key, range);
  }

  put = (key: string, body: Uint8Array, options?: PutOptions) => this.inner.put(key, body, options);
  list = (prefix: string) => this.inner.list(prefix);
  delete = (key: string) => this.inner.delete(key);
}
