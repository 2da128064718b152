/**
 * One generation as the API runs it: the shared engine (Decoder + generateTokens) with text
 * streaming, stop sequences, cancellation and per-isolate counters. Yields text deltas.
 */
import type { TensorConstructor } from 'onnxruntime-common';
import type { RowSource } from '../bundle/row-source.ts';
import { Decoder, type StepTiming } from '../engine/decoder.ts';
import { generateTokens, TextStreamer, type FinishReason } from '../engine/generate.ts';
import { logProbability, topLogProbabilities } from '../engine/sampler.ts';
import { StopSequences } from '../engine/stop-sequences.ts';
import type { LoadedBundle } from '../serving/model-registry.ts';

export interface GenerationParams {
  promptIds: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: string[];
  signal?: AbortSignal;
  /** Report each token's log-probability and this many alternatives; null for none. */
  logprobs: number | null;
}

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
 * not be noticed and other requests would wait. One macrotask per token lets them in.
 */
const yieldToEventLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

export async function* generateText(
  bundle: LoadedBundle,
  rows: RowSource | null,
  Tensor: TensorConstructor,
  params: GenerationParams,
  timing: StepTiming,
  counters: GenerationCounters,
  clock: () => number,
): AsyncGenerator<TextDelta, GenerationResult> {
  const decoder = new Decoder(bundle.session, Tensor, bundle.manifest.config, rows, clock);
  const eos = bundle.manifest.config.eos_token_id;
  const streamer = new TextStreamer((ids) => bundle.tokenizer.decode(ids));
  const stops = new StopSequences(params.stop);
  let completionTokens = 0;
  let pendingTokens: TokenLogprob[] = [];
  const delta = (text: string): TextDelta => {
    const out = { text, tokens: pendingTokens };
    pendingTokens = [];
    return out;
  };
  let finishReason: FinishReason = 'length';
  // Released once: at the end, or as soon as the client goes away. After a disconnect workerd
  // cancels the request's I/O context, so a generation parked on a timer never runs again
  // (no compute burns) and its finally block may never run either.
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    counters.active--;
    if (params.signal?.aborted) counters.cancelled++;
  };
  counters.active++;
  params.signal?.addEventListener('abort', release);
  try {
    const tokens = generateTokens(decoder, params.promptIds, { ...params, stopTokenIds: eos === undefined ? [] : [eos], timing });
    while (true) {
      const next = await tokens.next();
      if (next.done) {
        finishReason = next.value;
        break;
      }
      completionTokens++;
      counters.tokensGenerated++;
      const { id, logits } = next.value;
      if (params.logprobs !== null) pendingTokens.push({ id, logprob: logProbability(logits, id), top: topLogProbabilities(logits, params.logprobs) });
      await yieldToEventLoop();
      const text = stops.push(streamer.push(id));
      if (text) yield delta(text);
      if (stops.stopped) {
        finishReason = 'stop';
        break;
      }
    }
    const rest = stops.push(streamer.flush()) + stops.flush();
    if (rest || pendingTokens.length) yield delta(rest);
    return { finishReason: stops.stopped ? 'stop' : finishReason, completionTokens };
  } finally {
    release();
  }
}
