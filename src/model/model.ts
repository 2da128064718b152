/**
 * The model math of flexmem, in one place and in forward-pass order: it emits ONNX graphs for
 * the four architectures of docs/checkpoint-format.md.
 *
 *   dense     (Llama):           a = x + Attn(N1(x));  x' = a + FFN(N2(a))
 *   memoryllm (arXiv 2602.00398): x' = x + Attn(N1(x)) + FFN_M(LN(E[t]))
 *   flex      (same paper):       a = x + Attn(N1(x));  x' = a + FFN_C(N2(a)) + ToL[t]
 *   meki      (arXiv 2602.03359): a = x + Attn(N1(x));  h = N2(a)
 *                                 x' = a + FFN(h) + RMSNorm_post(W_out (Mt[t] + sigmoid(W_gate h)))
 *
 * Three graphs come out of it:
 * - the decoder step (`compute.onnx`): memory rows arrive as the input `memory_rows`;
 * - the reference (`reference.onnx`): the same step, with the memory path computed inside the
 *   graph from the token ids (the parity oracle and dense-equivalent baseline);
 * - the memory path alone (`memory.onnx`, build time only): token ids -> rows, to fill the tables.
 *
 * Shapes: B batch, T tokens in this step, P past tokens, S = P + T, d hidden, H heads, KV kv
 * heads, G = H / KV, hd head dim, V vocab, R values per memory row.
 * Linear weights are stored transposed (`<checkpoint name>.T`, [in, out]) so MatMul needs no
 * Transpose node; everything else keeps the checkpoint's name and layout.
 */
import { CONTRIB_DOMAIN, GraphBuilder } from '../onnx/graph-builder.ts';
import { ComputeWeights } from './compute-weights.ts';
import { memoryKindOf, memorySlices, rowWidth, type ModelConfig } from './config.ts';
import { GRAPH_IO } from './graph-io.ts';
import type { ComputeDtype } from './quantize.ts';
import { checkpointTensors } from './tensors.ts';

/** Source of checkpoint tensors, already checked against checkpointTensors(config). */
export interface WeightSource {
  tensor(name: string): Float32Array;
}

/** Where the decoder step gets its memory rows from. */
export type MemoryMode = 'rows-input' | 'computed-in-graph';

class ModelGraph {
  readonly g: GraphBuilder;
  private readonly shapes: Map<string, number[]>;

  constructor(
    name: string,
    readonly config: ModelConfig,
    private readonly weights: WeightSource,
    computeDtype: ComputeDtype = 'f32',
  ) {
    this.g = new GraphBuilder(name);
    this.shapes = new Map(checkpointTensors(config).map((t) => [t.name, t.shape]));
    this.quantized = computeDtype === 'f32' ? null : new ComputeWeights(this.g, computeDtype, this.weights, (n) => this.shapeOf(n));
  }

  /** Matrix weights in another dtype than f32 (src/model/compute-weights.ts); null for f32. */
  private readonly quantized: ComputeWeights | null;

  /** A checkpoint tensor as an initializer, under its own name, added on first use. */
  weight(name: string): string {
    if (!this.g.hasInitializer(name)) this.g.initializer(name, this.weights.tensor(name), this.shapeOf(name));
    return name;
  }

  /** y = x · Wᵀ for a checkpoint Linear weight W [out, in]. */
  linear(x: string, name: string): string {
    if (this.quantized) return this.quantized.linear(x, name);
    const transposedName = `${name}.T`;
    if (!this.g.hasInitializer(transposedName)) {
      const [out, inp] = this.shapeOf(name);
      const w = this.weights.tensor(name);
      const wt = new Float32Array(w.length);
      for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) wt[i * out + o] = w[o * inp + i];
      this.g.initializer(transposedName, wt, [inp, out]);
    }
    return this.g.matmul(x, transposedName);
  }

  /** E[ids] for the token embedding E [V, d]: [..., d]. */
  embed(ids: string): string {
    const name = 'model.embed_tokens.weight';
    return this.quantized ? this.quantized.embed(ids, name) : this.g.gather(this.weight(name), ids);
  }

  private shapeOf(name: string): number[] {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`model code asked for ${name}, which is not a tensor of this architecture`);
    return shape;
  }

  // ---- building blocks ---------------------------------------------------------------------

  /**
   * RMSNorm_w(x) = x / sqrt(mean(x²) + ε) · w   (Zhang & Sennrich 2019)
   * Written in the node pattern onnxruntime's optimizer fuses into one SimplifiedLayerNormalization
   * (Pow, ReduceMean, Add, Sqrt, Div, Mul): the served graph has one node per norm instead of six.
   */
  rmsNorm(x: string, weightName: string): string {
    const g = this.g;
    const meanSquare = g.reduceMean(g.node('Pow', [x, g.constFloat([2], [])]), [-1]); // [..., 1]
    const rms = g.sqrt(g.add(meanSquare, g.constFloat([this.config.rms_norm_eps], [])));
    return g.mul(g.div(x, rms), this.weight(weightName));
  }

  /** SwiGLU(x) = down( silu(gate·x) ⊙ (up·x) ),  silu(z) = z·σ(z)   (Shazeer 2020) */
  swiglu(x: string, prefix: string): string {
    const g = this.g;
    const gate = this.linear(x, `${prefix}.gate_proj.weight`);
    const up = this.linear(x, `${prefix}.up_proj.weight`);
    return this.linear(g.mul(g.mul(gate, g.sigmoid(gate)), up), `${prefix}.down_proj.weight`);
  }

  /**
   * Rotary tables for the step: angle[b, t, i] = pos[b, t] · θ^(-2i/hd), i < hd/2. Returns cos and
   * sin, each [B·T, hd/2], one row per token of the step, and `row` [B, T], the row each token reads.
   */
  rotaryTables(positionIds: string): Rope {
    const g = this.g;
    const hd = this.config.head_dim;
    const invFreq = Array.from({ length: hd / 2 }, (_, i) => 1 / this.config.rope_theta ** ((2 * i) / hd));
    const freqs = g.mul(g.unsqueeze(g.cast(positionIds, 'float'), [2]), g.constFloat(invFreq)); // [B, T, hd/2]
    const angles = g.reshape(freqs, [-1, hd / 2]); // [B·T, hd/2]
    const tokens = g.node('Range', [g.constInt64([0], []), g.node('Size', [positionIds]), g.constInt64([1], [])]);
    const row = g.node('Reshape', [tokens, g.node('Shape', [positionIds])]); // [B, T]: 0 … B·T - 1
    return { cos: g.node('Cos', [angles]), sin: g.node('Sin', [angles]), row };
  }

  /**
   * rope(x) = x·cos + rotate_half(x)·sin,  rotate_half([x1, x2]) = [-x2, x1]   (Su et al. 2021;
   * Llama's "rotate half" layout), for x [B, heads, T, hd]. One contrib node instead of seven
   * (two slices, negate, concatenate, two products and a sum): a cold session's create grows with
   * its node count (docs/architecture.md, "Cold start").
   */
  rotate(x: string, rope: Rope): string {
    return this.g.node('RotaryEmbedding', [x, rope.row, rope.cos, rope.sin], { interleaved: 0 }, CONTRIB_DOMAIN);
  }

  /**
   * Additive mask [B, 1, G·T, S] (broadcast over kv heads; the T rows repeated for each of the G
   * query heads that share a kv head, as attention() lays out the queries): query i (absolute index
   * P + i) of row b sees key j iff j <= P + i and attentionMask[b, j] is 1. P is read from the past
   * cache's shape, so prefill (P = 0) and decode share one graph. The padding mask only chooses
   * between the same two constants, so a row without padding gets exactly the mask it got before
   * the input existed (0 or -inf), and its logits are bit-identical.
   */
  causalMask(inputIds: string, pastKey: string, attentionMask: string): string {
    const g = this.g;
    const past = g.dim(pastKey, 2);
    const total = g.add(past, g.dim(inputIds, 1));
    const one = g.constInt64([1], []);
    const queryIndex = g.node('Range', [past, total, one]); // [T]
    const keyIndex = g.node('Range', [g.constInt64([0], []), total, one]); // [S]
    const causal = g.node('LessOrEqual', [g.unsqueeze(keyIndex, [0]), g.unsqueeze(queryIndex, [1])]); // [T, S]
    const real = g.unsqueeze(g.cast(attentionMask, 'bool'), [1, 2]); // bool [B, 1, 1, S]
    const visible = g.node('And', [causal, real]); // [B, 1, T, S]
    const mask = g.node('Where', [visible, g.constFloat([0], []), g.constFloat([-Infinity], [])]);
    const G = this.config.num_attention_heads / this.config.num_key_value_heads;
    return G === 1 ? mask : g.node('Tile', [mask, g.constInt64([1, 1, G, 1])]); // [B, 1, G·T, S]
  }

  /**
   * Grouped-query causal self-attention with a KV cache:
   *   softmax(q kᵀ / sqrt(hd) + mask) v, with q, k rotated; query head h reads kv head ⌊h / G⌋.
   */
  attention(x: string, l: number, io: StepIO): { out: string; presentKey: string; presentValue: string; newKey: string; newValue: string } {
    const g = this.g;
    const { num_attention_heads: H, num_key_value_heads: KV, head_dim: hd } = this.config;
    const p = `model.layers.${l}.self_attn`;
    const heads = (t: string, n: number) => g.transpose(g.reshape(t, [0, 0, n, hd]), [0, 2, 1, 3]);
    const q = this.rotate(heads(this.linear(x, `${p}.q_proj.weight`), H), io.rope); // [B, H, T, hd]
    const k = this.rotate(heads(this.linear(x, `${p}.k_proj.weight`), KV), io.rope); // [B, KV, T, hd]
    const v = heads(this.linear(x, `${p}.v_proj.weight`), KV); // [B, KV, T, hd]
    const presentKey = g.concat([io.pastKeys[l], k], 2); // [B, KV, S, hd]
    const presentValue = g.concat([io.pastValues[l], v], 2); // [B, KV, S, hd]

    // Head h = kv·G + g, so the G query heads of kv head kv are rows g·T + t of one matrix.
    const qGrouped = g.reshape(q, [0, KV, -1, hd]); // [B, KV, G·T, hd]
    const keysT = g.transpose(presentKey, [0, 1, 3, 2]); // [B, KV, hd, S]
    const scores = g.add(g.mul(g.matmul(qGrouped, keysT), g.constFloat([1 / Math.sqrt(hd)], [])), io.mask); // [B, KV, G·T, S]
    const context = g.matmul(g.softmax(scores), presentValue); // [B, KV, G·T, hd]
    const merged = g.reshape(g.transpose(g.reshape(context, [0, H, -1, hd]), [0, 2, 1, 3]), [0, 0, H * hd]); // [B, T, H·hd]
    return { out: this.linear(merged, `${p}.o_proj.weight`), presentKey, presentValue, newKey: k, newValue: v };
  }

  // ---- the memory path: context-free, a function of the token id alone --------------------

  /**
   * The layer's memory row slice for tokens `ids` (any shape [...]), given their embeddings
   * E[t] [..., d]. Result [..., width].
   *   memoryllm / flex:  ToL[t] = FFN_M(LN(E[t]))                          width d
   *   meki:              Mt[t]  = α · RMSNorm_mix(M[t] + β · G(E[t]))        width d_mem
   */
  memoryRow(ids: string, embedded: string, l: number): string {
    const g = this.g;
    const p = `model.layers.${l}.memory`;
    if (this.config.architecture !== 'meki') return this.swiglu(this.rmsNorm(embedded, `${p}.norm.weight`), p);
    const staticMemory = g.gather(this.weight(`${p}.table`), ids); // [..., d_mem]
    const dynamicMemory = this.swiglu(embedded, `${p}.dynamic`); // [..., d_mem]
    const mixed = g.add(staticMemory, g.mul(this.weight(`${p}.beta`), dynamicMemory));
    return g.mul(this.weight(`${p}.alpha`), this.rmsNorm(mixed, `${p}.mix_norm.weight`));
  }

  // ---- one decoder layer -------------------------------------------------------------------

  /**
   * x [B, T, d] -> x' [B, T, d]; `memory` is the layer's row slice [B, T, width] or null.
   * For a memory layer it also returns what the inspector measures: the memory output added to the
   * residual stream, the rest of x' (`withoutMemory`), and MeKi's gate σ(W_gate h).
   */
  layer(x: string, l: number, memory: string | null, io: StepIO): LayerOutputs {
    const g = this.g;
    const p = `model.layers.${l}`;
    const attn = this.attention(this.rmsNorm(x, `${p}.input_layernorm.weight`), l, io);
    const a = g.add(x, attn.out); // a = x + Attn(N1(x))
    const kind = memoryKindOf(this.config, l);
    const outputs = { presentKey: attn.presentKey, presentValue: attn.presentValue, newKey: attn.newKey, newValue: attn.newValue };
    if (kind === null) {
      return { x: g.add(a, this.swiglu(this.rmsNorm(a, `${p}.post_attention_layernorm.weight`), `${p}.mlp`)), ...outputs };
    }
    if (this.config.architecture === 'memoryllm') {
      return { x: g.add(a, memory!), memoryOut: memory!, withoutMemory: a, ...outputs }; // x' = x + Attn(N1(x)) + ToL[t]
    }
    const h = this.rmsNorm(a, `${p}.post_attention_layernorm.weight`);
    const withoutMemory = g.add(a, this.swiglu(h, `${p}.mlp`));
    if (kind === 'additive') return { x: g.add(withoutMemory, memory!), memoryOut: memory!, withoutMemory, ...outputs }; // x' = a + FFN_C(N2(a)) + ToL[t]
    const gate = g.sigmoid(this.linear(h, `${p}.memory.gate_proj.weight`)); // [B, T, d_mem]
    const fused = this.linear(g.add(memory!, gate), `${p}.memory.out_proj.weight`); // W_out (Mt[t] + σ(W_gate h))
    const y = this.rmsNorm(fused, `${p}.memory.post_norm.weight`);
    return { x: g.add(withoutMemory, y), memoryOut: y, withoutMemory, gate, ...outputs }; // x' = a + FFN(h) + y
  }

  /** Final norm and output head: logits = N(x) · Wᵀ with W = E (tied) or lm_head. Gemm needs 2-D. */
  logits(x: string): string {
    const g = this.g;
    const { hidden_size: d, vocab_size: V } = this.config;
    const headName = this.config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    const head = this.quantized ? headName : this.weight(headName);
    const flat = g.reshape(this.rmsNorm(x, 'model.norm.weight'), [-1, d]); // [B·T, d]
    const logits = this.quantized ? this.quantized.head(flat, head) : g.node('Gemm', [flat, head], { transB: 1 }); // [B·T, V]
    const batchAndSeq = g.node('Shape', [x], { start: 0, end: 2 });
    return g.node('Reshape', [logits, g.concat([batchAndSeq, g.constInt64([V])], 0)]); // [B, T, V]
  }
}

interface LayerOutputs {
  x: string;
  presentKey: string;
  presentValue: string;
  newKey: string;
  newValue: string;
  /** Memory layers only: what the memory adds to the residual stream, and the rest of x'. */
  memoryOut?: string;
  withoutMemory?: string;
  /** Gated memory only: σ(W_gate h). */
  gate?: string;
}

interface Rope {
  cos: string;
  sin: string;
  row: string;
}

interface StepIO {
  rope: Rope;
  mask: string;
  pastKeys: string[];
  pastValues: string[];
}

/** One decoder step with a KV cache: the graph of compute.onnx (or reference.onnx). */
export function buildDecoderGraph(
  config: ModelConfig,
  weights: WeightSource,
  mode: MemoryMode,
  options: { computeDtype?: ComputeDtype } = {},
): Uint8Array {
  const m = new ModelGraph(mode === 'rows-input' ? 'flexmem_decoder' : 'flexmem_reference', config, weights, options.computeDtype);
  const g = m.g;
  const { num_key_value_heads: KV, head_dim: hd, vocab_size: V } = config;
  const L = config.num_hidden_layers;
  const inputIds = g.input(GRAPH_IO.inputIds, 'int64', ['batch', 'seq']);
  const positionIds = g.input(GRAPH_IO.positionIds, 'int64', ['batch', 'seq']);
  const slices = memorySlices(config);
  const rows =
    mode === 'rows-input' && slices.length > 0 ? g.input(GRAPH_IO.memoryRows, 'float', ['batch', 'seq', rowWidth(config)]) : null;
  const pastKeys: string[] = [];
  const pastValues: string[] = [];
  for (let l = 0; l < L; l++) {
    pastKeys.push(g.input(GRAPH_IO.pastKey(l), 'float', ['batch', KV, 'past', hd]));
    pastValues.push(g.input(GRAPH_IO.pastValue(l), 'float', ['batch', KV, 'past', hd]));
  }
  const attentionMask = g.input(GRAPH_IO.attentionMask, 'int64', ['batch', 'total']);
  const mask = m.causalMask(inputIds, pastKeys[0], attentionMask);
  const io: StepIO = { rope: m.rotaryTables(positionIds), mask, pastKeys, pastValues };

  const embedded = m.embed(inputIds); // E[t]: [B, T, d]
  let x = embedded;
  const inspected: { memoryNorms: string[]; residualNorms: string[]; gateMeans: string[] } = {
    memoryNorms: [],
    residualNorms: [],
    gateMeans: [],
  };
  for (let l = 0; l < L; l++) {
    const slice = slices.find((s) => s.layer === l);
    const layer = g.scoped(`layers.${l}`, () => {
      let memory: string | null = null;
      if (slice && rows)
        memory = g.slice(rows, slice.offset, slice.offset + slice.width, 2); // [B, T, width]
      else if (slice) memory = g.scoped('memory', () => m.memoryRow(inputIds, embedded, l));
      const out = m.layer(x, l, memory, io);
      if (rows && out.memoryOut && out.withoutMemory) {
        const norm = (v: string) => g.node('ReduceL2', [v], { axes: [-1], keepdims: 1 }); // [B, T, 1]
        inspected.memoryNorms.push(norm(out.memoryOut));
        inspected.residualNorms.push(norm(out.withoutMemory));
        if (out.gate) inspected.gateMeans.push(g.reduceMean(out.gate, [-1]));
      }
      return out;
    });
    x = layer.x;
    g.output(layer.presentKey, GRAPH_IO.presentKey(l), 'float', ['batch', KV, 'total', hd]);
    g.output(layer.presentValue, GRAPH_IO.presentValue(l), 'float', ['batch', KV, 'total', hd]);
    g.output(layer.newKey, GRAPH_IO.newKey(l), 'float', ['batch', KV, 'seq', hd]);
    g.output(layer.newValue, GRAPH_IO.newValue(l), 'float', ['batch', KV, 'seq', hd]);
  }
  // The inspector's figures (src/inspect/prompt-view.ts): [B, T, memory layers] each, a few values per token.
  const inspectOutputs = [
    [inspected.memoryNorms, GRAPH_IO.memoryNorms],
    [inspected.residualNorms, GRAPH_IO.residualNorms],
    [inspected.gateMeans, GRAPH_IO.gateMeans],
  ] as const;
  for (const [values, name] of inspectOutputs) {
    if (values.length)
      g.output(values.length === 1 ? values[0] : g.concat([...values], -1), name, 'float', ['batch', 'seq', values.length]);
  }
  // Only from position logits_from on: the head over every position of a prompt would cost T·V·d
  // multiply-adds and T·V floats (128 KiB a token at V = 32,768) for one next token.
  const from = g.unsqueeze(g.input(GRAPH_IO.logitsFrom, 'int64', []), [0]);
  const headed = g.node('Slice', [x, from, g.constInt64([Number.MAX_SAFE_INTEGER]), g.constInt64([1])]); // [B, T - from, d]
  g.output(m.logits(headed), GRAPH_IO.logits, 'float', ['batch', 'logit_positions', V]);
  return g.toModel();
}

/** The memory path alone: token_ids [N] -> memory_rows [N, R], to precompute the tables. */
export function buildMemoryGraph(config: ModelConfig, weights: WeightSource): Uint8Array {
  const m = new ModelGraph('flexmem_memory_path', config, weights);
  const g = m.g;
  const ids = g.input(GRAPH_IO.tokenIds, 'int64', ['tokens']);
  const embedded = g.gather(m.weight('model.embed_tokens.weight'), ids); // [N, d]
  const parts = memorySlices(config).map((s) => g.scoped(`layers.${s.layer}`, () => m.memoryRow(ids, embedded, s.layer)));
  const rows = parts.length === 1 ? parts[0] : g.concat(parts, 1); // [N, R]
  g.output(rows, GRAPH_IO.memoryRows, 'float', ['tokens', rowWidth(config)]);
  return g.toModel();
}
