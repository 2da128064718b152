/**
 * The worker against an S3 origin that fails: a fault-injecting proxy (tests/helpers/fault-proxy.ts)
 * sits between the worker and s3rver, and the test decides which requests it slows, fails, cuts or
 * drops, or takes the origin down altogether. What must hold: no wrong output ever (a completed
 * generation equals the fault-free one; anything else is a clear error with a request id), every
 * failure arrives within a bound set by the configured deadline rather than after a minute, and a
 * warm worker keeps serving what it has cached while the origin is down.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishBundle } from '../cli/publish.ts';
import { pointerKey } from '../src/storage/object-store.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { Random } from '../src/util/random.ts';
import { FaultProxy, type Fault } from './helpers/fault-proxy.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { sseEvents } from './helpers/sse.ts';
import { post, startWorker, type RunningWorker } from './helpers/worker.ts';

const ATTEMPTS = 3;
const DEADLINE_MS = 2000;
/** Generous on purpose: it tells "ends at the deadline" from "ends after a minute", not fast from slow. */
const BOUND_MS = 3 * DEADLINE_MS;
const MODEL = 'tiny';
const ROWS = /^GET \S*\/tables\/rows-/;

const dir = tempDir();
let s3: RunningS3;
let proxy: FaultProxy;
let cold: RunningWorker;
let tokenizer: TextTokenizer;
let bundle: string;
let version: string;

/** The worker's origin is the proxy; every origin read runs under the policy set here. */
function originVars(extra: Record<string, string>): Record<string, string> {
  const o = s3.options;
  return {
    ORIGIN: 's3',
    S3_ENDPOINT: proxy.url,
    S3_BUCKET: o.bucket,
    S3_REGION: o.region!,
    S3_ACCESS_KEY_ID: o.accessKeyId,
    S3_SECRET_ACCESS_KEY: o.secretAccessKey,
    STORE_PREFIX: 'edge/',
    ORIGIN_ATTEMPTS: String(ATTEMPTS),
    ORIGIN_DEADLINE_MS: String(DEADLINE_MS),
    ...extra,
  };
}

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'flex', { reference: false, dtype: 'f16' });
  tokenizer = new TextTokenizer(JSON.parse(readFileSync(join(bundle, 'tokenizer.json'), 'utf8')));
  s3 = await startS3('flexmem-bundles', 'edge/');
  proxy = await FaultProxy.start(s3.options.endpoint);
  version = (await publishBundle(s3.store, bundle, { model: MODEL })).version;
  await publishBundle(s3.store, bundle, { model: 'other' });
  // No isolate, hot-set or Cache API tier: every decode step reads its row from the origin.
  cold = await startWorker({ vars: originVars({ ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' }) });
});
afterAll(async () => {
  await cold?.dispose();
  await proxy?.close();
  await s3?.close();
  dir.remove();
});

interface Outcome {
  /** 200 and a complete generation (non-streamed, or streamed up to its finish chunk and [DONE]). */
  ok: boolean;
  /** The text generated (for a failed stream: what arrived before the error event). */
  text: string;
  status: number;
  ms: number;
}

const genericError = (requestId: string) => `The server had an error while processing your request. (request id ${requestId})`;

/**
 * One completion; fails the test unless it either completes or fails clearly: a 5xx whose body
 * carries only the request id, or (once streaming) an error event with that id and nothing after it.
 */
async function complete(worker: RunningWorker, request: object, stream: boolean): Promise<Outcome> {
  const started = performance.now();
  const response = await post(`${worker.url}/v1/completions`, { model: MODEL, max_tokens: 12, ...request, stream });
  const requestId = response.headers.get('x-request-id')!;
  if (!stream || response.status !== 200) {
    const body = await response.json();
    const ms = performance.now() - started;
    if (response.status === 200) return { ok: true, text: body.choices[0].text, status: 200, ms };
    expect([500, 503]).toContain(response.status);
    expect(body.error.message).toBe(genericError(requestId));
    return { ok: false, text: '', status: response.status, ms };
  }
  let text = '';
  let finished = false;
  let failed = false;
  for await (const data of sseEvents(response)) {
    expect(failed).toBe(false); // nothing follows an error event
    if (data === '[DONE]') continue;
    const event = JSON.parse(data);
    if (event.error) {
      expect(event.error.message).toBe(genericError(requestId));
      failed = true;
    } else if (event.choices[0]?.finish_reason) finished = true;
    else text += event.choices[0]?.text ?? '';
  }
  expect(finished !== failed).toBe(true);
  return { ok: finished, text, status: 200, ms: performance.now() - started };
}

const requests = [
  { prompt: 'In the year 1800 the Congress', temperature: 0 },
  { prompt: 'The President said', temperature: 0.9, seed: 7 },
  { prompt: 'We the people', temperature: 0.7, top_k: 40, seed: 123 },
];
const expected = new Map<object, string>();

/** The fault-free outputs, read through the same proxy with no fault set. */
async function reference(request: object): Promise<string> {
  if (!expected.has(request)) {
    const outcome = await complete(cold, request, false);
    expect(outcome.ok).toBe(true);
    expected.set(request, outcome.text);
  }
  return expected.get(request)!;
}

/** Asserts the zero-wrong-outputs rule: complete and equal, or a clear failure with a prefix of the expected text. */
async function expectNoWrongOutput(outcome: Outcome, request: object): Promise<void> {
  const want = await reference(request);
  if (outcome.ok) expect(outcome.text).toBe(want);
  else expect(want.startsWith(outcome.text)).toBe(true);
}

describe('faults the retry policy absorbs', () => {
  const absorbed: [string, Fault][] = [
    ['a 500', { kind: 'status', status: 500 }],
    ['a 503', { kind: 'status', status: 503 }],
    ['a 429', { kind: 'status', status: 429 }],
    ['a reset connection', { kind: 'reset' }],
    ['a truncated body', { kind: 'truncate' }],
    ['a hung read (given up on, then retried)', { kind: 'latency', ms: 10 * DEADLINE_MS }],
  ];
  it.each(absorbed)('%s on row reads changes nothing: outputs equal the fault-free ones', async (_, fault) => {
    for (const request of requests) {
      for (const stream of [false, true]) {
        await reference(request);
        // Fewer faults than attempts: whichever reads they hit, each read succeeds in the end.
        const rule = proxy.inject(ROWS, fault, { times: ATTEMPTS - 1, skip: 1 });
        const outcome = await complete(cold, request, stream);
        proxy.clear();
        expect(rule.hits).toBe(ATTEMPTS - 1);
        expect(outcome.ok).toBe(true);
        await expectNoWrongOutput(outcome, request);
        expect(outcome.ms).toBeLessThan(BOUND_MS);
      }
    }
  });

  it('failing pointer re-reads are retried too', async () => {
    await reference(requests[0]);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // past the pointer TTL (1 s)
    const rule = proxy.inject(
      new RegExp(`^GET \\S*/${pointerKey(MODEL).replace('.', '\\.')}`),
      { kind: 'status', status: 502 },
      { times: 2 },
    );
    const outcome = await complete(cold, requests[0], false);
    proxy.clear();
    expect(rule.hits).toBe(2);
    expect(outcome.ok).toBe(true);
    await expectNoWrongOutput(outcome, requests[0]);
  });
});

describe('faults it does not absorb end the generation clearly, within the deadline', () => {
  it('an origin answering 500 to every row read: a 503 before streaming, an error event after; each read tried ATTEMPTS times', async () => {
    for (const stream of [false, true]) {
      const before = proxy.log.length;
      proxy.inject(ROWS, { kind: 'status', status: 500 }, { times: Infinity });
      const outcome = await complete(cold, requests[0], stream);
      proxy.clear();
      expect(outcome.ok).toBe(false);
      if (!stream) expect(outcome.status).toBe(503);
      expect(outcome.ms).toBeLessThan(BOUND_MS);
      await expectNoWrongOutput(outcome, requests[0]);
      // Retries do not stack: no range is asked for more than ATTEMPTS times.
      const tries = new Map<string, number>();
      for (const r of proxy.log.slice(before).filter((r) => r.fault))
        tries.set(`${r.path} ${r.range}`, (tries.get(`${r.path} ${r.range}`) ?? 0) + 1);
      expect(Math.max(...tries.values())).toBe(ATTEMPTS);
    }
  });

  it('a hung origin: the request fails at the deadline, not after a minute', async () => {
    for (const stream of [false, true]) {
      proxy.inject(ROWS, { kind: 'latency', ms: 60_000 }, { times: Infinity });
      const outcome = await complete(cold, requests[1], stream);
      proxy.clear();
      expect(outcome.ok).toBe(false);
      expect(outcome.ms).toBeLessThan(BOUND_MS);
      await expectNoWrongOutput(outcome, requests[1]);
    }
  });

  it('an origin failing mid-stream: the tokens so far are the right ones, then an error event within the deadline', async () => {
    const want = await reference(requests[0]);
    // Let the prompt's reads and a few decode steps through, then fail every row read.
    proxy.inject(ROWS, { kind: 'status', status: 503 }, { times: Infinity, skip: 8 });
    const response = await post(`${cold.url}/v1/completions`, { model: MODEL, max_tokens: 12, ...requests[0], stream: true });
    const requestId = response.headers.get('x-request-id')!;
    let text = '';
    let lastEventAt = performance.now();
    let error: { message: string } | undefined;
    for await (const data of sseEvents(response)) {
      const event = JSON.parse(data);
      if (event.error) {
        expect(performance.now() - lastEventAt).toBeLessThan(BOUND_MS);
        error = event.error;
      } else text += event.choices[0]?.text ?? '';
      lastEventAt = performance.now();
    }
    proxy.clear();
    expect(error?.message).toBe(genericError(requestId));
    expect(text.length).toBeGreaterThan(0);
    expect(want.startsWith(text) && text !== want).toBe(true);
  });

  it('a refused read (403) is not retried: a 500 at once', async () => {
    const before = proxy.log.length;
    proxy.inject(ROWS, { kind: 'status', status: 403 }, { times: Infinity });
    const outcome = await complete(cold, requests[0], false);
    proxy.clear();
    expect(outcome.status).toBe(500);
    const refused = proxy.log.slice(before).filter((r) => r.fault);
    expect(new Set(refused.map((r) => `${r.path} ${r.range}`)).size).toBe(refused.length);
    await expect.poll(() => cold.logs.some((l) => /HTTP 403/.test(l.message))).toBe(true);
  });

  it('a seeded run of mixed faults: every output equals the fault-free one or is a clear error', async () => {
    const random = new Random(20260502);
    const faults: Fault[] = [
      { kind: 'status', status: 500 },
      { kind: 'status', status: 503 },
      { kind: 'reset' },
      { kind: 'truncate' },
      { kind: 'latency', ms: 30_000 },
      { kind: 'latency', ms: 50 },
    ];
    const tally = { ok: 0, failed: 0 };
    for (let i = 0; i < 24; i++) {
      const request = requests[Math.floor(random.next() * requests.length)];
      await reference(request);
      const fault = faults[Math.floor(random.next() * faults.length)];
      // Up to ATTEMPTS faults: some runs exhaust a read's attempts, most do not.
      proxy.inject(ROWS, fault, { times: 1 + Math.floor(random.next() * ATTEMPTS), skip: Math.floor(random.next() * 12) });
      const outcome = await complete(cold, request, random.next() < 0.5);
      proxy.clear();
      await expectNoWrongOutput(outcome, request);
      expect(outcome.ms).toBeLessThan(BOUND_MS);
      tally[outcome.ok ? 'ok' : 'failed']++;
    }
    expect(tally.ok).toBeGreaterThan(0);
  });
});

describe('a broken pointer', () => {
  it('of one model leaves /v1/models and the other models alone', async () => {
    await s3.store.put(pointerKey('broken'), new TextEncoder().encode('not json'));
    try {
      for (let i = 0; i < 2; i++) {
        const response = await fetch(`${cold.url}/v1/models`);
        expect(response.status).toBe(200);
        const ids = (await response.json()).data.map((m: { id: string; bundle_version: string }) => [m.id, m.bundle_version]);
        expect(ids).toEqual([
          ['other', version],
          [MODEL, version],
        ]);
        await new Promise((resolve) => setTimeout(resolve, 1100)); // past the TTL: read again
      }
      // Left out of the list, and logged once for the two lists.
      expect(cold.logs.filter((l) => /leaves out broken/.test(l.message))).toHaveLength(1);
      const broken = await post(`${cold.url}/v1/completions`, { model: 'broken', prompt: 'The', max_tokens: 2 });
      expect(broken.status).toBe(500);
      const outcome = await complete(cold, { ...requests[0], model: 'other' }, false);
      expect(outcome.text).toBe(await reference(requests[0]));
    } finally {
      await s3.store.delete(pointerKey('broken'));
    }
  });

  it('that was good keeps serving the version it held, logged once', async () => {
    await publishBundle(s3.store, bundle, { model: 'flip' });
    const flip = { ...requests[0], model: 'flip' };
    expect((await complete(cold, flip, false)).ok).toBe(true);
    await s3.store.put(pointerKey('flip'), new TextEncoder().encode('{"version": "../../elsewhere"}'));
    try {
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1100));
        const outcome = await complete(cold, flip, i % 2 === 1);
        expect(outcome.text).toBe(await reference(requests[0]));
      }
      const models = (await (await fetch(`${cold.url}/v1/models`)).json()).data.map((m: { id: string }) => m.id);
      expect(models).toContain('flip');
      expect(cold.logs.filter((l) => /models\/flip\.json cannot be read/.test(l.message))).toHaveLength(1);
    } finally {
      await s3.store.delete(pointerKey('flip'));
    }
  });
});

describe('a warm worker with its origin down', () => {
  let warm: RunningWorker;
  const cached = requests[0];
  // Characters the cached request never saw: its rows are not in the isolate.
  const uncached = { prompt: '9 $ % & # @ 7 ! 3 ?', temperature: 0 };
  const MAX_STALE_SECONDS = 8;

  beforeAll(async () => {
    // Rows stay in the isolate (L0 LRU); no hot set and no Cache API, so nothing else holds them.
    warm = await startWorker({
      vars: originVars({ HOT_SET_BYTES: '0', USE_CACHE_API: 'false', POINTER_MAX_STALE_SECONDS: String(MAX_STALE_SECONDS) }),
    });
  });
  afterAll(async () => {
    await proxy.up().catch(() => {});
    await warm?.dispose();
  });

  it('serves cached rows on the held pointer, fails what needs the origin within the deadline, and recovers', async () => {
    const want = await reference(cached);
    const wantUncached = await reference(uncached);
    expect((await complete(warm, cached, false)).text).toBe(want);
    expect((await fetch(`${warm.url}/v1/models`)).status).toBe(200);
    const seen = new Set([...tokenizer.encode(cached.prompt), ...tokenizer.encode(cached.prompt + want)]);
    expect(tokenizer.encode(uncached.prompt).some((id) => !seen.has(id))).toBe(true);
    // The pointer was just read: the stale window starts now.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await complete(warm, cached, false)).text).toBe(want);

    await proxy.down();
    await new Promise((resolve) => setTimeout(resolve, 1100)); // past the pointer TTL
    const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => complete(warm, cached, i % 2 === 1)));
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(true);
      expect(outcome.text).toBe(want);
    }
    const models = await fetch(`${warm.url}/v1/models`);
    expect(models.status).toBe(200);
    expect((await models.json()).data.map((m: { id: string }) => m.id)).toContain(MODEL);

    for (const stream of [false, true]) {
      const outcome = await complete(warm, uncached, stream);
      expect(outcome.ok).toBe(false);
      if (!stream) expect(outcome.status).toBe(503);
      expect(outcome.ms).toBeLessThan(BOUND_MS);
    }
    // One line for the episode, however many requests ran through it.
    expect(warm.logs.filter((l) => /models\/tiny\.json cannot be read/.test(l.message))).toHaveLength(1);

    // Past POINTER_MAX_STALE_SECONDS the held pointer is not trusted any more.
    await expect
      .poll(async () => (await complete(warm, cached, false)).status, { timeout: (MAX_STALE_SECONDS + 10) * 1000, interval: 500 })
      .toBe(503);

    await proxy.up();
    await expect.poll(async () => (await complete(warm, cached, false)).ok, { timeout: 10_000, interval: 300 }).toBe(true);
    const after = await complete(warm, uncached, true);
    expect(after.ok).toBe(true);
    expect(after.text).toBe(wantUncached);
    expect(warm.logs.some((l) => /models\/tiny\.json can be read again/.test(l.message))).toBe(true);
  });
});
