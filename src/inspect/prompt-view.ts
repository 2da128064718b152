/**
 * The prompt view: per position and memory layer, how large the memory output is against the
 * residual stream, MeKi's gate, and how the log-probability of the model's next token changes when
 * that position's row is zeroed (the `ablate` edit of `flexmem patch`, for one position only).
 *
 * The compute graph itself reports the norms and gates (outputs `inspect.*`, src/model/model.ts).
 * The ablated variants are whole-prompt forward passes, run as batches: `memory_rows` is
 * [batch, seq, R], each sequence the prompt's rows with one slice zeroed.
 */
import type { Tensor } from 'onnxruntime-common';
import { InputError, InternalError } from '../errors.ts';
import { GRAPH_IO } from '../model/graph-io.ts';
import { unpaddedMask } from '../engine/attention-mask.ts';
import { logitsFromFeed } from '../engine/logits-from.ts';
import type { LoadedBundle, ServingCore } from '../serving/serving-core.ts';
import { resolveLayers, tablesOf, tokenRef, type Tables } from './resolve.ts';
import { MAX_PROMPT_PASSES, type PromptAblation, type PromptOptions, type PromptPositionView, type PromptView } from './views.ts';

/** One ablated variant: a position, and the slice indices zeroed there (all of them for 'all'). */
interface Variant {
  position: number;
  slices: number[];
  /** null: every memory layer of the position. */
  layerIndex: number | null;
}

export interface PromptTuning {
  /** Largest batch of one session.run; by default what keeps its logits under ~16 MB. */
  maxBatch?: number;
}

const LOGIT_BUDGET_VALUES = 4 * 1024 * 1024;

function variantsOf(ablation: PromptAblation, positions: number, tables: Tables): Variant[] {
  if (ablation === 'none') return [];
  const every = tables.layout.slices.map((_, i) => i);
  const out: Variant[] = [];
  for (let position = 0; position < positions; position++) {
    if (ablation === 'all' || ablation === 'each-layer') out.push({ position, slices: every, layerIndex: null });
    if (ablation === 'each-layer') for (const i of every) out.push({ position, slices: [i], layerIndex: i });
    if (typeof ablation === 'object') {
      const [index] = resolveLayers(tables, Number.POSITIVE_INFINITY, [ablation.layer]);
      out.push({ position, slices: [index], layerIndex: index });
    }
  }
  return out;
}

/** log softmax(logits)[id], in f64. */
function logProb(logits: Float32Array, offset: number, V: number, id: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[offset + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[offset + v] - max);
  return logits[offset + id] - max - Math.log(sum);
}

export async function inspectPrompt(
  core: ServingCore,
  bundle: LoadedBundle,
  options: PromptOptions,
  tuning: PromptTuning = {},
): Promise<PromptView> {
  const tables = tablesOf(bundle);
  const { config } = bundle.manifest;
  const ids = bundle.tokenizer.encode(options.prompt);
  if (ids.length === 0) throw new InputError('the prompt is empty (it tokenizes to nothing)');
  if (ids.length > config.max_position_embeddings)
    throw new InputError(`the prompt is ${ids.length} tokens; the model's context is ${config.max_position_embeddings}`);
  const ablation = options.ablate ?? 'all';
  if (typeof ablation === 'object') resolveLayers(tables, config.num_hidden_layers, [ablation.layer]);
  const variants = variantsOf(ablation, ids.length, tables);
  if (variants.length + 1 > MAX_PROMPT_PASSES)
    throw new InputError(
      `ablation ${JSON.stringify(ablation)} of ${ids.length} tokens needs ${variants.length + 1} forward passes (at most ${MAX_PROMPT_PASSES}); shorten the prompt or ablate one layer`,
    );

  const source = core.rows(bundle);
  if (!source) throw new InternalError(`version ${bundle.version}: the serving core gives no rows (reference graph?)`);
  const rows = await source.rows(ids);
  const T = ids.length;
  const R = tables.layout.rowValues;
  const V = config.vocab_size;
  const run = batchRunner(core, bundle, ids);

  const base = await run([rows]);
  const last = (T - 1) * V;
  const logits = base.logits;
  let next = 0;
  for (let v = 1; v < V; v++) if (logits[last + v] > logits[last + next]) next = v;
  const baseLogprob = logProb(logits, last, V, next);

  const deltas = new Float64Array(variants.length);
  const maxBatch = Math.max(1, tuning.maxBatch ?? Math.min(64, Math.floor(LOGIT_BUDGET_VALUES / (T * V))));
  for (let start = 0; start < variants.length; start += maxBatch) {
    const chunk = variants.slice(start, start + maxBatch);
    const batch = chunk.map((variant) => {
      const ablated = rows.slice();
      for (const i of variant.slices) {
        const s = tables.layout.slices[i];
        ablated.fill(0, variant.position * R + s.valueOffset, variant.position * R + s.valueOffset + s.width);
      }
      return ablated;
    });
    const out = await run(batch);
    chunk.forEach((_, b) => {
      deltas[start + b] = logProb(out.logits, (b * T + T - 1) * V, V, next) - baseLogprob;
    });
  }

  const Lm = tables.layout.slices.length;
  const positions: PromptPositionView[] = ids.map((id, t) => ({
    index: t,
    token: tokenRef(bundle, id),
    layers: tables.layout.slices.map((s, i) => {
      const memoryNorm = base.memoryNorms[t * Lm + i];
      const residualNorm = base.residualNorms[t * Lm + i];
      return {
        layer: s.layer,
        memory_norm: memoryNorm,
        residual_norm: residualNorm,
        ratio: residualNorm > 0 ? memoryNorm / residualNorm : 0,
        gate: base.gateMeans ? base.gateMeans[t * Lm + i] : null,
        delta_logprob: null,
      };
    }),
    delta_logprob_all: null,
  }));
  variants.forEach((variant, v) => {
    const position = positions[variant.position];
    if (variant.layerIndex === null) position.delta_logprob_all = deltas[v];
    else position.layers[variant.layerIndex].delta_logprob = deltas[v];
  });
  return {
    object: 'flexmem.memory.prompt',
    version: bundle.version,
    ablation,
    next_token: { ...tokenRef(bundle, next), logprob: baseLogprob },
    positions,
    forward_passes: 1 + variants.length,
  };
}

interface BatchOutputs {
  logits: Float32Array;
  memoryNorms: Float32Array;
  residualNorms: Float32Array;
  gateMeans: Float32Array | null;
}

/** Runs the prompt once per row set (each [T, R]) in one session.run of batch rows.length, from an empty cache. */
function batchRunner(core: ServingCore, bundle: LoadedBundle, ids: number[]) {
  const { config } = bundle.manifest;
  const { Tensor } = core;
  const T = ids.length;
  return async (rowSets: Float32Array[]): Promise<BatchOutputs> => {
    const B = rowSets.length;
    const R = rowSets[0].length / T;
    const memoryRows = new Float32Array(B * T * R);
    rowSets.forEach((set, b) => {
      memoryRows.set(set, b * T * R);
    });
    const feeds: Record<string, Tensor> = {
      [GRAPH_IO.inputIds]: new Tensor(
        'int64',
        BigInt64Array.from({ length: B * T }, (_, i) => BigInt(ids[i % T])),
        [B, T],
      ),
      [GRAPH_IO.positionIds]: new Tensor(
        'int64',
        BigInt64Array.from({ length: B * T }, (_, i) => BigInt(i % T)),
        [B, T],
      ),
      [GRAPH_IO.memoryRows]: new Tensor('float32', memoryRows, [B, T, R]),
      ...unpaddedMask(bundle.session.inputNames, Tensor, B, T),
      ...logitsFromFeed(bundle.session.inputNames, Tensor, 0),
    };
    const empty = new Float32Array(0);
    for (let l = 0; l < config.num_hidden_layers; l++) {
      feeds[GRAPH_IO.pastKey(l)] = new Tensor('float32', empty, [B, config.num_key_value_heads, 0, config.head_dim]);
      feeds[GRAPH_IO.pastValue(l)] = new Tensor('float32', empty, [B, config.num_key_value_heads, 0, config.head_dim]);
    }
    // Only what the view reads: the graph's cache outputs (present and the step's own keys and
    // values, every layer's for every row set) would be copied out of the heap for nothing.
    const wanted = [GRAPH_IO.logits, GRAPH_IO.memoryNorms, GRAPH_IO.residualNorms, GRAPH_IO.gateMeans];
    const out = await bundle.session.run(
      feeds,
      wanted.filter((name) => bundle.session.outputNames.includes(name)),
    );
    const norms = out[GRAPH_IO.memoryNorms];
    if (!norms)
      throw new InputError(`version ${bundle.version}'s compute graph has no inspector outputs (built by an older flexmem); rebuild it`);
    return {
      logits: out[GRAPH_IO.logits].data as Float32Array,
      memoryNorms: norms.data as Float32Array,
      residualNorms: out[GRAPH_IO.residualNorms].data as Float32Array,
      gateMeans: out[GRAPH_IO.gateMeans] ? (out[GRAPH_IO.gateMeans].data as Float32Array) : null,
    };
  };
}
