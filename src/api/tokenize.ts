/**
 * POST /tokenize and POST /detokenize in vLLM's shapes, with the tokenizer of the bundle the
 * model serves now: the ids are exactly those the completion endpoints feed the model (no special
 * tokens added; for `messages`, the rendered chat prompt with its generation prompt).
 *
 *   /tokenize    {model, prompt} or {model, messages}, optional return_token_strs
 *                → {count, max_model_len, tokens, token_strs?}
 *   /detokenize  {model, tokens} → {prompt}
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import type { ApiEnv } from './app.ts';
import { renderChat } from './chat-template.ts';
import { ApiError } from './errors.ts';
import { VERSION_HEADER } from './host.ts';
import { tokenTextOf } from './openai-format.ts';
import { readJsonBody } from './read-body.ts';
import { MessagesSchema, parseRequest } from './request-schema.ts';

const TokenizeRequestSchema = z.object({
  model: z.string().min(1),
  prompt: z.string().optional(),
  messages: MessagesSchema.optional(),
  return_token_strs: z.boolean().nullish(),
});

const DetokenizeRequestSchema = z.object({
  model: z.string().min(1),
  tokens: z.array(z.number().int().min(0)),
});

export function registerTokenizeRoutes<E extends object>(app: Hono<ApiEnv<E>>): void {
  app.post('/tokenize', async (c) => {
    const { host } = c.var;
    const request = parseRequest(TokenizeRequestSchema, await readJsonBody(c.req.raw, host.limits.maxBodyBytes));
    if ((request.prompt === undefined) === (request.messages === undefined))
      throw new ApiError(400, 'Send either prompt or messages.', 'invalid_request_error', 'prompt', 'invalid_value');
    const bundle = await host.core.current(request.model);
    const text = request.messages ? renderChat(request.messages, bundle.manifest.chatTemplate) : (request.prompt as string);
    const tokens = bundle.tokenizer.encode(text);
    const tokenText = tokenTextOf((id) => bundle.tokenizer.tokenBytes(id));
    const body = {
      count: tokens.length,
      max_model_len: bundle.manifest.config.max_position_embeddings,
      tokens,
      ...(request.return_token_strs && { token_strs: tokens.map((id) => tokenText(id).token) }),
    };
    return c.json(body, 200, { [VERSION_HEADER]: bundle.version });
  });

  app.post('/detokenize', async (c) => {
    const { host } = c.var;
    const request = parseRequest(DetokenizeRequestSchema, await readJsonBody(c.req.raw, host.limits.maxBodyBytes));
    const bundle = await host.core.current(request.model);
    const V = bundle.manifest.config.vocab_size;
    const outside = request.tokens.findIndex((id) => id >= V);
    if (outside !== -1) {
      throw new ApiError(
        400,
        `Invalid value for 'tokens.${outside}': token id ${request.tokens[outside]} is outside the model's vocabulary of ${V} tokens.`,
        'invalid_request_error',
        `tokens.${outside}`,
        'invalid_value',
      );
    }
    return c.json({ prompt: bundle.tokenizer.decode(request.tokens) }, 200, { [VERSION_HEADER]: bundle.version });
  });
}
