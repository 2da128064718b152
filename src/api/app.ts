/**
 * The OpenAI-compatible HTTP API (Hono, Web-standard Request/Response). It only speaks HTTP:
 * it parses requests and writes OpenAI's shapes; serving is the ServingCore the platform adapter
 * (workers/edge.worker.ts) hands it.
 */
import { Hono, type Context } from 'hono';
import { InputError } from '../errors.ts';
import { UnknownModelError } from '../serving/model-registry.ts';
import { OriginUnavailableError } from '../serving/retry.ts';
import { DEFAULT_TEMPLATE_STOPS, renderChat } from './chat-template.ts';
import { complete } from './completion.ts';
import { requireApiKey } from './access.ts';
import { admitted } from './admit.ts';
import { methodNotAllowed } from './allowed-methods.ts';
import { requireJsonBody } from './content-type.ts';
import { corsHeaders } from './cors.ts';
import { REQUEST_ID_HEADER, type ApiHost } from './host.ts';
import { ApiError, internalErrorBody } from './errors.ts';
import { rateLimited } from './rate-limit.ts';
import { countFault, countRequests } from './observe.ts';
import { readJsonBody } from './read-body.ts';
import { ChatRequestSchema, CompletionRequestSchema, parseRequest, refuseUnsupported } from './request-schema.ts';
import { registerTokenizeRoutes } from './tokenize.ts';
import { registerMemoryRoutes } from './memory-routes.ts';
import { registerBundleObjectRoutes } from './bundle-objects.ts';

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
  app.use(countRequests);
  // Before the key check below: PUBLIC_BUNDLES may open bundle reads; otherwise the route checks the key itself.
  registerBundleObjectRoutes(app);
  // CORS first: a preflight carries no key, and refusals need CORS headers for a browser to read them.
  app.use(corsHeaders, requireApiKey, requireJsonBody);
  // After the key check, so a request is counted under a checked key; a refused one takes no generation slot.
  app.post('/v1/*', rateLimited);
  // The prompt view runs forward passes of the model, like a generation.
  app.on('POST', ['/v1/completions', '/v1/chat/completions', '/v1/memory/prompt'], admitted);

  app.get('/health', async (c) => {
    const { counters } = c.var.host.core;
    const models = await c.var.host.core.modelHealth(c.var.host.background);
    return c.json({
      // Degraded: some model cannot be served now; the others can (the isolate itself is fine).
      status: models.some((m) => m.status === 'unavailable') ? 'degraded' : 'ok',
      models,
      active_generations: counters.active,
      queued_generations: c.var.host.core.admission.queued,
      tokens_generated: counters.tokensGenerated,
      cancelled_generations: counters.cancelled,
    });
  });

  app.get(
    '/metrics',
    (c) => new Response(c.var.host.core.metrics.render(), { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } }),
  );

  app.get('/v1/models', async (c) => {
    const pointers = await c.var.host.core.listModels(c.var.host.background);
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

  registerTokenizeRoutes(app);
  registerMemoryRoutes(app);

  app.notFound(
    (c) =>
      methodNotAllowed(app.routes, c.req.raw) ??
      new ApiError(
        404,
        `Unknown route: ${c.req.method} ${new URL(c.req.url).pathname}`,
        'not_found_error',
        null,
        'unknown_url',
      ).toResponse(),
  );
  app.onError((error, c) => {
    const response = errorResponse(error, c.var.requestId);
    if (response.status >= 500) countFault(c, c.var.host?.core.metrics);
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
  // The origin did not answer in time: unlike a corrupt object, worth trying again.
  return Response.json(internalErrorBody(requestId), { status: error instanceof OriginUnavailableError ? 503 : 500 });
}
