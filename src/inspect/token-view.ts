/**
 * The token view: for each memory layer of one token, the row's norm (read through the memory
 * hierarchy like any row) and the lists the build computed for it (the lens, read by one range
 * read of the token's record). Nothing vocabulary-sized is computed or held here.
 */
import { InternalError } from '../errors.ts';
import type { ServingCore, LoadedBundle } from '../serving/serving-core.ts';
import { GATED_APPROXIMATION, readLensLayer, scoredTokens } from './lens-format.ts';
import { lensOf, resolveLayers, resolveToken, resolveTop, tablesOf, tokenRef, tokenText, type Tables } from './resolve.ts';
import { DEFAULT_TOP, type TokenLayerView, type TokenOptions, type TokenView } from './views.ts';

const PATCH_NOTE =
  'a patch: the edited tokens’ promoted, suppressed and neighbour lists were recomputed; other tokens’ neighbour lists and the layer medians are the base version’s';

/** One token's memory row, decoded f32 [R], through the hierarchy (patch rows first). */
export async function memoryRow(core: ServingCore, bundle: LoadedBundle, id: number): Promise<Float32Array> {
  const rows = core.rows(bundle);
  if (!rows) throw new InternalError(`version ${bundle.version}: the serving core gives no rows (reference graph?)`);
  return rows.rows([id]);
}

/** The lens record of one token (all layers), from the patch's recomputed records when it has one. */
export async function lensRecord(core: ServingCore, bundle: LoadedBundle, id: number): Promise<Uint8Array> {
  const lens = lensOf(bundle);
  const patched = lens.overrides?.tokens.indexOf(id) ?? -1;
  if (lens.overrides && patched >= 0) return core.readRange(bundle, lens.overrides, patched * lens.recordBytes, lens.recordBytes);
  return core.readRange(bundle, lens.entries, id * lens.recordBytes, lens.recordBytes);
}

export const sliceNorm = (row: Float32Array, slice: Tables['layout']['slices'][number]): number => {
  let sum = 0;
  for (let i = slice.valueOffset; i < slice.valueOffset + slice.width; i++) sum += row[i] * row[i];
  return Math.sqrt(sum);
};

export async function inspectToken(core: ServingCore, bundle: LoadedBundle, options: TokenOptions): Promise<TokenView> {
  const tables = tablesOf(bundle);
  const lens = lensOf(bundle);
  const id = resolveToken(bundle, options);
  const indices = resolveLayers(tables, bundle.manifest.config.num_hidden_layers, options.layers);
  const top = resolveTop(options.top, lens, DEFAULT_TOP);
  const [row, record] = await Promise.all([memoryRow(core, bundle, id), lensRecord(core, bundle, id)]);
  const text = (t: number) => tokenText(bundle, t);
  const layers = indices.map((index): TokenLayerView => {
    const slice = tables.layout.slices[index];
    const entry = readLensLayer(record, index, lens.k);
    const norm = sliceNorm(row, slice);
    const median = lens.layers[index].medianNorm;
    return {
      layer: slice.layer,
      kind: slice.kind,
      norm,
      norm_vs_median: median > 0 ? norm / median : 0,
      promoted: scoredTokens(entry.promoted, top, text).filter((t) => t.id >= 0),
      suppressed: scoredTokens(entry.suppressed, top, text).filter((t) => t.id >= 0),
      neighbours: scoredTokens(entry.neighbours, top, text)
        .filter((t) => t.id >= 0)
        .map(({ id: n, text: t, logit }) => ({ id: n, text: t, cosine: logit })),
    };
  });
  const gated = layers.some((l) => l.kind === 'gated');
  return {
    object: 'flexmem.memory.token',
    version: bundle.version,
    token: tokenRef(bundle, id),
    top_k: top,
    layers,
    approximation: gated ? GATED_APPROXIMATION : null,
    note: bundle.manifest.base ? PATCH_NOTE : null,
  };
}
