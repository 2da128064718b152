/**
 * One completion, as both endpoints answer it: pin the model's bundle, tokenize and check the
 * context, start the core's generation of its n choices, and answer as JSON or as server-sent
 * events (the choices' chunks interleaved, each choice closed by its own finish chunk).
 */
import type { ChoiceResult, FedRow, GenerationRequest, TokenLogprob } from '../engine/generation.ts';
import { samplingWithDefaults } from '../engine/sampler.ts';
import type { LoadedBundle } from '../serving/serving-core.ts';
import { OVERRIDES_HEADER, VERSION_HEADER, type ApiHost } from './host.ts';
import { ApiError, internalErrorBody } from './errors.ts';
import { requestMemory } from './memory-overrides.ts';
import { completionObserver } from './observe.ts';
import { refuseOversizedPrompt } from './prompt-bound.ts';
import {
  completeResponse,
  deltaChunk,
  finishChunk,
  formatLogprobs,
  serverTimingHeader,
  startChunk,
  timingSummary,
  tokenTextOf,
  usageChunk,
  type ChunkProvenance,
  type Endpoint,
  type ResponseContext,
  type TokenProvenance,
} from './openai-format.ts';
import type { ChatRequest, CompletionRequest } from './request-schema.ts';

type SharedRequest = Pick<
  CompletionRequest & ChatRequest,
  | 'model'
  | 'max_tokens'
  | 'temperature'
  | 'top_p'
  | 'top_k'
  | 'min_p'
  | 'seed'
  | 'stop'
  | 'n'
  | 'stream'
  | 'stream_options'
  | 'presence_penalty'
  | 'frequency_penalty'
  | 'repetition_penalty'
  | 'logit_bias'
  | 'flexmem'
> & {
  /** Alternatives to report per token, or null for no logprobs. */
  logprobs: number | null;
};

export interface CompletionCall {
  host: ApiHost;
  requestId: string;
  /** The HTTP request's signal: it aborts when the client disconnects. */
  signal: AbortSignal | undefined;
  endpoint: Endpoint;
  request: SharedRequest;
  /** The prompt text and extra stop strings, once the bundle (and its chat template) is known. */
  promptOf: (bundle: LoadedBundle) => { prompt: string; stops: string[] };
}

export async function complete({ host, requestId, signal, endpoint, request, promptOf }: CompletionCall): Promise<Response> {
  const { core } = host;
  const started = core.clock();
  const bundle = await core.current(request.model, host.background); // pins one version for the whole response
  const { prompt, stops } = promptOf(bundle);
  refuseOversizedPrompt(bundle, prompt, endpoint); // before tokenizing: 1 MB costs seconds of CPU
  const promptIds = bundle.tokenizer.encode(prompt);
  const maxTokens = checkContext(bundle, promptIds.length, request.max_tokens, endpoint, host.limits.defaultMaxTokens);
  const bias = logitBiasOf(bundle, request.logit_bias);
  const memory = requestMemory(host, bundle, request.flexmem);

  // One signal cancels the generation: the client went away, or the stream was cancelled.
  const cancel = new AbortController();
  signal?.addEventListener('abort', () => cancel.abort());
  const requestStops = request.stop == null ? [] : typeof request.stop === 'string' ? [request.stop] : request.stop;
  const n = request.n ?? 1;
  const generation: GenerationRequest = {
    promptIds,
    maxTokens,
    sampling: samplingWithDefaults({
      temperature: request.temperature,
      topP: request.top_p,
      topK: request.top_k,
      minP: request.min_p,
      seed: request.seed,
    }),
    adjustments: {
      bias,
      presencePenalty: request.presence_penalty ?? 0,
      frequencyPenalty: request.frequency_penalty ?? 0,
      repetitionPenalty: request.repetition_penalty ?? 1,
    },
    n,
    stop: [...requestStops, ...stops],
    logprobs: request.logprobs,
    signal: cancel.signal,
    fedRowTier: memory.fedRowTier,
  };
  const { deltas, metrics } = core.generate(bundle, generation, host.background, memory.readRows);
  const route = endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
  const observer = completionObserver(core.metrics, route, request.model, core.clock, started);

  const tokenText = tokenTextOf((id) => bundle.tokenizer.tokenBytes(id));
  const logprobsOf = (tokens: TokenLogprob[], textOffset = 0) =>
    request.logprobs === null ? null : formatLogprobs(endpoint, tokens, tokenText, textOffset);
  const r: ResponseContext = {
    endpoint,
    id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID().replace(/-/g, '')}`,
    created: Math.floor(Date.now() / 1000),
    model: request.model,
    version: bundle.version,
    overrides: memory.summary,
  };
  const headers: Record<string, string> = {
    [VERSION_HEADER]: bundle.version,
    ...(memory.summary && { [OVERRIDES_HEADER]: String(memory.summary.edits) }),
  };
  // Per choice: how many tokens it generated so far, and (without streaming) each token's provenance.
  const generated = Array.from({ length: n }, () => 0);
  const provenanceOf = (index: number, ids: number[], rows: FedRow[]): ChunkProvenance | null => {
    if (!memory.fedRowTier) return null;
    const tokens = ids.map((id) => ({ position: generated[index]++, id, text: tokenText(id).token }));
    return { tokens, rows };
  };
  const usage = (completionTokens: number) => ({
    prompt_tokens: promptIds.length,
    completion_tokens: completionTokens,
    total_tokens: promptIds.length + completionTokens,
  });
  const summary = () => timingSummary(core.clock() - started, metrics());
  const completionTokens = (choices: ChoiceResult[]) => choices.reduce((sum, c) => sum + c.completionTokens, 0);

  if (!request.stream) {
    const texts = Array.from({ length: n }, () => '');
    const tokens = Array.from({ length: n }, (): TokenLogprob[] => []);
    const provenance = Array.from({ length: n }, (): (TokenProvenance & { tier: string | null })[] => []);
    let next = await deltas.next();
    for (; !next.done; next = await deltas.next()) {
      const { index, ids, rows } = next.value;
      observer.delta();
      texts[index] += next.value.text;
      tokens[index].push(...next.value.tokens);
      const p = provenanceOf(index, ids, rows);
      if (p) {
        provenance[index].push(...p.tokens.map((t) => ({ ...t, tier: null })));
        for (const row of p.rows) provenance[index][row.position].tier = row.tier;
      }
    }
    const choices = next.value.choices.map((c, i) => ({ text: texts[i], finishReason: c.finishReason, logprobs: logprobsOf(tokens[i]) }));
    const t = summary();
    observer.finished(bundle.version, promptIds.length, completionTokens(next.value.choices), metrics());
    return Response.json(
      completeResponse(r, choices, usage(completionTokens(next.value.choices)), t, memory.fedRowTier ? provenance : null),
      {
        headers: { ...headers, 'server-timing': serverTimingHeader(t) },
      },
    );
  }

  const encoder = new TextEncoder();
  const event = (data: object | string) => encoder.encode(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  let startSent = false;
  let finished = 0;
  const streamedText = Array.from({ length: n }, () => 0);
  const body = new ReadableStream<Uint8Array>(
    {
      // Pull-based: the next token is computed only when the stream wants another chunk.
      async pull(controller) {
        try {
          if (!startSent) {
            startSent = true;
            for (let index = 0; index < n; index++) controller.enqueue(event(startChunk(r, index)));
            return;
          }
          const next = await deltas.next();
          if (!next.done) {
            const { index, text, tokens, ids, rows, finish } = next.value;
            observer.delta();
            const provenance = provenanceOf(index, ids, rows);
            if (text || tokens.length || (provenance && !finish && (provenance.tokens.length || provenance.rows.length))) {
              controller.enqueue(event(deltaChunk(r, index, text, logprobsOf(tokens, streamedText[index]), finish ? null : provenance)));
              streamedText[index] += text.length;
            }
            if (finish)
              controller.enqueue(event(finishChunk(r, index, finish.finishReason, ++finished === n ? summary() : null, provenance)));
            return;
          }
          observer.finished(bundle.version, promptIds.length, completionTokens(next.value.choices), metrics());
          if (request.stream_options?.include_usage) controller.enqueue(event(usageChunk(r, usage(completionTokens(next.value.choices)))));
          controller.enqueue(event('[DONE]'));
          controller.close();
        } catch (error) {
          // The status line has gone out: the fault is reported in the stream, the details in the log.
          console.error(`request ${requestId} failed while generating:`, error);
          observer.fault();
          controller.enqueue(event(internalErrorBody(requestId)));
          controller.close();
        }
      },
      cancel() {
        cancel.abort();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, {
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...headers },
  });
}

/** The tokens the completion may generate; refuses a prompt that is empty or leaves no room. */
function checkContext(
  bundle: LoadedBundle,
  promptTokens: number,
  maxTokens: number | null | undefined,
  endpoint: Endpoint,
  defaultMaxTokens: number,
): number {
  const context = bundle.manifest.config.max_position_embeddings;
  const promptParam = endpoint === 'chat' ? 'messages' : 'prompt';
  if (promptTokens === 0) throw new ApiError(400, 'The prompt is empty.', 'invalid_request_error', promptParam);
  if (promptTokens >= context) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${context} tokens. However, your prompt resulted in ${promptTokens} tokens.`,
      'invalid_request_error',
      promptParam,
      'context_length_exceeded',
    );
  }
  if (maxTokens && promptTokens + maxTokens > context) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${context} tokens. However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the prompt, ${maxTokens} for the completion).`,
      'invalid_request_error',
      'max_tokens',
      'context_length_exceeded',
    );
  }
  return maxTokens ?? Math.min(defaultMaxTokens, context - promptTokens);
}

/** logit_bias as token id → bias, refusing an id outside the model's vocabulary. */
function logitBiasOf(bundle: LoadedBundle, bias: Record<string, number> | null | undefined): Map<number, number> {
  const V = bundle.manifest.config.vocab_size;
  const map = new Map<number, number>();
  for (const [key, value] of Object.entries(bias ?? {})) {
    const id = Number(key);
    if (!Number.isSafeInteger(id) || id >= V) {
      throw new ApiError(
        400,
        `Invalid key in 'logit_bias': token id ${key} is outside the model's vocabulary of ${V} tokens.`,
        'invalid_request_error',
        'logit_bias',
        'invalid_value',
      );
    }
    map.set(id, value);
  }
  return map;
}
