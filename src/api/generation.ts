/**
 * One generation as the API runs it: the shared engine (Decoder + generateTokens) with text
 * streaming, stop sequences, cancellation and per-isolate counters. Yields text deltas.
 */
import type { TensorConstructor } from 'onnxruntime-common';
import type { RowSource } from '../bundle/row-source.ts';
import { Decoder, type StepTiming } from '../engine/decoder.ts';
import { generateTokens, TextStreamer, type FinishReason } from '../engine/generate.ts';
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
): AsyncGenerator<string, GenerationResult> {
  const decoder = new Decoder(bundle.session, Tensor, bundle.manifest.config, rows, clock);
  const eos = bundle.manifest.config.eos_token_id;
  const streamer = new TextStreamer((ids) => bundle.tokenizer.decode(ids));
  const stops = new StopSequences(params.stop);
  let completionTokens = 0;
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
      await yieldToEventLoop();
      const text = stops.push(streamer.push(next.value));
      if (text) yield text;
      if (stops.stopped) {
        finishReason = 'stop';
        break;
      }
    }
    const rest = stops.push(streamer.flush()) + stops.flush();
    if (rest) yield rest;
    return { finishReason: stops.stopped ? 'stop' : finishReason, completionTokens };
  } finally {
    release();
  }
}
