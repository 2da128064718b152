/** Opening a bundle folder on the local file system and serving it with onnxruntime-node. */
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { MANIFEST_FILE, parseManifest, type BundleManifest } from '../src/bundle/manifest.ts';
import type { RangeReader, RowSource } from '../src/bundle/row-source.ts';
import { MemoryHierarchy } from '../src/memory/memory-hierarchy.ts';
import type { BundleObject } from '../src/storage/object-store.ts';
import { Decoder } from '../src/engine/decoder.ts';
import { FlexmemError } from '../src/errors.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { readJsonFile } from './checkpoint.ts';

export class FileRangeReader implements RangeReader {
  constructor(private readonly root: string) {}

  async read(object: BundleObject, offset: number, length: number): Promise<Uint8Array> {
    if (object.from) throw new FlexmemError(`${object.path} belongs to version ${object.from}, which is not in this folder (a patch is served from a store)`);
    const file = await open(join(this.root, object.path), 'r');
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }
}

export interface LocalBundle {
  manifest: BundleManifest;
  tokenizer: TextTokenizer;
  session: ort.InferenceSession;
  rows: RowSource | null;
  decoder: Decoder;
}

/** Which graph to run: the served one, or the reference oracle (memory path computed in-graph). */
export type GraphChoice = 'compute' | 'reference';

export async function openLocalBundle(dir: string, graph: GraphChoice = 'compute'): Promise<LocalBundle> {
  const manifest = parseManifest(readJsonFile(join(dir, MANIFEST_FILE), `${MANIFEST_FILE} (is ${dir} a bundle?)`), join(dir, MANIFEST_FILE));
  const object = graph === 'compute' ? manifest.objects.compute : manifest.objects.reference;
  if (!object) throw new FlexmemError(`bundle ${dir} has no reference graph (build it with --reference)`);
  const tokenizer = new TextTokenizer(readJsonFile(join(dir, manifest.objects.tokenizer.path), 'tokenizer.json'));
  const session = await ort.InferenceSession.create(readFileSync(join(dir, object.path)));
  // The worker's memory hierarchy, over local files: no page caches, a small isolate LRU.
  const hierarchy = new MemoryHierarchy([], { isolateBytes: 8 << 20, hotSetBytes: 0, pageBytes: 0, originConcurrency: 6, coalesceGapBytes: 0 });
  const rows = manifest.tables ? hierarchy.rowsFor(manifest.version, manifest.tables, new FileRangeReader(dir)) : null;
  return { manifest, tokenizer, session, rows, decoder: new Decoder(session, ort.Tensor, manifest.config, rows) };
}
