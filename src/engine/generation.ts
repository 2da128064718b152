/**
 * The generation loop, the one the worker and `flexmem run` both run: a prefill step over the
 * prompt, then one cached decode step per token, with logit bias and penalties, sampling, the
 * end-of-sequence token, stop sequences, logprobs, text streaming, per-isolate counters and
 * cancellation through one AbortSignal. It yields text deltas and returns why each choice finished.
 *
 * The n choices of a request share the prefill: each decodes its own copy of the KV cache (a step
 * replaces the state's tensors and never writes into them, so a shallow copy is a fork). Each
 * round samples every live choice in index order (so a stream interleaves them), then steps them
 * all at once, so a step batcher (src/engine/step-batcher.ts) runs them as one batch.
 */
import { Random } from '../util/random.ts';
import type { Decoder, DecoderState } from './decoder.ts';
import { LogitAdjuster, type LogitAdjustments } from './logit-adjustments.ts';
import { sampleToken, tokenLogprobs, type SamplingOptions } from './sampler.ts';
import { StopSequences } from './stop-sequences.ts';
import { TextStreamer } from './text-streamer.ts';

/** Everything one generation is asked to do: the per-request state travels in this one object. */
export interface GenerationRequest {
  promptIds: readonly number[];
  /** Per choice. */
  maxTokens: number;
  sampling: SamplingOptions & { seed: number };
  /** Logit bias and penalties (none when absent). */
  adjustments?: LogitAdjustments;
  /**
   * Independent completions of the prompt (1 when absent). Choice i draws from seed + i, as vLLM
   * seeds its parallel samples, so choice 0 is the completion n = 1 gives for the same seed.
   */
  n?: number;
  /** Strings that end the text (never emitted). */
  stop: readonly string[];
  /** Report each token's log-probability and this many alternatives; null for none. */
  logprobs: number | null;
  /** Aborts the generation: a client that went away, a cancelled stream, Ctrl-C. */
  signal?: AbortSignal;
  /**
   * Where the row of the token a decode step just fed came from (a memory tier), asked after each
   * decode step; with it, each delta reports the rows of the tokens it generated (`rows`).
   */
  fedRowTier?: () => string | null;
}

/** What the loop runs on: a decoder over one bundle version, and that bundle's tokenizer. */
export interface GenerationModel {
  decoder: Decoder;
  decode(ids: number[]): string;
  eosTokenId?: number;
}

export type FinishReason = 'stop' | 'length';

/** A generated token's log-probability under the model (softmax of the raw logits, before bias and penalties). */
export interface TokenLogprob {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

export interface ChoiceResult {
  finishReason: FinishReason;
  completionTokens: number;
}

/**
 * Where a generated token's memory row came from. The row of the k-th generated token is read by
 * the decode step that feeds it, after the token's own delta, so it is reported in a later delta;
 * the last token of a choice is never fed and has none.
 */
export interface FedRow {
  /** The token's place among its choice's generated tokens, from 0. */
  position: number;
  tier: string | null;
}

/** Text of one choice safe to emit, and the tokens it generated since its previous delta (when asked for). */
export interface TextDelta {
  index: number;
  text: string;
  tokens: TokenLogprob[];
  /** The ids of the tokens generated since the choice's previous delta. */
  ids: number[];
  /** Rows fed since the previous delta (only with `fedRowTier`). */
  rows: FedRow[];
  /** Set on a choice's last delta (whose text may be empty). */
  finish: ChoiceResult | null;
}

export interface GenerationResult {
  /** By index. */
  choices: ChoiceResult[];
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

/** One choice's sequence and everything that turns its tokens into text. */
interface Choice {
  index: number;
  state: DecoderState;
  /** The logits of its next position. */
  logits: Float32Array;
  rng: Random;
  adjuster: LogitAdjuster;
  streamer: TextStreamer;
  stops: StopSequences;
  completionTokens: number;
  pendingTokens: TokenLogprob[];
  pendingIds: number[];
  pendingRows: FedRow[];
  finish: ChoiceResult | null;
}

export async function* generate(
  model: GenerationModel,
  request: GenerationRequest,
  counters = new GenerationCounters(),
): AsyncGenerator<TextDelta, GenerationResult> {
  const { decoder } = model;
  const { signal } = request;
  const delta = (choice: Choice, text: string): TextDelta => {
    const out = {
      index: choice.index,
      text,
      tokens: choice.pendingTokens,
      ids: choice.pendingIds,
      rows: choice.pendingRows,
      finish: choice.finish,
    };
    choice.pendingTokens = [];
    choice.pendingIds = [];
    choice.pendingRows = [];
    return out;
  };
  /** Ends a choice: whatever text was held back, and why it finished. */
  const end = (choice: Choice, reason: FinishReason): TextDelta => {
    const rest = choice.stops.push(choice.streamer.flush()) + choice.stops.flush();
    choice.finish = { finishReason: choice.stops.stopped ? 'stop' : reason, completionTokens: choice.completionTokens };
    decoder.finish(choice.state);
    return delta(choice, rest);
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
  let choices: Choice[] = [];
  try {
    const prefill = decoder.start();
    const logits = await decoder.step(prefill, request.promptIds, 'last');
    const promptIds = new Set(request.promptIds);
    choices = Array.from({ length: request.n ?? 1 }, (_, index) => ({
      index,
      state: { length: prefill.length, past: { ...prefill.past } },
      logits,
      rng: new Random(request.sampling.seed + index),
      adjuster: new LogitAdjuster(request.adjustments ?? {}, promptIds),
      streamer: new TextStreamer((ids) => model.decode(ids)),
      stops: new StopSequences(request.stop),
      completionTokens: 0,
      pendingTokens: [],
      pendingIds: [],
      pendingRows: [],
      finish: null,
    }));
    let live = choices;
    while (live.length > 0) {
      const feeding: { choice: Choice; id: number }[] = [];
      for (const choice of live) {
        if (signal?.aborted) {
          yield end(choice, 'stop');
          continue;
        }
        const id = sampleToken(choice.adjuster.apply(choice.logits), request.sampling, choice.rng);
        if (id === model.eosTokenId) {
          yield end(choice, 'stop');
          continue;
        }
        choice.completionTokens++;
        counters.tokensGenerated++;
        choice.adjuster.accept(id);
        choice.pendingIds.push(id);
        if (request.logprobs !== null) {
          const { logits: raw } = choice;
          choice.pendingTokens.push({ id, ...tokenLogprobs(raw, id, request.logprobs) });
        }
        const text = choice.stops.push(choice.streamer.push(id));
        if (text) yield delta(choice, text);
        if (choice.stops.stopped) {
          yield end(choice, 'stop');
          continue;
        }
        if (choice.completionTokens === request.maxTokens || choice.state.length + 1 > decoder.config.max_position_embeddings) {
          yield end(choice, 'length');
          continue;
        }
        feeding.push({ choice, id });
      }
      if (feeding.length > 0) {
        await yieldToEventLoop();
        if (request.fedRowTier) {
          // The tier of a fed row is read from the request's tier counts around its step: one step at a time.
          for (const { choice, id } of feeding) {
            choice.logits = await decoder.step(choice.state, [id]);
            choice.pendingRows.push({ position: choice.completionTokens - 1, tier: request.fedRowTier() });
          }
        } else {
          const logits = await Promise.all(feeding.map(({ choice, id }) => decoder.step(choice.state, [id])));
          feeding.forEach(({ choice }, i) => {
            choice.logits = logits[i];
          });
        }
      }
      live = live.filter((c) => c.finish === null);
    }
    return { choices: choices.map((c) => c.finish!) };
  } finally {
    for (const choice of choices) decoder.finish(choice.state);
    signal?.removeEventListener('abort', release);
    release();
  }
}
