import type { ByteRange, ObjectStore } from '../../src/storage/object-store.ts';

/** An object store in a Map: for tests that publish and read back without a storage service. */
export class MemoryStore implements ObjectStore {
  readonly objects = new Map<string, Uint8Array>();
  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const bytes = this.objects.get(key);
    if (!bytes) return null;
    return range ? bytes.slice(range.offset, range.offset + range.length) : bytes.slice();
  }
  async put(key: string, body: Uint8Array): Promise<void> {
    this.objects.set(key, body.slice());
  }
  async list(prefix: string): Promise<string[]> {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
}
