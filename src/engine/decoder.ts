/**
 * Runs the compute graph one step at a time with a KV cache, feeding each step's memory rows.
 * The same code runs under onnxruntime-node (CLI) and onnxruntime-web (worker): the caller
 * passes its runtime's Tensor constructor and a session created from the bundle's graph.
 */
import type { InferenceSession, Tensor, TensorConstructor } from 'onnxruntime-common';
import type { RowSource } from '../bundle/row-source.ts';
import { InputError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { GRAPH_IO } from '../model/graph-io.ts';

/** A sequence being decoded: its KV cache and length. */
export interface DecoderState {
  length: number;
  past: Record<string, Tensor>;
}

/** What the decoder needs of an onnxruntime session (node or web). */
export type StepSession = Pick<InferenceSession, 'inputNames' | 'run' | 'release'>;

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

  constructor(parts: DecoderParts) {
    ({ session: this.session, Tensor: this.Tensor, config: this.config, rows: this.rows } = parts);
    this.clock = parts.clock ?? (() => performance.now());
    this.takesRows = this.session.inputNames.includes(GRAPH_IO.memoryRows);
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
   * and returns their logits, [T, V] row-major.
   */
  async step(state: DecoderState, tokenIds: readonly number[]): Promise<Float32Array> {
    const T = tokenIds.length;
    const limit = this.config.max_position_embeddings;
    if (T === 0) throw new Error('step needs at least one token');
    if (state.length + T > limit) {
      throw new InputError(`sequence of ${state.length + T} tokens exceeds the model's context of ${limit}`);
    }
    const feeds: Record<string, Tensor> = { ...state.past };
    feeds[GRAPH_IO.inputIds] = new this.Tensor('int64', BigInt64Array.from(tokenIds, BigInt), [1, T]);
    feeds[GRAPH_IO.positionIds] = new this.Tensor(
      'int64',
      BigInt64Array.from(tokenIds, (_, i) => BigInt(state.length + i)),
      [1, T],
    );
    if (this.takesRows) {
      const started = this.clock();
      const rows = await this.rows!.rows(tokenIds);
      this.memoryWaitMs += this.clock() - started;
      feeds[GRAPH_IO.memoryRows] = new this.Tensor('float32', rows, [1, T, this.rows!.rowValues]);
    }
    const out = await this.session.run(feeds);
    for (let l = 0; l < this.config.num_hidden_layers; l++) {
      state.past[GRAPH_IO.pastKey(l)] = out[GRAPH_IO.presentKey(l)];
      state.past[GRAPH_IO.pastValue(l)] = out[GRAPH_IO.presentValue(l)];
    }
    state.length += T;
    return out[GRAPH_IO.logits].data as Float32Array;
  }
}
