import { describe, expect, it } from 'vitest';
import { ApiError } from './errors.ts';
import { DRAIN_SLACK_BYTES, drainCap, readJsonBody } from './read-body.ts';

const LIMIT = 1000;

/** A request body that hands out `chunks` one per read and records how it was consumed. */
function trackedBody(chunks: Uint8Array[]) {
  const seen = { pulls: 0, bytesPulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        const chunk = chunks[seen.pulls++];
        if (!chunk) return controller.close();
        seen.bytesPulled += chunk.byteLength;
        controller.enqueue(chunk);
      },
      cancel() {
        seen.cancelled = true;
      },
    },
    { highWaterMark: 0 }, // nothing is pulled before the reader asks
  );
  return { stream, seen };
}

function post(body: BodyInit | null, headers: Record<string, string> = {}): Request {
  return new Request('http://worker.test/v1/completions', {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
    duplex: 'half',
  } as RequestInit);
}

const bytes = (n: number, fill = 0x20) => new Uint8Array(n).fill(fill);

/** The ApiError that `promise` rejects with. */
async function apiError(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe('readJsonBody', () => {
  it('parses a body within the limit', async () => {
    expect(await readJsonBody(post('{"model":"m","prompt":"x"}'), LIMIT)).toEqual({ model: 'm', prompt: 'x' });
  });

  it('parses a body that arrives in many chunks, a UTF-8 character split across two of them', async () => {
    const json = new TextEncoder().encode(JSON.stringify({ prompt: 'café ☕ '.repeat(20) }));
    const chunks = Array.from({ length: Math.ceil(json.length / 7) }, (_, i) => json.subarray(i * 7, i * 7 + 7));
    const { stream, seen } = trackedBody(chunks);
    expect(await readJsonBody(post(stream), LIMIT)).toEqual({ prompt: 'café ☕ '.repeat(20) });
    expect(seen.bytesPulled).toBe(json.length);
  });

  it('counts the limit in bytes, not characters: exactly the limit passes, one byte more does not', async () => {
    const at = JSON.stringify({ p: 'é'.repeat((LIMIT - 8) / 2) }); // 8 bytes of {"p":""}, 2 bytes per é
    expect(new TextEncoder().encode(at).length).toBe(LIMIT);
    expect(at.length).toBeLessThan(LIMIT);
    expect(await readJsonBody(post(at), LIMIT)).toEqual(JSON.parse(at));
    const error = await apiError(readJsonBody(post(`${at} `), LIMIT));
    expect(error).toMatchObject({ status: 413, code: 'request_too_large', type: 'invalid_request_error', param: null });
    expect(error.message).toBe(`Request body of ${LIMIT + 1} bytes exceeds the limit of ${LIMIT} bytes.`);
  });

  it('refuses malformed JSON and an empty body with 400 invalid_json', async () => {
    for (const body of ['{"model":', '', null]) {
      const error = await apiError(readJsonBody(post(body), LIMIT));
      expect(error).toMatchObject({ status: 400, code: 'invalid_json', param: null });
      expect(error.message).toMatch(/could not parse the JSON body/);
    }
  });

  it('drains a body declared over the limit (but within the drain cap) before refusing it', async () => {
    const chunks = Array.from({ length: 30 }, () => bytes(100)); // 3000 bytes, over 1000, under 1000 + 1 MiB
    const { stream, seen } = trackedBody(chunks);
    const error = await apiError(readJsonBody(post(stream, { 'content-length': '3000' }), LIMIT));
    expect(error).toMatchObject({ status: 413, code: 'request_too_large' });
    expect(error.message).toBe(`Request body of 3000 bytes exceeds the limit of ${LIMIT} bytes.`);
    expect(seen.bytesPulled).toBe(3000); // every byte read: the client finished its upload before the answer
    expect(seen.cancelled).toBe(false);
  });

  it('drains a body without a Content-Length (a stream) once it goes over the limit, then refuses it', async () => {
    const { stream, seen } = trackedBody(Array.from({ length: 25 }, () => bytes(100)));
    const error = await apiError(readJsonBody(post(stream), LIMIT));
    expect(error).toMatchObject({ status: 413, code: 'request_too_large' });
    expect(error.message).toBe(`Request body of 2500 bytes exceeds the limit of ${LIMIT} bytes.`);
    expect(seen.bytesPulled).toBe(2500);
  });

  it('refuses a Content-Length above the drain cap at once, without reading the body', async () => {
    const { stream, seen } = trackedBody([bytes(100)]);
    const declared = drainCap(LIMIT) + 1;
    const error = await apiError(readJsonBody(post(stream, { 'content-length': String(declared) }), LIMIT));
    expect(error).toMatchObject({ status: 413, code: 'request_too_large' });
    expect(error.message).toBe(`Request body of ${declared} bytes exceeds the limit of ${LIMIT} bytes.`);
    expect(seen.pulls).toBe(0);
  });

  it('reads a body declared exactly at the drain cap to its end', async () => {
    const cap = drainCap(LIMIT);
    const { stream, seen } = trackedBody([bytes(cap - 1), bytes(1)]);
    expect((await apiError(readJsonBody(post(stream, { 'content-length': String(cap) }), LIMIT))).status).toBe(413);
    expect(seen.bytesPulled).toBe(cap);
  });

  it('stops reading a stream at the drain cap and cancels it', async () => {
    const chunk = 64 << 10;
    const total = drainCap(LIMIT) + 4 * chunk; // more than the cap, sent without a length
    const { stream, seen } = trackedBody(Array.from({ length: Math.ceil(total / chunk) }, () => bytes(chunk)));
    const error = await apiError(readJsonBody(post(stream), LIMIT));
    expect(error).toMatchObject({ status: 413, code: 'request_too_large' });
    expect(error.message).toBe(`Request body exceeds the limit of ${LIMIT} bytes.`);
    expect(seen.bytesPulled).toBeGreaterThan(drainCap(LIMIT));
    expect(seen.bytesPulled).toBeLessThanOrEqual(drainCap(LIMIT) + chunk); // the chunk that crossed the cap, no more
    expect(seen.cancelled).toBe(true);
  });

  it('ignores a malformed Content-Length and counts the bytes', async () => {
    expect(await readJsonBody(post('{"a":1}', { 'content-length': 'lots' }), LIMIT)).toEqual({ a: 1 });
  });

  it('drains at most the limit plus a fixed slack', () => {
    expect(DRAIN_SLACK_BYTES).toBe(1 << 20);
    expect(drainCap(1 << 20)).toBe(2 << 20);
    expect(drainCap(100 << 20)).toBe(101 << 20);
  });
});
