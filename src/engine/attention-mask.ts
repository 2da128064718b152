/**
 * The `attention_mask` feed of the decoder graph (src/model/graph-io.ts): [batch, past + seq]
 * int64, 1 for a real position and 0 for padding. Graphs built before the input existed lack it
 * (bundles already published), so every feed builder asks the session first.
 */
import type { Tensor, TensorConstructor } from 'onnxruntime-common';
import { GRAPH_IO } from '../model/graph-io.ts';

/** Whether a session's graph takes `attention_mask` (and so can run a padded batch). */
export function takesAttentionMask(inputNames: readonly string[]): boolean {
  return inputNames.includes(GRAPH_IO.attentionMask);
}

/** The feed for `batch` sequences without padding, each `total` positions long; none for a graph without the input. */
export function unpaddedMask(
  inputNames: readonly string[],
  Tensor: TensorConstructor,
  batch: number,
  total: number,
): Record<string, Tensor> {
  if (!takesAttentionMask(inputNames)) return {};
  return { [GRAPH_IO.attentionMask]: new Tensor('int64', new BigInt64Array(batch * total).fill(1n), [batch, total]) };
}
