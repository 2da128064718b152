/**
 * The limits of a public endpoint, in real workerd: the rate limiter (Miniflare's emulation of
 * the rate-limiting binding), admission control of generations per isolate, and the early refusal
 * of a prompt too long for the context. The admission workers are slow on purpose, as in
 * tests/cancellation.test.ts: every row comes from an origin 50 ms away, so a 100-token stream
 * lasts at least 5 s and is still running whenever a test looks at it; nothing depends on timing.
 */
import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { sseEvents } from './helpers/sse.ts';
import { post, postRaw, serveBundle, startWorker, streamThenDisconnect, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'slow';
const TOKENS = 100;
const SLOW = { ORIGIN_LATENCY_MS: '50', ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' };
const long = { model: MODEL, prompt: 'The', max_tokens: TOKENS, temperature: 0, stream: true };
const short = { model: MODEL, prompt: 'The', max_tokens: 2, temperature: 0 };

const dir = tempDir();
let bundle: string;
const workers: RunningWorker[] = [];

async function worker(options: Parameters<typeof startWorker>[0]): Promise<RunningWorker> {
  const started = await startWorker(options);
  workers.push(started);
  await serveBundle(started, bundle, MODEL);
  return started;
}

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'meki', { reference: false });
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.dispose()));
  dir.remove();
});

interface Health {
  active_generations: number;
  queued_generations: number;
  cancelled_generations: number;
}
const health = async (w: RunningWorker) => (await fetch(`${w.url}/health`)).json() as Promise<Health>;

/** A streaming request on its own socket: its events as they come, and a real disconnect. */
function openStream(url: string, body: unknown): { events: AsyncGenerator<string>; disconnect(): void } {
  const queue: string[] = [];
  let wake: (() => void) | null = null;
  const { request, response } = postRaw(url, body);
  response.then(
    (stream) => {
      const parser = createParser({
        onEvent: (event) => {
          queue.push(event.data);
          wake?.();
        },
      });
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => parser.feed(chunk));
    },
    () => {}, // the disconnect is ours
  );
  async function* events(): AsyncGenerator<string> {
    while (true) {
      while (queue.length) yield queue.shift()!;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  }
  return { events: events(), disconnect: () => request.destroy() };
}

describe('rate limit (per API key)', () => {
  const LIMIT = 3;
  let limited: RunningWorker;
  beforeAll(async () => {
    limited = await worker({ rateLimit: { limit: LIMIT, period: 60 }, vars: { API_KEYS: 'sk-test-one,sk-test-two' } });
  });
  const as = (key: string) =>
    post(
      `${limited.url}/v1/completions`,
      { ...short, max_tokens: 1 },
      { headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` } },
    );

  it("answers 429 with Retry-After in OpenAI's shape once a key has made its requests, and other keys go on", async () => {
    // The emulated limiter counts in fixed 60 s windows: a window that turns over during the loop
    // grants up to LIMIT more, so the refusal comes after LIMIT to 2 * LIMIT requests.
    const statuses: number[] = [];
    let refused: Response | undefined;
    while (!refused && statuses.length <= 2 * LIMIT) {
      const response = await as('sk-test-one');
      statuses.push(response.status);
      if (response.status === 429) refused = response;
      else await response.arrayBuffer();
    }
    expect(refused, `statuses: ${statuses}`).toBeDefined();
    expect(statuses.slice(0, LIMIT)).toEqual(Array(LIMIT).fill(200));
    expect(refused!.headers.get('retry-after')).toBe('60');
    expect(await refused!.json()).toEqual({
      error: {
        message: 'Rate limit reached for requests. Please try again in 60s.',
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
    const other = await as('sk-test-two');
    expect(other.status).toBe(200);
    await other.arrayBuffer();
  });

  it('limits POST /v1/* only: /health and /v1/models still answer', async () => {
    expect((await fetch(`${limited.url}/health`)).status).toBe(200);
    const models = await fetch(`${limited.url}/v1/models`, { headers: { authorization: 'Bearer sk-test-one' } });
    expect(models.status).toBe(200);
    await models.arrayBuffer();
  });
});

describe('admission: one generation at a time, no queue', () => {
  let single: RunningWorker;
  beforeAll(async () => {
    single = await worker({ vars: { ...SLOW, MAX_ACTIVE_GENERATIONS: '1', MAX_QUEUED_GENERATIONS: '0' } });
  });

  it('refuses a second stream with 503 and Retry-After while the first runs, and accepts it once the first ended', async () => {
    const first = sseEvents(await post(`${single.url}/v1/completions`, long));
    await first.next(); // the start chunk
    expect(JSON.parse((await first.next()).value as string).choices[0].finish_reason).toBeNull(); // a token: still generating

    const refused = await post(`${single.url}/v1/completions`, { ...short, stream: true });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect((await refused.json()).error).toMatchObject({ type: 'service_unavailable', code: 'server_overloaded' });
    const chat = await post(`${single.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 2,
    });
    expect(chat.status).toBe(503);
    await chat.arrayBuffer();

    const rest: string[] = [];
    for await (const data of first) rest.push(data);
    expect(rest.at(-1)).toBe('[DONE]');

    const accepted = await post(`${single.url}/v1/completions`, { ...short, stream: true });
    expect(accepted.status).toBe(200);
    const events: string[] = [];
    for await (const data of sseEvents(accepted)) events.push(data);
    expect(events.at(-1)).toBe('[DONE]');
  });

  it('frees the slot of a stream whose client disconnected', async () => {
    const before = await health(single);
    await streamThenDisconnect(`${single.url}/v1/completions`, long, 2);
    // Polled, not timed: the slot frees when the worker notices the closed socket.
    await expect
      .poll(
        async () => {
          const response = await post(`${single.url}/v1/completions`, short);
          await response.arrayBuffer();
          return response.status;
        },
        { timeout: 20_000, interval: 50 },
      )
      .toBe(200);
    expect((await health(single)).cancelled_generations).toBe(before.cancelled_generations + 1);
  });

  it('refuses a prompt of 1 MB with 400 context_length_exceeded, before tokenizing it', async () => {
    const prompt = 'The '.repeat(250_000);
    const text = await post(`${single.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
    expect(text.status).toBe(400);
    const { error } = await text.json();
    expect(error).toMatchObject({ type: 'invalid_request_error', param: 'prompt', code: 'context_length_exceeded' });
    expect(error.message).toMatch(
      /^This model's maximum context length is 128 tokens\. However, your prompt is 1000000 bytes long, which is at least \d+ tokens \(no token is longer than \d+ bytes\)\.$/,
    );
    const chat = await post(`${single.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: prompt }] });
    expect(chat.status).toBe(400);
    expect((await chat.json()).error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
  });
});

describe('admission: a short queue', () => {
  let queued: RunningWorker;
  beforeAll(async () => {
    // The wait is long so that only a freed slot, never the clock, decides what happens.
    queued = await worker({ vars: { ...SLOW, MAX_ACTIVE_GENERATIONS: '1', MAX_QUEUED_GENERATIONS: '1', QUEUE_WAIT_MS: '60000' } });
  });

  it('lets one request wait, refuses the next, and hands the slot of a disconnected stream to the waiting one', async () => {
    const first = openStream(`${queued.url}/v1/completions`, long);
    await first.events.next(); // the start chunk: it holds the slot
    const waiting = post(`${queued.url}/v1/completions`, short);
    await expect.poll(async () => (await health(queued)).queued_generations, { timeout: 20_000, interval: 20 }).toBe(1);

    const refused = await post(`${queued.url}/v1/completions`, short);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    await refused.arrayBuffer();

    first.disconnect();
    const admitted = await waiting;
    expect(admitted.status).toBe(200);
    expect((await admitted.json()).usage.completion_tokens).toBeGreaterThan(0);
    expect((await health(queued)).queued_generations).toBe(0);
  });
});
