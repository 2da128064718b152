/** Names of the decoder graph's inputs and outputs (Hugging Face Optimum's convention). */
export const GRAPH_IO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  memoryRows: 'memory_rows',
  /**
   * [batch, past + seq] int64: 1 for a real position, 0 for padding (a batch of sequences of
   * different lengths, src/engine/step-batcher.ts). Graphs built before it lack it; feed it only
   * when `session.inputNames` has it.
   */
  attentionMask: 'attention_mask',
  /**
   * int64 scalar: logits are computed for positions [logits_from, seq) only; a prompt's next token
   * needs its last position alone (src/engine/logits-from.ts). Graphs built before it lack it and
   * compute every position's; feed it only when `session.inputNames` has it.
   */
  logitsFrom: 'logits_from',
  pastKey: (l: number) => `past_key_values.${l}.key`,
  pastValue: (l: number) => `past_key_values.${l}.value`,
  logits: 'logits',
  presentKey: (l: number) => `present.${l}.key`,
  presentValue: (l: number) => `present.${l}.value`,
  /**
   * The step's own keys and values, [batch, KV, seq, hd]: the last seq positions of `present`. A
   * caller that keeps the cache itself fetches these instead of `present`, and onnxruntime then
   * copies out a step's positions rather than the whole cache (src/engine/step-batcher.ts). Graphs
   * built before them lack them.
   */
  newKey: (l: number) => `new_key_values.${l}.key`,
  newValue: (l: number) => `new_key_values.${l}.value`,
  tokenIds: 'token_ids',
  /** Inspector outputs of the decoder step (src/inspect/prompt-view.ts), [batch, seq, memory layers]. */
  memoryNorms: 'inspect.memory_norms',
  residualNorms: 'inspect.residual_norms',
  gateMeans: 'inspect.gate_means',
} as const;

/** Every layer's key and value names of one kind (`GRAPH_IO.pastKey`/`pastValue`, `presentKey`/…), in layer order, key first. */
export function layerKvNames(layers: number, key: (l: number) => string, value: (l: number) => string): string[] {
  return Array.from({ length: layers }, (_, l) => [key(l), value(l)]).flat();
}
