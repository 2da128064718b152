import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import type { LoadedBundle } from '../serving/serving-core.ts';
import { TextTokenizer } from '../tokenizer/tokenizer.ts';
import { complete, type CompletionCall } from './completion.ts';
import { ApiError } from './errors.ts';
import type { ApiHost } from './host.ts';
import { maxTokenBytes, refuseOversizedPrompt } from './prompt-bound.ts';

const CONTEXT = 256;
const tokenizerJson = () => JSON.parse(readFileSync(new URL('../../models/flex/tokenizer.json', import.meta.url), 'utf8'));

/** Only what the check reads: the tokenizer and the model's context. */
function bundleWith(tokenizer: TextTokenizer): LoadedBundle {
  return {
    version: 'v1',
    manifest: { config: { max_position_embeddings: CONTEXT, vocab_size: 4096 }, chatTemplate: null },
    tokenizer,
  } as unknown as LoadedBundle;
}

describe('maxTokenBytes', () => {
  it("is the demo vocabulary's longest token, ' recommendations' (16 bytes)", () => {
    expect(maxTokenBytes(bundleWith(new TextTokenizer(tokenizerJson())))).toBe(16);
  });

  it('is unknown (no early refusal) for a tokenizer that normalizes its input', () => {
    const lowercasing = new TextTokenizer({ ...tokenizerJson(), normalizer: { type: 'Lowercase' } });
    const bundle = bundleWith(lowercasing);
    expect(maxTokenBytes(bundle)).toBeNull();
    expect(() => refuseOversizedPrompt(bundle, 'x'.repeat(1_000_000), 'text')).not.toThrow();
  });
});

describe('refuseOversizedPrompt', () => {
  const bundle = bundleWith(new TextTokenizer(tokenizerJson()));

  it('lets through a prompt that might fit: fewer than 16 bytes per context position', () => {
    expect(() => refuseOversizedPrompt(bundle, 'x'.repeat((CONTEXT - 1) * 16), 'text')).not.toThrow();
  });

  it('refuses one byte more, naming the bound, with the param of the endpoint', () => {
    const error = (() => {
      try {
        refuseOversizedPrompt(bundle, 'é'.repeat(((CONTEXT - 1) * 16) / 2 + 1), 'chat');
      } catch (e) {
        return e as ApiError;
      }
    })();
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 400, param: 'messages', code: 'context_length_exceeded' });
    expect(error!.message).toBe(
      "This model's maximum context length is 256 tokens. However, your prompt is 4082 bytes long, which is at least 256 tokens (no token is longer than 16 bytes).",
    );
  });

  it('refuses a 1 MB prompt in complete() without tokenizing it', async () => {
    const tokenizer = new TextTokenizer(tokenizerJson());
    const bundle = bundleWith(tokenizer);
    maxTokenBytes(bundle); // the once-per-bundle vocabulary scan (it encodes a short probe)
    const encode = vi.spyOn(tokenizer, 'encode');
    const host = { core: { clock: () => 0, current: async () => bundle }, limits: { defaultMaxTokens: 16 } } as unknown as ApiHost;
    const call: CompletionCall = {
      host,
      requestId: 'req_test',
      signal: undefined,
      endpoint: 'text',
      request: { model: 'flex', logprobs: null },
      promptOf: () => ({ prompt: 'The '.repeat(250_000), stops: [] }),
    };
    await expect(complete(call)).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded' });
    expect(encode).not.toHaveBeenCalled();
  });
});
