/**
 * The OpenAI-compatible HTTP API (Hono, Web-standard Request/Response). It only speaks HTTP:
 * it parses requests and writes OpenAI's shapes; serving is the ServingCore the platform adapter
 * (workers/edge.worker.ts) hands it.
 */
import { Hono, type Context } from 'hono';
import { InputError } from '../errors.ts';
import { UnknownModelError } from '../serving/model-registry.ts';
import { DEFAULT_TEMPLATE_STOPS, renderChat } from './chat-template.ts';
import { complete } from './completion.ts';
import { REQUEST_ID_HEADER, type ApiHost } from './host.ts';
import { ApiError, internalErrorBody } from './errors.ts';
import { readJsonBody } from './read-body.ts';
import { ChatRequestSchema, CompletionRequestSchema, parseRequest, refuseUnsupported } from './request-schema.ts';

export type ApiEnv<E> = { Bindings: E; Variables: { host: ApiHost; requestId: string } };

export function createApiApp<E extends object>(hostFor: (c: Context<ApiEnv<E>>) => ApiHost): Hono<ApiEnv<E>> {
  const app = new Hono<ApiEnv<E>>();

  app.use(async (c, next) => {
    const requestId = `req_${crypto.randomUUID().replace(/-/g, '')}`;
    c.set('requestId', requestId);
    c.set('host', hostFor(c));
    await next();
    c.header(REQUEST_ID_HEADER, requestId);
  });

  app.get('/health', (c) => {
    const { counters } = c.var.host.core;
    return c.json({
      status: 'ok',
      active_generations: counters.active,
      tokens_generated: counters.tokensGenerated,
      cancelled_generations: counters.cancelled,
    });
  });

  app.get('/v1/models', async (c) => {
    const pointers = await c.var.host.core.listModels();
    const data = pointers.map((p) => ({
      id: p.model,
      object: 'model',
      created: Math.floor(Date.parse(p.updatedAt) / 1000) || 0,
      owned_by: 'flexmem',
      bundle_version: p.version,
    }));
    return c.json({ object: 'list', data });
  });

  app.post('/v1/completions', async (c) => {
    const { host, requestId } = c.var;
    const request = parseRequest(CompletionRequestSchema, await readJsonBody(c.req.raw, host.limits.maxBodyBytes));
    refuseUnsupported(request);
    const prompt = typeof request.prompt === 'string' ? request.prompt : request.prompt[0];
    return complete({
      host,
      requestId,
      signal: c.req.raw.signal,
      endpoint: 'text',
      request: { ...request, logprobs: request.logprobs ?? null },
      promptOf: () => ({ prompt, stops: [] }),
    });
  });

  app.post('/v1/chat/completions', async (c) => {
    const { host, requestId } = c.var;
    const request = parseRequest(ChatRequestSchema, await readJsonBody(c.req.raw, host.limits.maxBodyBytes));
    refuseUnsupported(request);
    if (request.top_logprobs != null && !request.logprobs)
      throw new ApiError(400, 'top_logprobs requires logprobs to be true.', 'invalid_request_error', 'top_logprobs', 'invalid_value');
    const logprobs = request.logprobs ? (request.top_logprobs ?? 0) : null;
    return complete({
      host,
      requestId,
      signal: c.req.raw.signal,
      endpoint: 'chat',
      request: { ...request, logprobs, max_tokens: request.max_completion_tokens ?? request.max_tokens },
      promptOf: (bundle) => {
        const template = bundle.manifest.chatTemplate;
        return { prompt: renderChat(request.messages, template), stops: template ? [] : DEFAULT_TEMPLATE_STOPS };
      },
    });
  });

  app.notFound((c) =>
    new ApiError(404, `Unknown route: ${c.req.method} ${new URL(c.req.url).pathname}`, 'not_found_error', null, 'unknown_url').toResponse(),
  );
  app.onError((error, c) => {
    const response = errorResponse(error, c.var.requestId);
    if (c.var.requestId) response.headers.set(REQUEST_ID_HEADER, c.var.requestId);
    return response;
  });
  return app;
}

/** Input errors answer with their message; anything else is logged with the request id and answered with only that id. */
function errorResponse(error: Error, requestId: string | undefined): Response {
  if (error instanceof ApiError) return error.toResponse();
  if (error instanceof UnknownModelError)
    return new ApiError(404, error.message, 'not_found_error', 'model', 'model_not_found').toResponse();
  if (error instanceof InputError) return new ApiError(error.status, error.message, 'invalid_request_error').toResponse();
  console.error(`request ${requestId} failed:`, error);
  return Response.json(internalErrorBody(requestId), { status: 500 });
}
