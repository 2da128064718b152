/**
 * Access control of the real worker in workerd: API keys (plain and sha256), a deployment without
 * keys, CORS for browsers, and the refusals of wrong content types and methods.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { parse } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-flex';
const PLAIN_KEY = 'fm-plain-0123456789abcdef';
const HASHED_KEY = 'fm-hashed-fedcba9876543210';
const APP_ORIGIN = 'https://app.example.com';
const dir = tempDir();
let keyed: RunningWorker;
let unconfigured: RunningWorker;

beforeAll(async () => {
  const bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
  const digest = createHash('sha256').update(HASHED_KEY).digest('hex');
  [keyed, unconfigured] = await Promise.all([
    // ALLOW_ANONYMOUS stays "true" from the test default: configured keys win over it.
    startWorker({ vars: { API_KEYS: ` ${PLAIN_KEY} , sha256:${digest}`, CORS_ORIGINS: `${APP_ORIGIN}, http://localhost:5173` } }),
    startWorker({ vars: { ALLOW_ANONYMOUS: 'false' } }),
  ]);
  await serveBundle(keyed, bundle, MODEL);
});
afterAll(async () => {
  await Promise.all([keyed?.dispose(), unconfigured?.dispose()]);
  dir.remove();
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const completion = { model: MODEL, prompt: 'The President said', max_tokens: 4, temperature: 0 };

/** An OpenAI-shaped error with this status and code, carrying a request id like every response. */
async function expectError(response: Response, status: number, code: string, message: RegExp): Promise<Record<string, any>> {
  expect(response.status).toBe(status);
  expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
  const body = await response.json();
  expect(body).toEqual({ error: { message: expect.stringMatching(message), type: expect.any(String), param: null, code } });
  return body.error;
}

describe('API keys', () => {
  it('a request without a key is a 401 in OpenAI shape, with WWW-Authenticate', async () => {
    const response = await fetch(`${keyed.url}/v1/models`);
    const error = await expectError(response, 401, 'invalid_api_key', /^You didn't provide an API key/);
    expect(error.type).toBe('invalid_request_error');
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    await expectError(await post(`${keyed.url}/v1/completions`, completion), 401, 'invalid_api_key', /didn't provide/);
    await expectError(
      await fetch(`${keyed.url}/v1/models`, { headers: { authorization: `Basic ${btoa(`user:${PLAIN_KEY}`)}` } }),
      401,
      'invalid_api_key',
      /didn't provide/,
    );
  });

  it('a wrong key is a 401 that shows only a redacted form of it', async () => {
    const wrong = 'fm-wrong-key-0123456789';
    const error = await expectError(
      await fetch(`${keyed.url}/v1/models`, { headers: bearer(wrong) }),
      401,
      'invalid_api_key',
      /^Incorrect API key provided: fm-\*\*\*\*6789\.$/,
    );
    expect(error.message).not.toContain(wrong);
    // A prefix of a real key, or a real key with a byte more, is no key.
    for (const near of [PLAIN_KEY.slice(0, -1), `${PLAIN_KEY}x`, `sha256:${createHash('sha256').update(HASHED_KEY).digest('hex')}`])
      expect((await fetch(`${keyed.url}/v1/models`, { headers: bearer(near) })).status).toBe(401);
  });

  it('a plain key and a key configured by its sha256 are both accepted', async () => {
    for (const key of [PLAIN_KEY, HASHED_KEY]) {
      const response = await fetch(`${keyed.url}/v1/models`, { headers: bearer(key) });
      expect(response.status).toBe(200);
      expect((await response.json()).data.map((m: { id: string }) => m.id)).toEqual([MODEL]);
    }
    // The scheme is case-insensitive.
    expect((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: `bearer ${PLAIN_KEY}` } })).status).toBe(200);
    const response = await post(`${keyed.url}/v1/completions`, completion, {
      headers: { 'content-type': 'application/json', ...bearer(HASHED_KEY) },
    });
    expect(response.status).toBe(200);
    expect((await response.json()).usage.completion_tokens).toBe(4);
  });

  it('/health is open; every other path needs a key, unknown ones included', async () => {
    expect((await fetch(`${keyed.url}/health`)).status).toBe(200);
    for (const path of ['/metrics', '/tokenize', '/v2/engines'])
      await expectError(await fetch(`${keyed.url}${path}`), 401, 'invalid_api_key', /didn't provide/);
    await expectError(await fetch(`${keyed.url}/v2/engines`, { headers: bearer(PLAIN_KEY) }), 404, 'unknown_url', /Unknown route/);
  });

  it('a deployment without keys refuses to serve, unless ALLOW_ANONYMOUS is "true"', async () => {
    const error = await expectError(
      await fetch(`${unconfigured.url}/v1/models`),
      503,
      'no_api_keys_configured',
      /no API keys configured.*API_KEYS/,
    );
    expect(error.type).toBe('service_unavailable');
    await expectError(await fetch(`${unconfigured.url}/v1/models`, { headers: bearer(PLAIN_KEY) }), 503, 'no_api_keys_configured', /./);
    expect((await fetch(`${unconfigured.url}/health`)).status).toBe(200);
  });

  it('wrangler.toml never switches anonymous access on, in any environment', () => {
    const config = parse(readFileSync('wrangler.toml', 'utf8')) as { vars?: object; env?: Record<string, { vars?: object }> };
    for (const vars of [config.vars, ...Object.values(config.env ?? {}).map((e) => e.vars)]) {
      expect(vars).not.toHaveProperty('ALLOW_ANONYMOUS');
      expect(vars).not.toHaveProperty('API_KEYS'); // a secret, never a var
    }
  });

  it('the official openai client authenticates with its apiKey, and reports a wrong one', async () => {
    const client = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: HASHED_KEY, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me about the Congress.' }],
      max_tokens: 4,
      stream: true,
    });
    let finish: string | null = null;
    for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
    expect(finish).toMatch(/^(length|stop)$/);

    const wrong = new OpenAI({ baseURL: `${keyed.url}/v1`, apiKey: 'sk-not-a-key-of-this-deployment', maxRetries: 0 });
    const error = await wrong.models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((error as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });
});

describe('CORS', () => {
  const preflight = (origin: string) =>
    fetch(`${keyed.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
  /** The headers a browser needs to let the page read this response. */
  const expectCors = (response: Response) => {
    expect(response.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(response.headers.get('vary')).toMatch(/\bOrigin\b/i);
    expect(response.headers.get('access-control-expose-headers')).toMatch(/x-request-id/);
  };

  it('answers a preflight from an allowed origin without a key', async () => {
    const response = await preflight(APP_ORIGIN);
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(response.headers.get('vary')).toMatch(/\bOrigin\b/i);
    expect(response.headers.get('access-control-allow-methods')?.split(',')).toEqual(expect.arrayContaining(['GET', 'POST']));
    expect(response.headers.get('access-control-allow-headers')?.toLowerCase().split(',')).toEqual(['authorization', 'content-type']);
    expect(Number(response.headers.get('access-control-max-age'))).toBeGreaterThan(0);
  });

  it('gives a disallowed origin no CORS headers, on a preflight or a request', async () => {
    const response = await preflight('https://evil.example.net');
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    const request = await fetch(`${keyed.url}/v1/models`, { headers: { origin: 'https://evil.example.net', ...bearer(PLAIN_KEY) } });
    expect(request.status).toBe(200);
    expect(request.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('puts CORS headers on a 401, on a 400 and on a stream', async () => {
    const origin = { origin: APP_ORIGIN };
    const refused = await fetch(`${keyed.url}/v1/models`, { headers: origin });
    expect(refused.status).toBe(401);
    expectCors(refused);

    const invalid = await post(
      `${keyed.url}/v1/completions`,
      { model: MODEL },
      {
        headers: { 'content-type': 'application/json', ...origin, ...bearer(PLAIN_KEY) },
      },
    );
    expect(invalid.status).toBe(400);
    expectCors(invalid);

    const streamed = await post(
      `${keyed.url}/v1/completions`,
      { ...completion, stream: true },
      {
        headers: { 'content-type': 'application/json', ...origin, ...bearer(PLAIN_KEY) },
      },
    );
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expectCors(streamed);
    expect((await readAllEvents(streamed)).at(-1)).toBe('[DONE]');
  });
});

describe('content type and methods', () => {
  it('refuses a POST body that is not declared JSON with a 415', async () => {
    const body = JSON.stringify(completion);
    // A cross-site form or fetch can send text/plain without a preflight.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const response = await post(`${keyed.url}/v1/completions`, body, { headers: { 'content-type': type, ...bearer(PLAIN_KEY) } });
      await expectError(response, 415, 'unsupported_media_type', /^Unsupported Content-Type .*application\/json/);
    }
    const charset = await post(`${keyed.url}/v1/completions`, body, {
      headers: { 'content-type': 'Application/JSON; charset=utf-8', ...bearer(PLAIN_KEY) },
    });
    expect(charset.status).toBe(200);
    await charset.arrayBuffer();
  });

  it('reads a refused body that is somewhat over the limit, so the client gets the answer, not a reset', async () => {
    // As an oversized body is drained before its 413 (src/api/read-body.ts); 1.5 MiB is within the drain cap.
    const oversized = JSON.stringify({ ...completion, prompt: 'x'.repeat(1.5 * (1 << 20)) });
    for (let i = 0; i < 3; i++) {
      await expectError(await post(`${keyed.url}/v1/completions`, oversized), 401, 'invalid_api_key', /didn't provide/);
      await expectError(
        await post(`${keyed.url}/v1/completions`, oversized, { headers: { 'content-type': 'text/plain', ...bearer(PLAIN_KEY) } }),
        415,
        'unsupported_media_type',
        /text\/plain/,
      );
    }
  });

  it('a known route asked with another method is a 405 with Allow', async () => {
    const get = await fetch(`${keyed.url}/v1/completions`, { headers: bearer(PLAIN_KEY) });
    await expectError(get, 405, 'method_not_allowed', /^Method GET is not allowed on \/v1\/completions/);
    expect(get.headers.get('allow')).toBe('POST');
    const del = await fetch(`${keyed.url}/v1/models`, { method: 'DELETE', headers: bearer(PLAIN_KEY) });
    await expectError(del, 405, 'method_not_allowed', /^Method DELETE is not allowed on \/v1\/models/);
    expect(del.headers.get('allow')).toBe('GET, HEAD');
  });
});
