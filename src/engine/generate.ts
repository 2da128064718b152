import { Random } from '../util/random.ts';
import type { Decoder, StepTiming } from './decoder.ts';
import { sampleToken, type SamplingOptions } from './sampler.ts';

export interface GenerateOptions extends SamplingOptions {
  maxTokens: number;
  seed: number;
  /** Token ids that end generation (not emitted). */
  stopTokenIds: readonly number[];
  signal?: AbortSignal;
  timing?: StepTiming;
}

export type FinishReason = 'stop' | 'length';

export interface GeneratedToken {
  id: number;
  /** The logits the token was drawn from (valid until the next step). */
  logits: Float32Array;
}

/**
 * Autoregressive generation: one prefill step over the prompt, then one cached decode step per
 * token. Yields each new token; returns why it finished. Stops early when `signal` aborts.
 */
export async function* generateTokens(decoder: Decoder, promptIds: readonly number[], options: GenerateOptions): AsyncGenerator<GeneratedToken, FinishReason> {
  const V = decoder.config.vocab_size;
  const rng = new Random(options.seed);
  const state = decoder.start();
  let logits = await decoder.step(state, promptIds, options.timing);
  let last = logits.subarray((promptIds.length - 1) * V);
  for (let produced = 0; produced < options.maxTokens; produced++) {
    if (options.signal?.aborted) return 'stop';
    const next = sampleToken(last, options, rng);
    if (options.stopTokenIds.includes(next)) return 'stop';
    yield { id: next, logits: last };
    if (produced + 1 === options.maxTokens || state.length + 1 > decoder.config.max_position_embeddings) break;
    logits = await decoder.step(state, [next], options.timing);
    last = logits;
  }
  return 'length';
}

/**
 * Turns a stream of token ids into text deltas. Byte-level tokens can split a UTF-8 character,
 * so tokens are held back while their text ends in an incomplete character. Only the held-back
 * tokens are decoded each time (byte-level decoding concatenates), so a token costs O(1).
 */
export class TextStreamer {
  private pending: number[] = [];

  constructor(private readonly decode: (ids: number[]) => string) {}

  push(id: number): string {
    this.pending.push(id);
    const text = this.decode(this.pending);
    if (text.endsWith('\uFFFD')) return '';
    this.pending = [];
    return text;
  }

  /** Whatever is left at the end (including an incomplete character, as decoded). */
  flush(): string {
    const text = this.pending.length ? this.decode(this.pending) : '';
    this.pending = [];
    return text;
  }
}
