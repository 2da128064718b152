/** The OpenAI-compatible API of the real worker, in real workerd (Miniflare), over local R2. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLocalManifest } from '../cli/local-bundle.ts';
import { flexmem } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { within } from './helpers/deadline.ts';
import { post, postStreamed, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-meki';
const dir = tempDir();
let worker: RunningWorker;
let bundle: string;
let version: string;

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'meki', { reference: false });
  worker = await startWorker({ vars: { HOT_SET_BYTES: '0' } });
  version = await serveBundle(worker, bundle, MODEL);
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

describe('serving', () => {
  it('lists the model and the bundle version it serves', async () => {
    const body = await (await fetch(`${worker.url}/v1/models`)).json();
    expect(body.data).toEqual([expect.objectContaining({ id: MODEL, object: 'model', bundle_version: version })]);
    expect((await fetch(`${worker.url}/health`)).status).toBe(200);
  });

  it('answers greedy completions token for token as `flexmem run` does on the same bundle', async () => {
    const prompt = 'The President said';
    const response = await post(`${worker.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 24, temperature: 0 });
    expect(response.status).toBe(200);
    const body = await response.json();
    const cli = flexmem('run', bundle, '--prompt', prompt, '--max-tokens', '24', '--temperature', '0');
    expect(cli.stdout).toBe(`${prompt + body.choices[0].text}\n`);
    expect(body.usage).toEqual({ prompt_tokens: expect.any(Number), completion_tokens: 24, total_tokens: body.usage.prompt_tokens + 24 });
    expect(body.object).toBe('text_completion');
    expect(response.headers.get('x-flexmem-bundle-version')).toBe(version);
  });

  it('gives the same sampled output for the same seed', async () => {
    const ask = async (seed: number) =>
      (await (await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'We hold', max_tokens: 16, temperature: 1, seed })).json())
        .choices[0].text;
    expect(await ask(11)).toBe(await ask(11));
    expect(await ask(11)).not.toBe(await ask(12));
  });

  it('streams a chat completion in OpenAI chunks: role first, deltas, finish with timing, usage, [DONE]', async () => {
    const response = await post(`${worker.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello there' }],
      max_tokens: 8,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('x-flexmem-bundle-version')).toBe(version);
    const events = await readAllEvents(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as Record<string, any>[];
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id)).toBe(true);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(chunks[0].flexmem.bundle_version).toBe(version);
    const finish = chunks.find((c) => c.choices[0]?.finish_reason)!;
    expect(finish.choices[0].finish_reason).toMatch(/^(length|stop)$/);
    expect(finish.flexmem.timing.total_ms).toBeGreaterThanOrEqual(0);
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage.completion_tokens).toBeGreaterThan(0);
    // The streamed text equals the non-streamed text for the same greedy request.
    const streamed = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    const whole = await (
      await post(`${worker.url}/v1/chat/completions`, {
        model: MODEL,
        messages: [{ role: 'user', content: 'Hello there' }],
        max_tokens: 8,
        temperature: 0,
      })
    ).json();
    expect(whole.object).toBe('chat.completion');
    expect(whole.choices[0].message).toEqual({ role: 'assistant', content: streamed, refusal: null });
  });

  it('streams completions too', async () => {
    const events = await readAllEvents(
      await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'The', max_tokens: 4, temperature: 0, stream: true }),
    );
    const chunks = events.slice(0, -1) as Record<string, any>[];
    expect(chunks.every((c) => c.object === 'text_completion')).toBe(true);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe('length');
  });

  it('cuts the text at a stop string, which is not emitted', async () => {
    const full = (
      await (
        await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'The President said', max_tokens: 24, temperature: 0 })
      ).json()
    ).choices[0].text as string;
    const stop = full.slice(6, 9);
    const body = await (
      await post(`${worker.url}/v1/completions`, {
        model: MODEL,
        prompt: 'The President said',
        max_tokens: 24,
        temperature: 0,
        stop: [stop],
      })
    ).json();
    expect(body.choices[0].text).toBe(full.slice(0, full.indexOf(stop)));
    expect(body.choices[0].finish_reason).toBe('stop');
  });
});

describe('logprobs', () => {
  it('reports each token of a chat completion with its log-probability, bytes and alternatives', async () => {
    const body = await (
      await post(`${worker.url}/v1/chat/completions`, {
        model: MODEL,
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 6,
        temperature: 0,
        logprobs: true,
        top_logprobs: 3,
      })
    ).json();
    const content = body.choices[0].logprobs.content as {
      token: string;
      logprob: number;
      bytes: number[];
      top_logprobs: { logprob: number }[];
    }[];
    expect(content).toHaveLength(body.usage.completion_tokens);
    for (const entry of content) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs).toHaveLength(3);
      expect(entry.top_logprobs[0].logprob).toBeGreaterThanOrEqual(entry.top_logprobs[2].logprob);
      expect(entry.logprob).toBeCloseTo(entry.top_logprobs[0].logprob, 6); // greedy takes the top token
    }
    expect(new TextDecoder().decode(Uint8Array.from(content.flatMap((e) => e.bytes)))).toBe(body.choices[0].message.content);
  });

  it('streams completions logprobs chunk by chunk, in the legacy shape', async () => {
    const events = await readAllEvents(
      await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'The', max_tokens: 5, temperature: 0, logprobs: 2, stream: true }),
    );
    const deltas = (events.slice(1, -1) as Record<string, any>[]).filter((c) => c.choices[0]?.logprobs);
    const tokens = deltas.flatMap((c) => c.choices[0].logprobs.tokens as string[]);
    expect(tokens).toHaveLength(5);
    for (const c of deltas) expect(c.choices[0].logprobs.top_logprobs.every((top: object) => Object.keys(top).length <= 2)).toBe(true);
  });

  it('refuses top_logprobs without logprobs', async () => {
    const response = await post(`${worker.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      top_logprobs: 2,
    });
    expect(response.status).toBe(400);
    expect((await response.json()).error.param).toBe('top_logprobs');
  });
});

describe('memory tiers', () => {
  it('serves a repeated request without origin reads, and the timing summary counts every row once', async () => {
    // A fresh isolate (no hot set), so the first request must go to the origin.
    const fresh = await startWorker({ vars: { HOT_SET_BYTES: '0' } });
    await serveBundle(fresh, bundle, MODEL);
    const request = { model: MODEL, prompt: 'Farmers came in from the country, clerks left their desks', max_tokens: 6, temperature: 0 };
    const first = await (await post(`${fresh.url}/v1/completions`, request)).json();
    const second = await post(`${fresh.url}/v1/completions`, request);
    const secondBody = await second.json();
    await fresh.dispose();
    const t1 = first.flexmem.timing;
    const t2 = secondBody.flexmem.timing;
    expect(t1.rows.origin).toBeGreaterThan(0);
    expect(t1.origin_requests).toBeGreaterThan(0);
    expect(t2.rows.origin).toBe(0);
    expect(t2.origin_requests).toBe(0);
    for (const t of [t1, t2]) expect(Object.values(t.rows as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(t.row_lookups);
    expect(second.headers.get('server-timing')).toMatch(
      /total;dur=[\d.]+, memory;dur=[\d.]+, compute;dur=[\d.]+, rows;desc="patch=0 hot=\d+ lru=\d+ cache=\d+ kv=0 origin=0/,
    );
    expect(secondBody.choices[0].text).toBe(first.choices[0].text);
  });
});

describe('timing summary', () => {
  /**
   * Added to every origin read. With no isolate, hot-set or Cache API tier, the prefill and each
   * of the TOKENS - 1 decode steps wait for at least one origin read, so memory_wait_ms is at
   * least TOKENS * LATENCY_MS: a lower bound the latency guarantees, however fast the machine
   * (0.9 of it allows for the clock's millisecond steps).
   */
  const LATENCY_MS = 200;
  const TOKENS = 6;
  const waitBound = TOKENS * LATENCY_MS * 0.9;
  const cold = { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' };
  let far: RunningWorker;
  let near: RunningWorker;
  let request: object;

  beforeAll(async () => {
    [far, near] = await Promise.all([
      startWorker({ vars: { ...cold, ORIGIN_LATENCY_MS: String(LATENCY_MS) } }),
      startWorker({ vars: cold }),
    ]);
    await Promise.all([serveBundle(far, bundle, MODEL), serveBundle(near, bundle, MODEL)]);
    // The end-of-text token banned: exactly TOKENS tokens.
    const eos = readLocalManifest(bundle).config.eos_token_id!;
    request = { model: MODEL, prompt: 'We hold these truths', max_tokens: TOKENS, temperature: 0, logit_bias: { [eos]: -100 } };
  });
  afterAll(async () => {
    await Promise.all([far?.dispose(), near?.dispose()]);
  });

  it('memory_wait_ms holds at least one origin latency per decoder step, streamed or not', async () => {
    const response = await post(`${far.url}/v1/completions`, request);
    const body = await response.json();
    expect(body.usage.completion_tokens).toBe(TOKENS);
    const t = body.flexmem.timing;
    expect(t.rows.origin).toBe(t.row_lookups); // every row came from the origin
    expect(t.memory_wait_ms).toBeGreaterThanOrEqual(waitBound);
    expect(t.total_ms).toBeGreaterThanOrEqual(t.memory_wait_ms);
    expect(response.headers.get('server-timing')).toContain(`memory;dur=${t.memory_wait_ms},`);

    const events = await within(30_000, 'the stream', post(`${far.url}/v1/completions`, { ...request, stream: true }).then(readAllEvents));
    const finish = events.find((e) => e !== '[DONE]' && e.choices[0]?.finish_reason) as Record<string, any>;
    expect(finish.flexmem.timing.rows.origin).toBe(finish.flexmem.timing.row_lookups);
    expect(finish.flexmem.timing.memory_wait_ms).toBeGreaterThanOrEqual(waitBound);
  });

  it('near the origin the same bound does not hold: the check tells a far origin from a near one', async () => {
    const body = await (await post(`${near.url}/v1/completions`, request)).json();
    expect(body.usage.completion_tokens).toBe(TOKENS);
    const t = body.flexmem.timing;
    expect(t.rows.origin).toBe(t.row_lookups);
    // Asks only that a local origin read take less than 0.9 * LATENCY_MS (180 ms) on average.
    expect(t.memory_wait_ms).toBeLessThan(waitBound);
  });
});

describe('errors, in OpenAI shape', () => {
  const expectError = async (response: Response, status: number, param: string | null, message: RegExp) => {
    expect(response.status).toBe(status);
    const body = await response.json();
    expect(body).toEqual({ error: { message: expect.stringMatching(message), type: expect.any(String), param, code: expect.anything() } });
  };

  it('bad JSON', async () => expectError(await post(`${worker.url}/v1/completions`, '{"model":'), 400, null, /could not parse the JSON/));
  it('not an object', async () => expectError(await post(`${worker.url}/v1/completions`, '[1]'), 400, null, /must be a JSON object/));
  it('missing prompt', async () =>
    expectError(await post(`${worker.url}/v1/completions`, { model: MODEL }), 400, 'prompt', /Missing required parameter: 'prompt'/));
  it('unknown model', async () =>
    expectError(
      await post(`${worker.url}/v1/completions`, { model: 'gpt-9', prompt: 'x' }),
      404,
      'model',
      /The model `gpt-9` does not exist/,
    ));
  it('temperature out of range', async () =>
    expectError(
      await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'x', temperature: 5 }),
      400,
      'temperature',
      /Invalid value for 'temperature'/,
    ));
  it('top_p out of range', async () =>
    expectError(
      await post(`${worker.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'x' }], top_p: 0 }),
      400,
      'top_p',
      /top_p/,
    ));
  it('n above the maximum', async () =>
    expectError(await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'x', n: 9 }), 400, 'n', /at most 4 choices/));
  it('empty messages', async () =>
    expectError(await post(`${worker.url}/v1/chat/completions`, { model: MODEL, messages: [] }), 400, 'messages', /at least one message/));
  it('a prompt longer than the context', async () =>
    expectError(
      await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'the people of the United States '.repeat(40) }),
      400,
      'prompt',
      /maximum context length is 128 tokens/,
    ));
  it('max_tokens beyond the context', async () =>
    expectError(
      await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'x', max_tokens: 1000 }),
      400,
      'max_tokens',
      /maximum context length/,
    ));
  it('an oversized body', async () => {
    // Over the worker's default MAX_BODY_BYTES (1 MiB) and within what it drains before refusing
    // (limit + DRAIN_SLACK_BYTES, src/api/read-body.ts): the worker reads the whole body, so the
    // client has finished its upload when the 413 arrives, with or without a Content-Length.
    // (A body past the drain cap is refused unread; the client may then see a reset instead:
    // that case is tested on Request objects in src/api/read-body.test.ts.)
    // The size in the message is the worker's count of what it read: all of it.
    const oversized = JSON.stringify({ model: MODEL, prompt: 'x'.repeat(1.5 * (1 << 20)) });
    const refused = new RegExp(`^Request body of ${Buffer.byteLength(oversized)} bytes exceeds the limit of ${1 << 20} bytes\\.$`);
    await expectError(await post(`${worker.url}/v1/completions`, oversized), 413, null, refused);
    await expectError(await postStreamed(`${worker.url}/v1/chat/completions`, oversized), 413, null, refused);
  });
  it('an unknown route', async () => expectError(await fetch(`${worker.url}/v2/engines`), 404, null, /Unknown route: GET \/v2\/engines/));
});
