/**
 * The `logits_from` feed of the decoder graph (src/model/graph-io.ts): logits only for positions
 * [from, seq). Graphs built before the input existed lack it (bundles already published) and
 * compute every position's, so every feed builder asks the session first.
 */
import type { Tensor, TensorConstructor } from 'onnxruntime-common';
import { GRAPH_IO } from '../model/graph-io.ts';

/** Whether a session's graph takes `logits_from` (and so can skip the head at positions nobody reads). */
export function takesLogitsFrom(inputNames: readonly string[]): boolean {
  return inputNames.includes(GRAPH_IO.logitsFrom);
}

/** The feed asking for the logits of positions [from, seq); none for a graph without the input. */
export function logitsFromFeed(inputNames: readonly string[], Tensor: TensorConstructor, from: number): Record<string, Tensor> {
  if (!takesLogitsFrom(inputNames)) return {};
  return { [GRAPH_IO.logitsFrom]: new Tensor('int64', BigInt64Array.of(BigInt(from)), []) };
}
