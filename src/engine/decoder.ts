/**
 * Runs the compute graph one step at a time with a KV cache, feeding each step's memory rows.
 * The same code runs under onnxruntime-node (CLI) and onnxruntime-web (worker): the caller
 * passes its runtime's Tensor constructor and a session created from the bundle's graph.
 */
import type { InferenceSession, Tensor, TensorConstructor } from 'onnxruntime-common';
import type { RowSource } from '../bundle/row-source.ts';
import { InputError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { GRAPH_IO, layerKvNames } from '../model/graph-io.ts';
import { unpaddedMask } from './attention-mask.ts';
import { logitsFromFeed } from './logits-from.ts';
import type { Seat, StepBatcher } from './step-batcher.ts';

/** A sequence being decoded: its KV cache and length. */
export interface DecoderState {
  length: number;
  /** Its own KV cache; empty while `seat` is set. */
  past: Record<string, Tensor>;
  /** Set while the cache lives in a row of a batch of decode steps (src/engine/step-batcher.ts). */
  seat?: Seat;
}

/** What the decoder needs of an onnxruntime session (node or web). */
export type StepSession = Pick<InferenceSession, 'inputNames' | 'outputNames' | 'run' | 'release'>;

export interface DecoderParts {
  session: StepSession;
  Tensor: TensorConstructor;
  config: ModelConfig;
  /**
   * Where memory rows come from; may be null only for a graph that does not take them (a dense
   * model, or reference.onnx, which computes its memory path itself).
   */
  rows: RowSource | null;
  /** Milliseconds; inside a deployed Worker it advances only across I/O. */
  clock?: () => number;
  /**
   * Batches one-token steps with other decoders' on the same session; built for a graph that
   * takes `attention_mask`. Without it every step is its own session.run.
   */
  batcher?: StepBatcher | null;
  /**
   * Most tokens of one session.run: a longer prompt runs in parts of this many, each after the cache
   * of the ones before (0: the whole prompt at once). A run's scratch grows with its tokens, and a
   * wasm memory never shrinks: for a model near the isolate's 128 MB, parts keep it within bounds.
   */
  maxRunTokens?: number;
}

export class Decoder {
  readonly config: ModelConfig;
  /** Time this decoder's steps spent waiting for memory rows (compute is the rest). */
  memoryWaitMs = 0;
  private readonly session: StepSession;
  private readonly Tensor: TensorConstructor;
  private readonly rows: RowSource | null;
  private readonly clock: () => number;
  private readonly takesRows: boolean;
  private readonly batcher: StepBatcher | null;
  private readonly maxRunTokens: number;
  /**
   * The outputs a step uses: the logits and the whole cache. Not the inspector's figures, nor the
   * step's own keys and values (the batcher's): a prompt's would be a second copy of its cache.
   */
  private readonly fetches: string[];

  constructor(parts: DecoderParts) {
    ({ session: this.session, Tensor: this.Tensor, config: this.config, rows: this.rows } = parts);
    this.batcher = parts.batcher ?? null;
    this.maxRunTokens = parts.maxRunTokens || Number.POSITIVE_INFINITY;
    this.clock = parts.clock ?? (() => performance.now());
    this.takesRows = this.session.inputNames.includes(GRAPH_IO.memoryRows);
    this.fetches = [GRAPH_IO.logits, ...layerKvNames(this.config.num_hidden_layers, GRAPH_IO.presentKey, GRAPH_IO.presentValue)];
    if (this.takesRows && !this.rows) throw new Error('this compute graph takes memory rows, but no row source was given');
  }

  /** An empty sequence (a zero-length KV cache). */
  start(): DecoderState {
    const { num_key_value_heads: KV, head_dim: hd } = this.config;
    const empty = () => new this.Tensor('float32', new Float32Array(0), [1, KV, 0, hd]);
    const past: Record<string, Tensor> = {};
    for (let l = 0; l < this.config.num_hidden_layers; l++) {
      past[GRAPH_IO.pastKey(l)] = empty();
      past[GRAPH_IO.pastValue(l)] = empty();
    }
    return { length: 0, past };
  }

  /**
   * Appends `tokenIds` to the sequence in one session.run (prefill when many, decode when one)
   * and returns their logits, [T, V] row-major, or the last position's alone, [V].
   */
  async step(state: DecoderState, tokenIds: readonly number[], logits: 'all' | 'last' = 'all'): Promise<Float32Array> {
    const T = tokenIds.length;
    const limit = this.config.max_position_embeddings;
    if (T === 0) throw new Error('step needs at least one token');
    if (state.length + T > limit) {
      throw new InputError(`sequence of ${state.length + T} tokens exceeds the model's context of ${limit}`);
    }
    let rows: Float32Array | null = null;
    if (this.takesRows) {
      const started = this.clock();
      rows = await this.rows!.rows(tokenIds);
      this.memoryWaitMs += this.clock() - started;
    }
    // A decode step joins the batch; a prompt (even of one token) runs alone, in this request's own
    // context, through the session queue: a run started by another request's code could be
    // stranded if that request ended first, and the n choices of a request fork the prompt's state,
    // which must hold its own tensors (a batched state's live in its batch).
    if (T === 1 && state.length > 0 && this.batcher) return this.batcher.decode(state, tokenIds[0], rows);
    this.batcher?.materialize(state);
    if (T <= this.maxRunTokens) return this.lastOrAll(await this.run(state, tokenIds, rows, logits === 'last' ? T - 1 : 0), logits);
    const V = this.config.vocab_size;
    const R = this.rows?.rowValues ?? 0;
    const all = logits === 'all' ? new Float32Array(T * V) : null;
    let out: Float32Array = new Float32Array(0);
    for (let start = 0; start < T; start += this.maxRunTokens) {
      const end = Math.min(T, start + this.maxRunTokens);
      const part = rows ? rows.subarray(start * R, end * R) : null;
      // 'last' reads the final part's last position: every part computes its last one alone.
      out = await this.run(state, tokenIds.slice(start, end), part, all ? 0 : end - start - 1);
      all?.set(out, start * V);
    }
    return all ?? this.lastOrAll(out, 'last');
  }

  /** A graph without `logits_from` computed every position's: the last is the final row. */
  private lastOrAll(out: Float32Array, logits: 'all' | 'last'): Float32Array {
    return logits === 'last' ? out.subarray(out.length - this.config.vocab_size) : out;
  }

  /** One session.run of `tokenIds` after the sequence's own cache; logits from position `logitsFrom` on. */
  private async run(
    state: DecoderState,
    tokenIds: readonly number[],
    rows: Float32Array | null,
    logitsFrom: number,
  ): Promise<Float32Array> {
    const T = tokenIds.length;
    const feeds: Record<string, Tensor> = { ...state.past };
    Object.assign(feeds, unpaddedMask(this.session.inputNames, this.Tensor, 1, state.length + T));
    Object.assign(feeds, logitsFromFeed(this.session.inputNames, this.Tensor, logitsFrom));
    feeds[GRAPH_IO.inputIds] = new this.Tensor('int64', BigInt64Array.from(tokenIds, BigInt), [1, T]);
    feeds[GRAPH_IO.positionIds] = new this.Tensor(
      'int64',
      BigInt64Array.from(tokenIds, (_, i) => BigInt(state.length + i)),
      [1, T],
    );
    if (rows) feeds[GRAPH_IO.memoryRows] = new this.Tensor('float32', rows, [1, T, this.rows!.rowValues]);
    const out = await this.session.run(feeds, this.fetches);
    for (let l = 0; l < this.config.num_hidden_layers; l++) {
      state.past[GRAPH_IO.pastKey(l)] = out[GRAPH_IO.presentKey(l)];
      state.past[GRAPH_IO.pastValue(l)] = out[GRAPH_IO.presentValue(l)];
    }
    state.length += T;
    return out[GRAPH_IO.logits].data as Float32Array;
  }

  /** The sequence will not step again: a batch stops waiting for it. */
  finish(state: DecoderState): void {
    this.batcher?.leave(state);
  }
}
