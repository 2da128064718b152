/**
 * The diff of two versions' memory: the tokens whose stored row differs (by the per-row CRC-32C
 * of `tables/rows.crc32c`, a patch's override rows taking the place of their base rows), and for
 * each, the layers whose slice changed with the row's norm and top promoted tokens before and after.
 */
import { rowChecksum } from '../bundle/row-checksums.ts';
import { InputError } from '../errors.ts';
import type { LoadedBundle, ServingCore } from '../serving/serving-core.ts';
import { readLensLayer, scoredTokens } from './lens-format.ts';
import { resolveTop, tablesOf, tokenRef, tokenText } from './resolve.ts';
import { lensRecord, memoryRow, sliceNorm } from './token-view.ts';
import { DEFAULT_DIFF_LIMIT, DEFAULT_TOP, type DiffLayerSide, type DiffOptions, type DiffView, type ScoredToken } from './views.ts';

/** The checksum of every token's row as `bundle` serves it (override rows replace table rows). */
export function servedChecksums(bundle: LoadedBundle): Uint32Array {
  const checksums = bundle.rowChecksums.slice();
  for (const [id, row] of bundle.overrides) checksums[id] = rowChecksum(row);
  return checksums;
}

export async function diffVersions(core: ServingCore, from: LoadedBundle, to: LoadedBundle, options: DiffOptions = {}): Promise<DiffView> {
  const [a, b] = [tablesOf(from), tablesOf(to)];
  const layers = (t: typeof a) => t.layout.slices.map((s) => `${s.layer}:${s.kind}:${s.width}`).join(',');
  if (layers(a) !== layers(b) || from.manifest.config.vocab_size !== to.manifest.config.vocab_size)
    throw new InputError(`versions ${from.version} and ${to.version} have different memory layouts; their rows cannot be compared`);
  const top = Math.min(
    ...[from, to].map((bundle) =>
      bundle.manifest.lens ? resolveTop(options.top, bundle.manifest.lens, DEFAULT_TOP) : (options.top ?? DEFAULT_TOP),
    ),
  );
  const limit = options.limit ?? DEFAULT_DIFF_LIMIT;
  const before = servedChecksums(from);
  const after = servedChecksums(to);
  const sameEncoding = a.layout.dtype === b.layout.dtype;
  const changedIds: number[] = [];
  for (let id = 0; id < before.length; id++) if (!sameEncoding || before[id] !== after[id]) changedIds.push(id);

  const changed = [];
  for (const id of changedIds.slice(0, limit)) {
    const [rowA, rowB, lensA, lensB] = await Promise.all([
      memoryRow(core, from, id),
      memoryRow(core, to, id),
      from.manifest.lens ? lensRecord(core, from, id) : null,
      to.manifest.lens ? lensRecord(core, to, id) : null,
    ]);
    const side = (bundle: LoadedBundle, row: Float32Array, record: Uint8Array | null, index: number): DiffLayerSide => {
      const slice = bundle.manifest.tables!.layout.slices[index];
      const k = bundle.manifest.lens?.k ?? 0;
      const promoted: ScoredToken[] = record
        ? scoredTokens(readLensLayer(record, index, k).promoted, top, (t) => tokenText(bundle, t)).filter((t) => t.id >= 0)
        : [];
      return { norm: sliceNorm(row, slice), promoted };
    };
    const layerViews = a.layout.slices.flatMap((s, index) => {
      const width = s.width;
      const offset = s.valueOffset;
      let differs = false;
      for (let i = offset; i < offset + width && !differs; i++) differs = rowA[i] !== rowB[i];
      return differs ? [{ layer: s.layer, before: side(from, rowA, lensA, index), after: side(to, rowB, lensB, index) }] : [];
    });
    changed.push({ token: tokenRef(to, id), layers: layerViews });
  }
  return { object: 'flexmem.memory.diff', from: from.version, to: to.version, changed, changed_count: changedIds.length, top_k: top };
}
