/**
 * Streams and cancellation, on a worker made slow on purpose: every row comes from an origin
 * 50 ms away (no isolate, Cache API or hot-set tier), so each token waits one round trip and a
 * 100-token generation needs at least 5 s. What the tests check then does not depend on how fast
 * this machine computes: a stream is observed while it is still generating, and a disconnect is
 * noticed long before a generation that ignored it could finish.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { sseEvents } from './helpers/sse.ts';
import { pollUntil, within } from './helpers/deadline.ts';
import { get, post, serveBundle, startWorker, streamThenDisconnect, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'slow';
const TOKENS = 100;
const dir = tempDir();
let worker: RunningWorker;

beforeAll(async () => {
  const bundle = await buildTinyBundle(dir.path, 'meki', { reference: false });
  worker = await startWorker({ vars: { ORIGIN_LATENCY_MS: '50', ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' } });
  await serveBundle(worker, bundle, MODEL);
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

interface Health {
  active_generations: number;
  tokens_generated: number;
  cancelled_generations: number;
}
const health = async () => (await get(`${worker.url}/health`)).json() as Promise<Health>;
const request = { model: MODEL, prompt: 'The', max_tokens: TOKENS, temperature: 0, stream: true };

describe('a stream', () => {
  it('delivers its first token while the generation is still running (not a buffered body)', async () => {
    const events = sseEvents(await post(`${worker.url}/v1/completions`, { ...request, stream_options: { include_usage: true } }));
    await within(10_000, 'the start chunk', events.next());
    const first = JSON.parse((await within(10_000, 'the first token', events.next())).value as string);
    expect(first.choices[0].finish_reason).toBeNull();
    expect((await health()).active_generations).toBe(1);
    const rest: string[] = [];
    // At least TOKENS origin round trips of 50 ms: 5 s, and a minute at most.
    await within(
      60_000,
      'the rest of the stream',
      (async () => {
        for await (const data of events) rest.push(data);
      })(),
    );
    expect(rest.at(-1)).toBe('[DONE]');
    expect(JSON.parse(rest.at(-2)!).usage.completion_tokens).toBe(TOKENS);
    expect((await health()).active_generations).toBe(0);
  });

  it('stops generating when the client disconnects, and no compute keeps burning', async () => {
    const before = await health();
    await streamThenDisconnect(`${worker.url}/v1/completions`, request, 2);
    // Polled, not timed: the count drops when the worker notices the closed socket.
    const after = await pollUntil(
      'the worker noticing the disconnect and ending the generation',
      health,
      (h) => h.active_generations === before.active_generations,
      { timeoutMs: 20_000, everyMs: 20 },
    );
    expect(after.cancelled_generations).toBe(before.cancelled_generations + 1);
    // Far from all of them: a generation that ignored the disconnect would produce all 100.
    expect(after.tokens_generated - before.tokens_generated).toBeLessThan(TOKENS / 2);
    // Three origin round trips later, the token count still stands.
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await health()).tokens_generated).toBe(after.tokens_generated);
  });
});
