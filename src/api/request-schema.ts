/**
 * The request bodies of /v1/completions and /v1/chat/completions, validated with zod. A bad
 * field becomes a 400 that names it, as OpenAI's API does.
 */
import { z } from 'zod';
import { MemoryEditsSchema } from '../memory/memory-edits.ts';
import { ApiError } from './errors.ts';

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish();

/**
 * The most choices (`n`) one request may ask for. Each choice is a full generation on this
 * isolate's one wasm instance (they share the prefill, then take turns through the session
 * queue, src/serving/session-queue.ts) with its own KV cache in the isolate's 128 MB: a request
 * of n choices costs about n times the decode time of one, in one request's CPU-time limit.
 */
export const MAX_CHOICES = 4;

/** OpenAI's logit_bias: token ids (as strings) to a bias in [-100, 100]; ids are checked against the model's vocabulary later. */
const logitBias = z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullish();

/**
 * flexmem's extension: `edits` overrides memory rows for this request only, in the format
 * `flexmem patch` reads (src/memory/memory-edits.ts); `provenance` reports, per generated token,
 * the tier its memory row came from.
 */
const flexmemOptions = z.object({ edits: MemoryEditsSchema.optional(), provenance: z.boolean().optional() }).strict().nullish();

const common = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Not in OpenAI's API, common in others (vLLM, llama.cpp): keep the k most likely tokens. */
  top_k: z.number().int().min(0).nullish(),
  seed: z.number().int().nullish(),
  stop,
  n: z.number().int().min(1).max(MAX_CHOICES, `at most ${MAX_CHOICES} choices per request`).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: logitBias,
  /** vLLM's: keep the tokens with p ≥ min_p · p_max. */
  min_p: z.number().min(0).max(1).nullish(),
  /** vLLM's: divide the positive logits, multiply the negative, of tokens in the prompt and the output. */
  repetition_penalty: z.number().gt(0).nullish(),
  user: z.string().nullish(),
  flexmem: flexmemOptions,
};

export const CompletionRequestSchema = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).length(1, 'only one prompt per request is supported')]),
  logprobs: z.number().int().min(0).max(5).nullish(),
  echo: z.boolean().nullish(),
});

const content = z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() })).min(1)]);

export const MessagesSchema = z
  .array(z.object({ role: z.enum(['system', 'developer', 'user', 'assistant']), content, name: z.string().optional() }))
  .min(1, 'messages must contain at least one message');

export const ChatRequestSchema = z.object({
  ...common,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: MessagesSchema,
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
  const message = issueMessage(issue);
  throw new ApiError(
    400,
    missing ? `Missing required parameter: '${param}'.` : `Invalid value for '${param}': ${message}.`,
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
  if ('echo' in request && request.echo) refuse('echo', 'echo is not supported.');
}

/** What is wrong with a value, in the words of the rule it broke. */
function issueMessage(issue: z.core.$ZodIssue): string {
  // A bad key of a record (logit_bias) is best explained by the key's own rule.
  if (issue.code === 'invalid_key') return issue.issues[0]?.message ?? issue.message;
  // A value of one of a union's types that breaks that type's rule (two prompts, five stop
  // strings) is explained by that rule, not by zod's "Invalid input".
  if (issue.code === 'invalid_union') {
    const ofItsType = issue.errors.filter((branch) => !branch.some((i) => i.code === 'invalid_type' && i.path.length === 0));
    if (ofItsType.length === 1) return ofItsType[0][0].message;
  }
  return issue.message;
}

function parsedPathExists(body: unknown, path: PropertyKey[]): boolean {
  let node: unknown = body;
  for (const key of path) {
    if (typeof node !== 'object' || node === null || !(key in node)) return false;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return true;
}
