/**
 * The lens of a patch (`flexmem patch`): the records of its edited tokens, recomputed against the
 * rows the patch serves, in `lens/overrides.bin`; every other record stays the base's (shared).
 *
 * Recomputed for each edited token and layer: its promoted and suppressed tokens (exactly, from
 * its new row), and its neighbours (the new row against the base's layer table, itself excluded).
 * NOT recomputed: other tokens' neighbour lists (an edited row may now belong in them, or no
 * longer), and the layers' median norms. docs/inspector.md says the same.
 *
 * The unembedding and, for MeKi, W_out and the post-norm are read from the base's compute.onnx
 * (its initializers), so a patch needs no checkpoint.
 */
import { createHash } from 'node:crypto';
import onnxProto from 'onnx-proto';
import type { BundleManifest, LensRef } from '../src/bundle/manifest.ts';
import { decodeRow } from '../src/bundle/row-codec.ts';
import { InputError } from '../src/errors.ts';
import { LENS_OVERRIDES_PATH } from '../src/inspect/lens-format.ts';
import type { WeightSource } from '../src/model/model.ts';
import { objectKey, type ObjectStore } from '../src/storage/object-store.ts';
import { layerTable } from './build-lens.ts';
import { computeLens } from './lens-tables.ts';
import type { Payload } from './publish.ts';

/** The float initializers of an ONNX model by name; `X` also answers for a stored transpose `X.T`. */
export function onnxWeights(model: Uint8Array): WeightSource {
  const graph = onnxProto.onnx.ModelProto.decode(model).graph;
  const tensors = new Map<string, { dims: number[]; data: Float32Array }>();
  for (const t of graph?.initializer ?? []) {
    if (!t.name || !t.rawData) continue;
    const raw = t.rawData;
    const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    tensors.set(t.name, { dims: (t.dims ?? []).map(Number), data });
  }
  return {
    tensor(name: string): Float32Array {
      const direct = tensors.get(name);
      if (direct) return direct.data;
      const transposed = tensors.get(`${name}.T`);
      if (!transposed) throw new InputError(`the compute graph has no weight ${name}; cannot recompute the patch's lens`);
      const [inp, out] = transposed.dims;
      const w = new Float32Array(inp * out);
      for (let i = 0; i < inp; i++) for (let o = 0; o < out; o++) w[o * inp + i] = transposed.data[i * out + o];
      return w;
    },
  };
}

/**
 * The lens of a patch of `base` whose override rows are `overrides` (stored layout) for `tokens`;
 * undefined when the base has no lens.
 */
export async function patchLens(
  store: ObjectStore,
  base: BundleManifest,
  tokens: number[],
  overrides: Uint8Array,
): Promise<{ ref: LensRef; payload: Payload } | undefined> {
  if (!base.lens || !base.tables) return undefined;
  const tables = base.tables;
  const { layout } = tables;
  const read = async (ref: { path: string; from?: string }) => {
    const bytes = await store.get(objectKey(base.version, ref));
    if (!bytes) throw new InputError(`version ${base.version} is missing ${ref.path}`);
    return bytes;
  };
  const weights = onnxWeights(await read(base.objects.compute));
  const shards = new Map<string, Uint8Array>();
  for (const shard of tables.shards) shards.set(shard.path, await read(shard));
  const edited = new Float32Array(tokens.length * layout.rowValues);
  tokens.forEach((_, i) => {
    decodeRow(overrides.subarray(i * layout.rowBytes), layout, edited, i * layout.rowValues);
  });
  const { records } = await computeLens(
    base.config,
    weights,
    layout,
    base.lens.k,
    (slice) => layerTable(tables, slice, (path) => shards.get(path)!),
    (slice) => {
      const rows = new Float32Array(tokens.length * slice.width);
      tokens.forEach((_, i) => {
        rows.set(
          edited.subarray(i * layout.rowValues + slice.valueOffset, i * layout.rowValues + slice.valueOffset + slice.width),
          i * slice.width,
        );
      });
      return { ids: tokens, rows };
    },
  );
  const ref = {
    path: LENS_OVERRIDES_PATH,
    bytes: records.byteLength,
    sha256: createHash('sha256').update(records).digest('hex'),
    tokens,
  };
  return {
    ref: { ...base.lens, entries: { ...base.lens.entries, from: base.lens.entries.from ?? base.version }, overrides: ref },
    payload: { ref, read: () => records },
  };
}
