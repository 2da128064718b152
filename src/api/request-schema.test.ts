import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ApiError } from './errors.ts';
import { ChatRequestSchema, CompletionRequestSchema, MAX_CHOICES, parseRequest, refuseUnsupported } from './request-schema.ts';

/** The ApiError `fn` throws (fails the test when it throws nothing or something else). */
function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error('expected an ApiError');
}

const completion = (over: Record<string, unknown> = {}) => ({ model: 'm', prompt: 'hi', ...over });
const chat = (over: Record<string, unknown> = {}) => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...over });
const acceptsCompletion = (over: Record<string, unknown>) => CompletionRequestSchema.safeParse(completion(over)).success;
const acceptsChat = (over: Record<string, unknown>) => ChatRequestSchema.safeParse(chat(over)).success;

describe('request schemas: the bounds of every sampling field', () => {
  it.each([
    ['max_tokens', [1, 2, 4096], [0, -1, 1.5]],
    ['temperature', [0, 1, 2], [-0.01, 2.01]],
    ['top_p', [0.01, 0.5, 1], [0, 1.01]],
    ['top_k', [0, 1, 50], [-1, 1.5]],
    ['seed', [0, -5, 123456], [1.5]],
    ['n', [1, 2, MAX_CHOICES], [0, MAX_CHOICES + 1, 1.5]],
    ['presence_penalty', [-2, 0, 2], [-2.01, 2.01]],
    ['frequency_penalty', [-2, 0, 2], [-2.01, 2.01]],
    ['min_p', [0, 0.5, 1], [-0.01, 1.01]],
    ['repetition_penalty', [0.01, 1, 3], [0, -1]],
  ] as const)('%s accepts %j and refuses %j', (field, good, bad) => {
    for (const value of good) {
      expect(acceptsCompletion({ [field]: value }), `${field} = ${value}`).toBe(true);
      expect(acceptsChat({ [field]: value }), `${field} = ${value}`).toBe(true);
    }
    for (const value of bad) {
      expect(acceptsCompletion({ [field]: value }), `${field} = ${value}`).toBe(false);
      expect(acceptsChat({ [field]: value }), `${field} = ${value}`).toBe(false);
    }
    // Every optional field may be null or left out.
    expect(acceptsCompletion({ [field]: null })).toBe(true);
  });

  it('takes stop as one non-empty string or up to four', () => {
    for (const stop of ['x', 'two chars', ['a'], ['a', 'bb', 'ccc', 'dddd'], null]) expect(acceptsCompletion({ stop })).toBe(true);
    for (const stop of ['', [''], ['a', 'b', 'c', 'd', 'e'], 3]) expect(acceptsCompletion({ stop })).toBe(false);
  });

  it('takes logit_bias as token ids (decimal strings) to a bias in [-100, 100]', () => {
    expect(acceptsCompletion({ logit_bias: { '0': -100, '12': 100, '50256': 0.5 } })).toBe(true);
    for (const key of ['a1', '1a', '-1', '', 'x']) expect(acceptsCompletion({ logit_bias: { [key]: 1 } }), key).toBe(false);
    for (const bias of [-100.5, 100.5]) expect(acceptsCompletion({ logit_bias: { '1': bias } })).toBe(false);
  });

  it('takes stream, stream_options and user', () => {
    expect(acceptsCompletion({ stream: true, stream_options: { include_usage: true }, user: 'u' })).toBe(true);
    expect(acceptsCompletion({ stream_options: {} })).toBe(true);
    expect(acceptsCompletion({ stream_options: { include_usage: 'yes' } })).toBe(false);
    expect(acceptsCompletion({ stream: 'yes' })).toBe(false);
  });

  it('needs a non-empty model name', () => {
    expect(CompletionRequestSchema.safeParse({ prompt: 'hi' }).success).toBe(false);
    expect(acceptsCompletion({ model: '' })).toBe(false);
    expect(acceptsCompletion({ model: 'a-longer-name' })).toBe(true);
  });
});

describe('the completion request', () => {
  it('takes one prompt, as a string or a list of one', () => {
    expect(acceptsCompletion({ prompt: '' })).toBe(true);
    expect(acceptsCompletion({ prompt: ['one'] })).toBe(true);
    expect(acceptsCompletion({ prompt: [] })).toBe(false);
    expect(acceptsCompletion({ prompt: 42 })).toBe(false);
    expect(apiError(() => parseRequest(CompletionRequestSchema, completion({ prompt: ['one', 'two'] }))).message).toBe(
      "Invalid value for 'prompt': only one prompt per request is supported.",
    );
  });

  it('takes logprobs from 0 to 5', () => {
    for (const logprobs of [0, 3, 5]) expect(acceptsCompletion({ logprobs })).toBe(true);
    for (const logprobs of [-1, 6, 1.5]) expect(acceptsCompletion({ logprobs })).toBe(false);
  });

  it('parses what it accepts, field by field', () => {
    const body = completion({ max_tokens: 5, stop: ['\n'], logit_bias: { '7': -100 }, echo: false });
    expect(parseRequest(CompletionRequestSchema, body)).toEqual(body);
  });
});

describe('the chat request', () => {
  it('takes messages of the four roles, with text or a list of text parts', () => {
    for (const role of ['system', 'developer', 'user', 'assistant'])
      expect(acceptsChat({ messages: [{ role, content: 'x', name: 'n' }] }), role).toBe(true);
    expect(acceptsChat({ messages: [{ role: 'tool', content: 'x' }] })).toBe(false);
    expect(acceptsChat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }] }] })).toBe(true);
    expect(
      acceptsChat({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'a' },
              { type: 'text', text: 'b' },
            ],
          },
        ],
      }),
    ).toBe(true);
    expect(acceptsChat({ messages: [{ role: 'user', content: [] }] })).toBe(false);
    expect(acceptsChat({ messages: [{ role: 'user', content: [{ type: 'image_url', text: 'a' }] }] })).toBe(false);
    expect(acceptsChat({ messages: [{ role: 'user', content: [{ type: 'text' }] }] })).toBe(false);
    expect(acceptsChat({ messages: [{ role: 'user' }] })).toBe(false);
  });

  it('needs at least one message', () => {
    const error = apiError(() => parseRequest(ChatRequestSchema, chat({ messages: [] })));
    expect(error.message).toBe("Invalid value for 'messages': messages must contain at least one message.");
    expect(
      acceptsChat({
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 'b' },
        ],
      }),
    ).toBe(true);
  });

  it('takes max_completion_tokens ≥ 1, logprobs as a boolean and top_logprobs from 0 to 20', () => {
    for (const max_completion_tokens of [1, 2, 100]) expect(acceptsChat({ max_completion_tokens })).toBe(true);
    for (const max_completion_tokens of [0, 1.5]) expect(acceptsChat({ max_completion_tokens })).toBe(false);
    expect(acceptsChat({ logprobs: true, top_logprobs: 0 })).toBe(true);
    for (const top_logprobs of [1, 20]) expect(acceptsChat({ top_logprobs })).toBe(true);
    for (const top_logprobs of [-1, 21]) expect(acceptsChat({ top_logprobs })).toBe(false);
    expect(acceptsChat({ logprobs: 3 })).toBe(false);
  });
});

describe('parseRequest', () => {
  it('refuses a body that is not a JSON object', () => {
    for (const body of [null, [], 'text', 3, true, undefined]) {
      const error = apiError(() => parseRequest(CompletionRequestSchema, body));
      expect(error).toMatchObject({
        status: 400,
        message: 'The request body must be a JSON object.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_body',
      });
    }
  });

  it('names a missing required parameter', () => {
    expect(apiError(() => parseRequest(CompletionRequestSchema, { model: 'm' }))).toMatchObject({
      status: 400,
      message: "Missing required parameter: 'prompt'.",
      type: 'invalid_request_error',
      param: 'prompt',
      code: 'missing_required_parameter',
    });
    // A missing field inside a message is named by its path.
    expect(apiError(() => parseRequest(ChatRequestSchema, chat({ messages: [{ role: 'user' }] })))).toMatchObject({
      message: "Missing required parameter: 'messages.0.content'.",
      param: 'messages.0.content',
      code: 'missing_required_parameter',
    });
  });

  it('names an invalid value and says why', () => {
    expect(apiError(() => parseRequest(CompletionRequestSchema, completion({ n: 9 })))).toMatchObject({
      status: 400,
      message: `Invalid value for 'n': at most ${MAX_CHOICES} choices per request.`,
      type: 'invalid_request_error',
      param: 'n',
      code: 'invalid_value',
    });
    expect(apiError(() => parseRequest(ChatRequestSchema, chat({ messages: [{ role: 'bot', content: 'x' }] })))).toMatchObject({
      param: 'messages.0.role',
      code: 'invalid_value',
    });
  });

  it("explains a bad logit_bias key by the key's own rule", () => {
    const error = apiError(() => parseRequest(CompletionRequestSchema, completion({ logit_bias: { abc: 1 } })));
    expect(error.code).toBe('invalid_value');
    expect(error.message).toMatch(/^Invalid value for 'logit_bias[^']*': keys must be token ids\.$/);
  });

  it("explains a value of one of a union's types by that type's rule", () => {
    const message = (body: unknown) => apiError(() => parseRequest(CompletionRequestSchema, body)).message;
    expect(message(completion({ stop: ['a', 'b', 'c', 'd', 'e'] }))).toMatch(/^Invalid value for 'stop': .*4 items\.$/);
    const part = apiError(() =>
      parseRequest(ChatRequestSchema, chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 5 }] }] })),
    );
    expect(part.param).toBe('messages.0.content');
    expect(part.message).toMatch(/expected string, received number\.$/);
    // Of none of its types: zod's own words.
    expect(message(completion({ prompt: 42 }))).toBe("Invalid value for 'prompt': Invalid input.");
    expect(message(completion({ stop: 7 }))).toBe("Invalid value for 'stop': Invalid input.");
  });

  it('falls back to the issue message for an invalid key without nested issues', () => {
    const schema = z.object({ a: z.string() }).superRefine((_, ctx) => {
      ctx.addIssue({ code: 'invalid_key', origin: 'record', issues: [], input: 'k', path: ['a'], message: 'outer message' } as never);
    });
    expect(apiError(() => parseRequest(schema, { a: 'x' })).message).toBe("Invalid value for 'a': outer message.");
  });

  it('has no param for an issue of the whole body, and treats a path through a non-object as missing', () => {
    const root = apiError(() =>
      parseRequest(
        z.object({}).refine(() => false, 'bad body'),
        {},
      ),
    );
    expect(root).toMatchObject({ param: null, code: 'invalid_value', message: "Invalid value for 'null': bad body." });
    const deep = (body: unknown) =>
      apiError(() =>
        parseRequest(
          z.object({ a: z.unknown() }).superRefine((_, ctx) => ctx.addIssue({ code: 'custom', path: ['a', 'b'], message: 'deep' })),
          body,
        ),
      );
    expect(deep({ a: 'string' })).toMatchObject({ code: 'missing_required_parameter', param: 'a.b' });
    expect(deep({ a: null })).toMatchObject({ code: 'missing_required_parameter', param: 'a.b' });
    expect(deep({ a: {} })).toMatchObject({ code: 'missing_required_parameter', param: 'a.b' });
    expect(deep({ a: { b: 1 } })).toMatchObject({ code: 'invalid_value', param: 'a.b', message: "Invalid value for 'a.b': deep." });
  });
});

describe('refuseUnsupported', () => {
  it('refuses echo, and nothing else', () => {
    expect(apiError(() => refuseUnsupported(CompletionRequestSchema.parse(completion({ echo: true }))))).toMatchObject({
      status: 400,
      message: 'echo is not supported.',
      type: 'invalid_request_error',
      param: 'echo',
      code: 'unsupported_value',
    });
    expect(() => refuseUnsupported(CompletionRequestSchema.parse(completion({ echo: false })))).not.toThrow();
    expect(() => refuseUnsupported(CompletionRequestSchema.parse(completion()))).not.toThrow();
    expect(() => refuseUnsupported(ChatRequestSchema.parse(chat()))).not.toThrow();
  });
});
