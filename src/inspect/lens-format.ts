/**
 * The lens object (`lens/entries.bin`): "interpretation is read". For every token, token-major like
 * the tables, and every memory layer in slice order, three ranked lists of `k` entries computed at
 * build time (src/inspect/lens-graph.ts):
 *   promoted ids  int32[k], promoted logits  f32[k]     largest direct logit effect first
 *   suppressed ids int32[k], suppressed logits f32[k]   most negative first
 *   neighbour ids int32[k], cosines          f32[k]     nearest row in the same layer first (itself excluded)
 * little-endian, no padding: one token's record is layers · 6k · 4 bytes, so a view reads one range.
 * A patch's `overrides` object holds whole records of its edited tokens, in its token order.
 */
import type { ScoredToken } from './views.ts';

export const LENS_FORMAT = 'flexmem-lens/1';
export const LENS_PATH = 'lens/entries.bin';
export const LENS_OVERRIDES_PATH = 'lens/overrides.bin';
/** What the gated (MeKi) lists assume; src/inspect/lens-graph.ts explains it. */
export const GATED_APPROXIMATION =
  'gated memory: every gate unit fixed at sigmoid(0) = 0.5 (the real gate depends on the context); effect = W_U (γ_final ⊙ (RMSNorm_post(W_out(row + 0.5)) − RMSNorm_post(W_out(0.5))))';

/** Entries per list stored at build time; a view asks for at most this many. */
export const DEFAULT_LENS_K = 10;

/** The three lists of one token and layer, ids and scores side by side. */
export interface LensLayerEntry {
  promoted: { ids: Int32Array; scores: Float32Array };
  suppressed: { ids: Int32Array; scores: Float32Array };
  neighbours: { ids: Int32Array; scores: Float32Array };
}

export const lensLayerBytes = (k: number): number => 6 * k * 4;
export const lensRecordBytes = (k: number, layers: number): number => layers * lensLayerBytes(k);

const LISTS = ['promoted', 'suppressed', 'neighbours'] as const;

/** Writes one layer's lists at `offset` of `out` (a token record buffer). */
export function writeLensLayer(out: DataView, offset: number, k: number, entry: LensLayerEntry): void {
  let at = offset;
  for (const list of LISTS) {
    const { ids, scores } = entry[list];
    for (let i = 0; i < k; i++, at += 4) out.setInt32(at, ids[i], true);
    for (let i = 0; i < k; i++, at += 4) out.setFloat32(at, scores[i], true);
  }
}

/** Reads one layer's lists from `bytes` (a token record) at layer position `index`. */
export function readLensLayer(bytes: Uint8Array, index: number, k: number): LensLayerEntry {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = index * lensLayerBytes(k);
  const read = () => {
    const ids = new Int32Array(k);
    const scores = new Float32Array(k);
    for (let i = 0; i < k; i++, at += 4) ids[i] = view.getInt32(at, true);
    for (let i = 0; i < k; i++, at += 4) scores[i] = view.getFloat32(at, true);
    return { ids, scores };
  };
  return { promoted: read(), suppressed: read(), neighbours: read() };
}

/** The first `top` entries of a list as scored tokens. */
export function scoredTokens(list: LensLayerEntry['promoted'], top: number, text: (id: number) => string): ScoredToken[] {
  return Array.from({ length: Math.min(top, list.ids.length) }, (_, i) => ({
    id: list.ids[i],
    text: text(list.ids[i]),
    logit: list.scores[i],
  }));
}
