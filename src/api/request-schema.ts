/**
 * The request bodies of /v1/completions and /v1/chat/completions, validated with zod. A bad
 * field becomes a 400 that names it, as OpenAI's API does.
 */
import { z } from 'zod';
import { ApiError } from './errors.ts';

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish();

const common = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Not in OpenAI's API, common in others (vLLM, llama.cpp): keep the k most likely tokens. */
  top_k: z.number().int().min(0).nullish(),
  seed: z.number().int().nullish(),
  stop,
  n: z.number().int().min(1).max(128).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  user: z.string().nullish(),
};

export const CompletionRequestSchema = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, 'only one prompt per request is supported')]),
  logprobs: z.number().int().min(0).max(5).nullish(),
  echo: z.boolean().nullish(),
});

const content = z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() })).min(1)]);

export const ChatRequestSchema = z.object({
  ...common,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: z
    .array(z.object({ role: z.enum(['system', 'developer', 'user', 'assistant']), content, name: z.string().optional() }))
    .min(1, 'messages must contain at least one message'),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
});

export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;
export type ChatRequest = z.infer<typeof ChatRequestSchema>;

/** Parses a body against a schema; throws the 400 OpenAI would send for the first bad field. */
export function parseRequest<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new ApiError(400, 'The request body must be a JSON object.', 'invalid_request_error', null, 'invalid_body');
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const param = issue.path.join('.') || null;
  const missing = !parsedPathExists(body, issue.path);
  throw new ApiError(
    400,
    missing ? `Missing required parameter: '${param}'.` : `Invalid value for '${param}': ${issue.message}.`,
    'invalid_request_error',
    param,
    missing ? 'missing_required_parameter' : 'invalid_value',
  );
}

/** Options the engine does not implement are refused rather than silently ignored. */
export function refuseUnsupported(request: CompletionRequest | ChatRequest): void {
  const refuse = (param: string, message: string) => {
    throw new ApiError(400, message, 'invalid_request_error', param, 'unsupported_value');
  };
  if ((request.n ?? 1) !== 1) refuse('n', `Only n=1 is supported (got n=${request.n}).`);
  if (request.presence_penalty) refuse('presence_penalty', 'presence_penalty is not supported; send 0 or omit it.');
  if (request.frequency_penalty) refuse('frequency_penalty', 'frequency_penalty is not supported; send 0 or omit it.');
  if ('echo' in request && request.echo) refuse('echo', 'echo is not supported.');
}

function parsedPathExists(body: unknown, path: PropertyKey[]): boolean {
  let node: unknown = body;
  for (const key of path) {
    if (typeof node !== 'object' || node === null || !(key in node)) return false;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return true;
}
