/**
 * The generation loop, the one the worker and `flexmem run` both run: a prefill step over the
 * prompt, then one cached decode step per token, with sampling, the end-of-sequence token, stop
 * sequences, logprobs, text streaming, per-isolate counters and cancellation through one
 * AbortSignal. It yields text deltas and returns why it finished.
 */
import { Random } from '../util/random.ts';
import type { Decoder } from './decoder.ts';
import { logProbability, sampleToken, topLogProbabilities, type SamplingOptions } from './sampler.ts';
import { StopSequences } from './stop-sequences.ts';
import { TextStreamer } from './text-streamer.ts';

/** Everything one generation is asked to do: the per-request state travels in this one object. */
export interface GenerationRequest {
  promptIds: readonly number[];
  maxTokens: number;
  sampling: SamplingOptions & { seed: number };
  /** Strings that end the text (never emitted). */
  stop: readonly string[];
  /** Report each token's log-probability and this many alternatives; null for none. */
  logprobs: number | null;
  /** Aborts the generation: a client that went away, a cancelled stream, Ctrl-C. */
  signal?: AbortSignal;
}

/** What the loop runs on: a decoder over one bundle version, and that bundle's tokenizer. */
export interface GenerationModel {
  decoder: Decoder;
  decode(ids: number[]): string;
  eosTokenId?: number;
}

export type FinishReason = 'stop' | 'length';

/** A generated token's log-probability under the model (softmax of the raw logits). */
export interface TokenLogprob {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** Text safe to emit, and the tokens generated since the previous delta (when asked for). */
export interface TextDelta {
  text: string;
  tokens: TokenLogprob[];
}

export interface GenerationResult {
  finishReason: FinishReason;
  completionTokens: number;
}

/** What /health reports about this isolate's generations. */
export class GenerationCounters {
  active = 0;
  tokensGenerated = 0;
  cancelled = 0;
}

/**
 * A decode step awaits only microtasks (the wasm session resolves at once), so without this a
 * generation would hold the isolate until it ends: chunks would not flush, a disconnect would
 * not be noticed and other requests would wait. One macrotask per token lets them in (about
 * 4 µs in workerd, docs/BENCHMARKS.md).
 */
const yieldToEventLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export async function* generate(
  model: GenerationModel,
  request: GenerationRequest,
  counters = new GenerationCounters(),
): AsyncGenerator<TextDelta, GenerationResult> {
  const { decoder } = model;
  const { signal } = request;
  const V = decoder.config.vocab_size;
  const rng = new Random(request.sampling.seed);
  const streamer = new TextStreamer((ids) => model.decode(ids));
  const stops = new StopSequences(request.stop);
  let completionTokens = 0;
  let pendingTokens: TokenLogprob[] = [];
  const delta = (text: string): TextDelta => {
    const out = { text, tokens: pendingTokens };
    pendingTokens = [];
    return out;
  };
  // Released once: at the end, or as soon as the signal aborts. After a disconnect workerd
  // cancels the request's I/O context, so a generation parked on a timer never runs again
  // (no compute burns) and its finally block may never run either.
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    counters.active--;
    if (signal?.aborted) counters.cancelled++;
  };
  counters.active++;
  signal?.addEventListener('abort', release);
  try {
    let finishReason: FinishReason = 'length';
    const state = decoder.start();
    let logits = await decoder.step(state, request.promptIds);
    logits = logits.subarray((request.promptIds.length - 1) * V);
    while (completionTokens < request.maxTokens && !signal?.aborted) {
      const id = sampleToken(logits, request.sampling, rng);
      if (id === model.eosTokenId) {
        finishReason = 'stop';
        break;
      }
      completionTokens++;
      counters.tokensGenerated++;
      if (request.logprobs !== null)
        pendingTokens.push({ id, logprob: logProbability(logits, id), top: topLogProbabilities(logits, request.logprobs) });
      const text = stops.push(streamer.push(id));
      if (text) yield delta(text);
      if (stops.stopped) break;
      if (completionTokens === request.maxTokens || state.length + 1 > decoder.config.max_position_embeddings) break;
      await yieldToEventLoop();
      logits = await decoder.step(state, [id]);
    }
    if (signal?.aborted) finishReason = 'stop';
    const rest = stops.push(streamer.flush()) + stops.flush();
    if (rest || pendingTokens.length) yield delta(rest);
    return { finishReason: stops.stopped ? 'stop' : finishReason, completionTokens };
  } finally {
    signal?.removeEventListener('abort', release);
    release();
  }
}
