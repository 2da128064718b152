/** Several local bundle folders seen as one read-only store (`flexmem inspect --diff dirA dirB`). */
import type { ByteRange, ObjectStore } from '../src/storage/object-store.ts';
import { BundleFolderStore } from './local-bundle.ts';

export class FoldersStore implements ObjectStore {
  private readonly stores: BundleFolderStore[];

  constructor(folders: { dir: string; version: string }[]) {
    this.stores = folders.map((f) => new BundleFolderStore(f.dir, f.version));
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    for (const store of this.stores) {
      const bytes = await store.get(key, range);
      if (bytes) return bytes;
    }
    return null;
  }

  async list(): Promise<string[]> {
    return [];
  }

  async put(): Promise<void> {
    throw new Error('bundle folders are read-only');
  }

  async delete(): Promise<void> {
    throw new Error('bundle folders are read-only');
  }
}
