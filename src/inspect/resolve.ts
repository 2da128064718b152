/** Checks a view's options against one bundle: the token, the layers, the list depth. */
import type { BundleManifest, LensRef } from '../bundle/manifest.ts';
import { InputError } from '../errors.ts';
import type { LoadedBundle } from '../serving/serving-core.ts';
import type { TokenRef } from './views.ts';

export type Tables = NonNullable<BundleManifest['tables']>;

export const tokenText = (bundle: LoadedBundle, id: number): string => (id < 0 ? '' : bundle.tokenizer.decode([id]));
export const tokenRef = (bundle: LoadedBundle, id: number): TokenRef => ({ id, text: tokenText(bundle, id) });

export function tablesOf(bundle: LoadedBundle): Tables {
  const { tables } = bundle.manifest;
  if (!tables) throw new InputError(`version ${bundle.version} has no memory layers to inspect`);
  return tables;
}

export function lensOf(bundle: LoadedBundle): LensRef {
  const { lens } = bundle.manifest;
  if (!lens) throw new InputError(`version ${bundle.version} has no lens (built by an older flexmem); rebuild it with \`flexmem build\``);
  return lens;
}

/** A token given as an id or as text that is exactly one token. */
export function resolveToken(bundle: LoadedBundle, token: { token?: string; id?: number }): number {
  const V = bundle.manifest.config.vocab_size;
  if (token.id !== undefined) {
    if (!Number.isInteger(token.id) || token.id < 0 || token.id >= V)
      throw new InputError(`unknown token id ${token.id} (the vocabulary is 0-${V - 1})`);
    return token.id;
  }
  const text = token.token ?? '';
  const ids = bundle.tokenizer.encode(text);
  if (ids.length === 1) return ids[0];
  if (ids.length === 0) throw new InputError(`unknown token ${JSON.stringify(text)} (it tokenizes to nothing)`);
  const parts = ids.map((id) => JSON.stringify(tokenText(bundle, id))).join(', ');
  throw new InputError(
    `${JSON.stringify(text)} is ${ids.length} tokens, not one: [${ids.join(', ')}] = [${parts}]; give one token or its id`,
  );
}

/** The memory layers asked for, in slice order, with their index in the row layout. */
export function resolveLayers(tables: Tables, numLayers: number, layers: 'all' | number[] | undefined): number[] {
  const memory = tables.layout.slices.map((s) => s.layer);
  if (layers === undefined || layers === 'all') return memory.map((_, i) => i);
  const indices = layers.map((layer) => {
    if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers)
      throw new InputError(`layer ${layer} is out of range (the model has layers 0-${numLayers - 1})`);
    const index = memory.indexOf(layer);
    if (index < 0) throw new InputError(`layer ${layer} has no memory (memory layers: ${memory.join(', ')})`);
    return index;
  });
  return [...new Set(indices)].sort((a, b) => a - b);
}

export function resolveTop(top: number | undefined, lens: LensRef, fallback: number): number {
  const value = top ?? Math.min(fallback, lens.k);
  if (!Number.isInteger(value) || value < 1 || value > lens.k)
    throw new InputError(`top ${top} is out of range (1-${lens.k}: this version's lens keeps ${lens.k} entries per list)`);
  return value;
}
