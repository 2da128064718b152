/**
 * OpenAI features beyond one plain completion, in real workerd: several choices (`n`, also
 * streamed), logit bias and penalties, min_p, and vLLM's /tokenize and /detokenize.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-meki';
const dir = tempDir();
let worker: RunningWorker;

beforeAll(async () => {
  worker = await startWorker();
  await serveBundle(worker, await buildTinyBundle(dir.path, 'meki', { reference: false }), MODEL);
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

const completion = async (body: object) => {
  const response = await post(`${worker.url}/v1/completions`, { model: MODEL, ...body });
  expect(response.status).toBe(200);
  return response.json();
};
/** The generated tokens of a non-streamed completion's first choice (its logprobs' token strings). */
const tokensOf = async (body: object): Promise<string[]> => (await completion({ ...body, logprobs: 0 })).choices[0].logprobs.tokens;
const greedy = { max_tokens: 24, temperature: 0 };
const chat = { model: MODEL, messages: [{ role: 'user', content: 'Tell me about the harbor.' }], max_tokens: 10, temperature: 1, seed: 7 };

describe('n choices', () => {
  it('answers n=3 with three choices, each the n=1 completion of seed + index; usage sums them', async () => {
    const request = { prompt: 'We hold', max_tokens: 8, temperature: 1, seed: 3, logprobs: 0 };
    const body = await completion({ ...request, n: 3 });
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2]);
    const texts = body.choices.map((c: { text: string }) => c.text);
    for (let i = 0; i < 3; i++) expect((await completion({ ...request, seed: 3 + i })).choices[0].text).toBe(texts[i]);
    expect(new Set(texts).size).toBeGreaterThan(1);
    const perChoice = body.choices.map((c: { logprobs: { tokens: string[] } }) => c.logprobs.tokens.length);
    expect(body.usage.completion_tokens).toBe(perChoice.reduce((a: number, b: number) => a + b, 0));
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
  });

  it('streams n=3 interleaved by index, every choice ending with its finish chunk, the same texts as without streaming', async () => {
    const events = await readAllEvents(
      await post(`${worker.url}/v1/chat/completions`, { ...chat, n: 3, stream: true, stream_options: { include_usage: true } }),
    );
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Record<string, any>[];
    const usage = chunks.pop()!;
    expect(usage.choices).toEqual([]);
    expect(chunks.every((c) => c.choices.length === 1)).toBe(true);
    const texts = ['', '', ''];
    const finishedAt: number[] = [];
    chunks.forEach((c, at) => {
      const { index, delta, finish_reason } = c.choices[0];
      expect(finishedAt[index]).toBeUndefined(); // nothing of a choice after its finish chunk
      if (finish_reason) {
        expect(delta).toEqual({});
        finishedAt[index] = at;
      }
      texts[index] += delta.content ?? '';
    });
    expect(chunks.slice(0, 3).map((c) => c.choices[0].delta)).toEqual(Array(3).fill({ role: 'assistant', content: '' }));
    expect(finishedAt.filter((at) => at !== undefined)).toHaveLength(3);
    // Interleaved: some choice streams text before another's first content.
    const firstContent = [0, 1, 2].map((i) => chunks.findIndex((c) => c.choices[0].index === i && c.choices[0].delta.content));
    const lastContent = [0, 1, 2].map((i) => chunks.findLastIndex((c) => c.choices[0].index === i && c.choices[0].delta.content));
    expect(Math.max(...firstContent)).toBeLessThan(Math.min(...lastContent));
    // The timing summary is on the last choice's finish chunk.
    expect(chunks[Math.max(...finishedAt)].flexmem.timing.total_ms).toBeGreaterThanOrEqual(0);

    const whole = await (await post(`${worker.url}/v1/chat/completions`, { ...chat, n: 3 })).json();
    expect(whole.choices.map((c: { message: { content: string } }) => c.message.content)).toEqual(texts);
    expect(usage.usage).toEqual(whole.usage);
  });

  it('works with the openai client, n=2, streamed and not', async () => {
    const client = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: 'not-needed-locally', maxRetries: 0 });
    const whole = await client.chat.completions.create({ ...chat, messages: [{ role: 'user', content: 'Hi' }], n: 2 });
    expect(whole.choices.map((c) => c.index)).toEqual([0, 1]);
    const stream = await client.chat.completions.create({ ...chat, messages: [{ role: 'user', content: 'Hi' }], n: 2, stream: true });
    const texts = ['', ''];
    const finish: (string | null)[] = [null, null];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? '';
        finish[c.index] = c.finish_reason ?? finish[c.index];
      }
    }
    expect(texts).toEqual(whole.choices.map((c) => c.message.content));
    expect(finish).toEqual(whole.choices.map((c) => c.finish_reason));
  });
});

describe('logit bias and penalties', () => {
  const prompt = 'The President said';

  it('never emits a token biased by -100 in a greedy completion, and changes the output', async () => {
    const plain = await tokensOf({ prompt, ...greedy });
    // The most repeated greedy token that is a whole token of its own text; its id from /tokenize.
    const counts = new Map<string, number>();
    for (const t of plain) counts.set(t, (counts.get(t) ?? 0) + 1);
    let target: { token: string; id: number } | undefined;
    for (const [token] of [...counts].sort((a, b) => b[1] - a[1])) {
      const tokenized = await (await post(`${worker.url}/tokenize`, { model: MODEL, prompt: token, return_token_strs: true })).json();
      if (tokenized.count === 1 && tokenized.token_strs[0] === token) {
        target = { token, id: tokenized.tokens[0] };
        break;
      }
    }
    expect(target).toBeDefined();
    const biased = await tokensOf({ prompt, ...greedy, logit_bias: { [target!.id]: -100 } });
    expect(biased).not.toContain(target!.token);
    expect(biased).not.toEqual(plain);
    // A positive bias pulls it in: greedy then emits it at once.
    expect((await tokensOf({ prompt, ...greedy, logit_bias: { [target!.id]: 100 } }))[0]).toBe(target!.token);
  });

  it('breaks a looping greedy output with presence_penalty, and changes it with frequency and repetition penalties', async () => {
    const looping = await tokensOf({ prompt: 'We hold', ...greedy });
    expect(new Set(looping).size).toBeLessThan(looping.length / 2);
    const presence = await tokensOf({ prompt: 'We hold', ...greedy, presence_penalty: 2 });
    expect(new Set(presence).size).toBeGreaterThan(new Set(looping).size);
    expect(await tokensOf({ prompt: 'We hold', ...greedy, frequency_penalty: 2 })).not.toEqual(looping);
    expect(await tokensOf({ prompt: 'We hold', ...greedy, repetition_penalty: 2 })).not.toEqual(looping);
  });

  it('min_p 1 keeps only the most likely token: sampling becomes greedy', async () => {
    const plain = (await completion({ prompt, ...greedy })).choices[0].text;
    expect((await completion({ prompt, max_tokens: 24, temperature: 1, seed: 5, min_p: 1 })).choices[0].text).toBe(plain);
    expect((await completion({ prompt, max_tokens: 24, temperature: 1, seed: 5, min_p: 0 })).choices[0].text).not.toBe(plain);
  });
});

describe('/tokenize and /detokenize', () => {
  it('round-trips a prompt', async () => {
    const prompt = 'We hold these truths to be self-evident';
    const response = await post(`${worker.url}/tokenize`, { model: MODEL, prompt });
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body).toEqual({ count: body.tokens.length, max_model_len: 128, tokens: expect.any(Array) });
    expect(body.count).toBeGreaterThan(1);
    const back = await (await post(`${worker.url}/detokenize`, { model: MODEL, tokens: body.tokens })).json();
    expect(back).toEqual({ prompt });
  });

  it('counts the prompt tokens of a chat request as the chat endpoint does', async () => {
    const tokenized = await (await post(`${worker.url}/tokenize`, { model: MODEL, messages: chat.messages })).json();
    const answered = await (await post(`${worker.url}/v1/chat/completions`, { ...chat, max_tokens: 1 })).json();
    expect(tokenized.count).toBe(answered.usage.prompt_tokens);
  });
});

describe('refused values, in OpenAI shape', () => {
  const expectError = async (path: string, body: object, status: number, param: string, message: RegExp) => {
    const response = await post(`${worker.url}${path}`, { model: MODEL, ...body });
    expect(response.status).toBe(status);
    const { error } = await response.json();
    expect(error).toEqual({ message: expect.stringMatching(message), type: expect.any(String), param, code: expect.anything() });
  };

  it('n above the maximum', () => expectError('/v1/completions', { prompt: 'x', n: 5 }, 400, 'n', /at most 4 choices/));
  it('n of 0', () => expectError('/v1/chat/completions', { messages: chat.messages, n: 0 }, 400, 'n', /Invalid value for 'n'/));
  it('a logit_bias id outside the vocabulary', () =>
    expectError('/v1/completions', { prompt: 'x', logit_bias: { 512: 1 } }, 400, 'logit_bias', /outside the model's vocabulary of 512/));
  it('a logit_bias key that is not a token id', () =>
    expectError('/v1/completions', { prompt: 'x', logit_bias: { the: 1 } }, 400, 'logit_bias.the', /keys must be token ids/));
  it('a logit_bias value beyond 100', () =>
    expectError('/v1/completions', { prompt: 'x', logit_bias: { 3: 101 } }, 400, 'logit_bias.3', /<=100/));
  it('min_p above 1', () => expectError('/v1/completions', { prompt: 'x', min_p: 1.5 }, 400, 'min_p', /Invalid value for 'min_p'/));
  it('min_p below 0', () => expectError('/v1/chat/completions', { messages: chat.messages, min_p: -0.1 }, 400, 'min_p', /min_p/));
  it('presence_penalty beyond 2', () =>
    expectError('/v1/completions', { prompt: 'x', presence_penalty: 2.5 }, 400, 'presence_penalty', /presence_penalty/));
  it('repetition_penalty of 0', () =>
    expectError('/v1/completions', { prompt: 'x', repetition_penalty: 0 }, 400, 'repetition_penalty', /repetition_penalty/));
  it('tokenize with neither prompt nor messages', () => expectError('/tokenize', {}, 400, 'prompt', /either prompt or messages/));
  it('tokenize an unknown model', () => expectError('/tokenize', { model: 'gpt-9', prompt: 'x' }, 404, 'model', /does not exist/));
  it('detokenize an id outside the vocabulary', () =>
    expectError('/detokenize', { tokens: [1, 2, 600] }, 400, 'tokens.2', /token id 600 is outside/));
  it('detokenize a negative id', () => expectError('/detokenize', { tokens: [-1] }, 400, 'tokens.0', /Invalid value/));
});
