/**
 * The lens graph, run at build time (onnxruntime-node) and by `flexmem patch` for edited rows:
 * one memory layer's rows [N, W] -> the top-k tokens each row promotes and suppresses through the
 * unembedding, and its k+1 nearest rows by cosine in the layer's table (the row itself included;
 * the caller drops it). MatMul + TopK, so the vocabulary-sized products never reach JavaScript.
 *
 * Promoted/suppressed = the row's direct logit effect, the logits it adds against a zeroed row:
 *
 *   additive (MemoryLLM, Flex):  effect = W_U (γ_final ⊙ row)
 *     The row is added to the residual stream; the final RMSNorm divides the whole stream by a
 *     positive scalar, which changes no ranking, so what remains is γ_final and the LM head.
 *
 *   gated (MeKi):  effect = W_U (γ_final ⊙ (y(row) − y(0))),  y(m) = RMSNorm_post(W_out (m + ½·1))
 *     APPROXIMATION: the real gate σ(W_gate h) depends on the context h; here every gate unit is
 *     σ(0) = ½, the gate's value for a zero pre-activation, so the gate term is the constant vector
 *     ½·1 and y depends on the row alone. Subtracting y(0) leaves what this row adds over a
 *     zeroed row (the prompt view's ablation): the constant gate-only output y(0) is common to
 *     every token and would otherwise dominate every row's list with the same tokens.
 */
import type { ModelConfig } from '../model/config.ts';
import type { WeightSource } from '../model/model.ts';
import { GraphBuilder } from '../onnx/graph-builder.ts';

export const LENS_IO = {
  rows: 'rows',
  table: 'unit_table',
  promotedScores: 'promoted_scores',
  promotedIds: 'promoted_ids',
  suppressedScores: 'suppressed_scores',
  suppressedIds: 'suppressed_ids',
  neighbourScores: 'neighbour_scores',
  neighbourIds: 'neighbour_ids',
} as const;

/** The unembedding matrix W_U [V, d]: the tied embedding or the separate LM head. */
export const headTensorName = (config: ModelConfig): string =>
  config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';

/**
 * The lens graph of memory layer `layer`. Inputs: `rows` [N, W] and `unit_table` [V, W] (the
 * layer's rows scaled to unit length; zero rows stay zero). Outputs: each TopK's values and indices.
 */
export function buildLensGraph(config: ModelConfig, weights: WeightSource, layer: number, k: number): Uint8Array {
  const g = new GraphBuilder(`flexmem_lens_${layer}`);
  const { hidden_size: d, vocab_size: V } = config;
  const gated = config.architecture === 'meki';
  const W = gated ? config.memory_dim! : d;
  const init = (name: string, dims: number[], data = weights.tensor(name)) =>
    g.hasInitializer(name) ? name : g.initializer(name, data, dims);
  const rmsNorm = (x: string, weightName: string) => {
    const meanSquare = g.reduceMean(g.mul(x, x), [-1]);
    const inverseRms = g.div(g.constFloat([1]), g.sqrt(g.add(meanSquare, g.constFloat([config.rms_norm_eps]))));
    return g.mul(g.mul(x, inverseRms), init(weightName, [d]));
  };
  const rows = g.input(LENS_IO.rows, 'float', ['n', W]);
  const table = g.input(LENS_IO.table, 'float', [V, W]);

  let direct = rows; // the row's contribution to the residual stream, [N, d]
  if (gated) {
    const p = `model.layers.${layer}.memory`;
    const outProj = init(`${p}.out_proj.weight`, [d, W]);
    const y = (m: string) => rmsNorm(g.node('Gemm', [g.add(m, g.constFloat([0.5])), outProj], { transB: 1 }), `${p}.post_norm.weight`);
    direct = g.node('Sub', [y(rows), y(g.constFloat(new Array(W).fill(0), [1, W]))]);
  }
  const head = init(headTensorName(config), [V, d]);
  const effect = g.node('Gemm', [g.mul(direct, init('model.norm.weight', [d])), head], { transB: 1 }); // [N, V]
  const kTensor = g.constInt64([Math.min(k, V)]);
  const [promotedScores, promotedIds] = g.nodeN('TopK', [effect, kTensor], 2, { axis: -1, largest: 1, sorted: 1 });
  const [suppressedScores, suppressedIds] = g.nodeN('TopK', [effect, kTensor], 2, { axis: -1, largest: 0, sorted: 1 });

  const norm = g.node('ReduceL2', [rows], { axes: [-1], keepdims: 1 });
  const unitRows = g.div(rows, g.node('Max', [norm, g.constFloat([1e-30])]));
  const cosine = g.node('Gemm', [unitRows, table], { transB: 1 }); // [N, V]
  const [neighbourScores, neighbourIds] = g.nodeN('TopK', [cosine, g.constInt64([Math.min(k + 1, V)])], 2, {
    axis: -1,
    largest: 1,
    sorted: 1,
  });
  const outputs: [string, string, 'float' | 'int64'][] = [
    [promotedScores, LENS_IO.promotedScores, 'float'],
    [promotedIds, LENS_IO.promotedIds, 'int64'],
    [suppressedScores, LENS_IO.suppressedScores, 'float'],
    [suppressedIds, LENS_IO.suppressedIds, 'int64'],
    [neighbourScores, LENS_IO.neighbourScores, 'float'],
    [neighbourIds, LENS_IO.neighbourIds, 'int64'],
  ];
  for (const [value, name, type] of outputs) g.output(value, name, type, ['n', 'k']);
  return g.toModel();
}

/** Rows [V, W] scaled to unit L2 length (zero rows stay zero), and each row's norm. */
export function unitRows(table: Float32Array, width: number): { unit: Float32Array; norms: Float32Array } {
  const count = table.length / width;
  const unit = new Float32Array(table.length);
  const norms = new Float32Array(count);
  for (let v = 0; v < count; v++) {
    let sum = 0;
    for (let i = 0; i < width; i++) sum += table[v * width + i] ** 2;
    const norm = Math.sqrt(sum);
    norms[v] = norm;
    const scale = norm > 0 ? 1 / norm : 0;
    for (let i = 0; i < width; i++) unit[v * width + i] = table[v * width + i] * scale;
  }
  return { unit, norms };
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: Float32Array): number {
  const sorted = Float32Array.from(values).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
