/**
 * The OpenAI-compatible HTTP API (Hono, Web-standard Request/Response), independent of where it
 * runs: the worker (workers/edge.worker.ts) supplies a Serving built from its bindings.
 */
import { Hono, type Context } from 'hono';
import type { TensorConstructor } from 'onnxruntime-common';
import type { RowSource } from '../bundle/row-source.ts';
import type { StepTiming } from '../engine/decoder.ts';
import { FlexmemError } from '../errors.ts';
import { emptyTierStats, type TierStats } from '../memory/memory-hierarchy.ts';
import { UnknownModelError, type LoadedBundle, type ModelRegistry } from '../serving/model-registry.ts';
import { DEFAULT_TEMPLATE_STOPS, renderChat } from './chat-template.ts';
import { ApiError } from './errors.ts';
import { generateText, type GenerationCounters, type GenerationParams, type TokenLogprob } from './generation.ts';
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
  type Endpoint,
  type ResponseContext,
} from './openai-format.ts';
import { ChatRequestSchema, CompletionRequestSchema, parseRequest, refuseUnsupported, type ChatRequest, type CompletionRequest } from './request-schema.ts';

export interface Serving {
  registry: ModelRegistry;
  /** The memory rows of one request, pinned to the bundle's version; null for a model without memory. */
  rowsFor(bundle: LoadedBundle, stats: TierStats): RowSource | null;
  Tensor: TensorConstructor;
  counters: GenerationCounters;
  /** Milliseconds; inside workerd it advances only across I/O. */
  clock: () => number;
  maxBodyBytes: number;
  /** max_tokens when a request does not say. */
  defaultMaxTokens: number;
}

export const VERSION_HEADER = 'x-flexmem-bundle-version';

export function createApiApp<E extends object>(servingFor: (c: Context<{ Bindings: E }>) => Serving): Hono<{ Bindings: E }> {
  const app = new Hono<{ Bindings: E }>();

  app.get('/health', (c) => {
    const { counters } = servingFor(c);
    return c.json({ status: 'ok', active_generations: counters.active, tokens_generated: counters.tokensGenerated, cancelled_generations: counters.cancelled });
  });

  app.get('/v1/models', async (c) => {
    const pointers = await servingFor(c).registry.list();
    const data = pointers.map((p) => ({ id: p.model, object: 'model', created: Math.floor(Date.parse(p.updatedAt) / 1000) || 0, owned_by: 'flexmem', bundle_version: p.version }));
    return c.json({ object: 'list', data });
  });

  app.post('/v1/completions', async (c) => {
    const request = parseRequest(CompletionRequestSchema, await readJson(c.req.raw, servingFor(c).maxBodyBytes));
    refuseUnsupported(request);
    const prompt = typeof request.prompt === 'string' ? request.prompt : request.prompt[0];
    return complete(c.req.raw, servingFor(c), 'text', { ...request, logprobs: request.logprobs ?? null }, () => ({ prompt, stops: [] }));
  });

  app.post('/v1/chat/completions', async (c) => {
    const request = parseRequest(ChatRequestSchema, await readJson(c.req.raw, servingFor(c).maxBodyBytes));
    refuseUnsupported(request);
    if (request.top_logprobs != null && !request.logprobs) throw new ApiError(400, "top_logprobs requires logprobs to be true.", 'invalid_request_error', 'top_logprobs', 'invalid_value');
    const logprobs = request.logprobs ? (request.top_logprobs ?? 0) : null;
    return complete(c.req.raw, servingFor(c), 'chat', { ...request, logprobs, max_tokens: request.max_completion_tokens ?? request.max_tokens }, (bundle) => {
      const template = bundle.manifest.chatTemplate;
      return { prompt: renderChat(request.messages, template), stops: template ? [] : DEFAULT_TEMPLATE_STOPS };
    });
  });

  app.notFound((c) => new ApiError(404, `Unknown route: ${c.req.method} ${new URL(c.req.url).pathname}`, 'not_found_error', null, 'unknown_url').toResponse());
  app.onError((error) => {
    if (error instanceof ApiError) return error.toResponse();
    if (error instanceof UnknownModelError) return new ApiError(404, error.message, 'not_found_error', 'model', 'model_not_found').toResponse();
    console.error('request failed:', error);
    const message = error instanceof FlexmemError ? error.message : 'The server had an error while processing your request.';
    return new ApiError(500, message, 'server_error').toResponse();
  });
  return app;
}

async function readJson(request: Request, maxBytes: number): Promise<unknown> {
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > maxBytes) throw new ApiError(413, `Request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes.`, 'invalid_request_error', null, 'request_too_large');
  const text = await request.text();
  if (new TextEncoder().encode(text).byteLength > maxBytes) throw new ApiError(413, `Request body exceeds the limit of ${maxBytes} bytes.`, 'invalid_request_error', null, 'request_too_large');
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'We could not parse the JSON body of your request. (HINT: This likely means you aren\'t using your HTTP library correctly.)', 'invalid_request_error', null, 'invalid_json');
  }
}

type SharedRequest = Pick<CompletionRequest & ChatRequest, 'model' | 'max_tokens' | 'temperature' | 'top_p' | 'top_k' | 'seed' | 'stop' | 'stream' | 'stream_options'> & {
  /** Alternatives to report per token, or null for no logprobs. */
  logprobs: number | null;
};

/** Tokenizes, checks the context, generates, and answers as JSON or as server-sent events. */
async function complete(raw: Request, serving: Serving, endpoint: Endpoint, request: SharedRequest, promptOf: (bundle: LoadedBundle) => { prompt: string; stops: string[] }): Promise<Response> {
  const started = serving.clock();
  const bundle = await serving.registry.current(request.model); // pins one version for the whole response
  const { prompt, stops } = promptOf(bundle);
  const promptIds = bundle.tokenizer.encode(prompt);
  const context = bundle.manifest.config.max_position_embeddings;
  if (promptIds.length === 0) throw new ApiError(400, 'The prompt is empty.', 'invalid_request_error', endpoint === 'chat' ? 'messages' : 'prompt');
  if (promptIds.length >= context) {
    throw new ApiError(400, `This model's maximum context length is ${context} tokens. However, your prompt resulted in ${promptIds.length} tokens.`, 'invalid_request_error', endpoint === 'chat' ? 'messages' : 'prompt', 'context_length_exceeded');
  }
  if (request.max_tokens && promptIds.length + request.max_tokens > context) {
    throw new ApiError(400, `This model's maximum context length is ${context} tokens. However, you requested ${promptIds.length + request.max_tokens} tokens (${promptIds.length} in the prompt, ${request.max_tokens} for the completion).`, 'invalid_request_error', 'max_tokens', 'context_length_exceeded');
  }
  const abort = new AbortController();
  const requestStops = request.stop === undefined || request.stop === null ? [] : typeof request.stop === 'string' ? [request.stop] : request.stop;
  const params: GenerationParams = {
    promptIds,
    maxTokens: request.max_tokens ?? Math.min(serving.defaultMaxTokens, context - promptIds.length),
    temperature: request.temperature ?? 1,
    topP: request.top_p ?? 1,
    topK: request.top_k ?? 0,
    seed: request.seed ?? Math.floor(Math.random() * 2 ** 31),
    stop: [...requestStops, ...stops],
    signal: abort.signal,
    logprobs: request.logprobs,
  };
  const tokenText = tokenTextOf((id) => bundle.tokenizer.tokenBytes(id));
  const logprobsOf = (tokens: TokenLogprob[], textOffset = 0) => (request.logprobs === null ? null : formatLogprobs(endpoint, tokens, tokenText, textOffset));
  const stats = emptyTierStats();
  const timing: StepTiming = { memoryMs: 0 };
  const text = generateText(bundle, serving.rowsFor(bundle, stats), serving.Tensor, params, timing, serving.counters, serving.clock);
  const r: ResponseContext = { endpoint, id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model: request.model, version: bundle.version };
  const usage = (completionTokens: number) => ({ prompt_tokens: promptIds.length, completion_tokens: completionTokens, total_tokens: promptIds.length + completionTokens });
  const summary = () => timingSummary(serving.clock() - started, timing.memoryMs, stats);
  // A client that goes away ends the generation, whether it is computing or waiting to be read.
  const stop = () => {
    abort.abort();
    return text.return({ finishReason: 'stop', completionTokens: 0 });
  };
  raw.signal?.addEventListener('abort', () => void stop());

  if (!request.stream) {
    let output = '';
    const tokens: TokenLogprob[] = [];
    let next = await text.next();
    for (; !next.done; next = await text.next()) {
      output += next.value.text;
      tokens.push(...next.value.tokens);
    }
    const t = summary();
    return Response.json(completeResponse(r, output, next.value.finishReason, usage(next.value.completionTokens), t, logprobsOf(tokens)), {
      headers: { [VERSION_HEADER]: bundle.version, 'server-timing': serverTimingHeader(t) },
    });
  }

  const encoder = new TextEncoder();
  const event = (data: object | string) => encoder.encode(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  let startSent = false;
  let streamedText = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      // Pull-based: the next token is computed only when the client is ready for it, and a
      // client that goes away cancels the stream, which stops the generation.
      async pull(controller) {
        try {
          if (!startSent) {
            startSent = true;
            return controller.enqueue(event(startChunk(r)));
          }
          const next = await text.next();
          if (!next.done) {
            controller.enqueue(event(deltaChunk(r, next.value.text, logprobsOf(next.value.tokens, streamedText))));
            streamedText += next.value.text.length;
            return;
          }
          controller.enqueue(event(finishChunk(r, next.value.finishReason, summary())));
          if (request.stream_options?.include_usage) controller.enqueue(event(usageChunk(r, usage(next.value.completionTokens))));
          controller.enqueue(event('[DONE]'));
          controller.close();
        } catch (error) {
          console.error('generation failed:', error);
          const message = error instanceof FlexmemError ? error.message : 'The server had an error while generating.';
          controller.enqueue(event({ error: { message, type: 'server_error', param: null, code: null } }));
          controller.close();
        }
      },
      async cancel() {
        await stop();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, {
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', [VERSION_HEADER]: bundle.version },
  });
}
