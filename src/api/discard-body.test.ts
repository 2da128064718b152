import { expect, it } from 'vitest';
import { discardBody } from './discard-body.ts';
import { drainCap } from './read-body.ts';

const LIMIT = 1000;

/** A POST whose body is `chunks` chunks of `size` bytes, recording how much was read and whether it was cancelled. */
function request(chunks: number, size: number, headers: Record<string, string> = {}) {
  const seen = { bytes: 0, cancelled: false };
  let left = chunks;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left-- === 0) return controller.close();
      seen.bytes += size;
      controller.enqueue(new Uint8Array(size));
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  return { seen, request: new Request('http://x/', { method: 'POST', body, headers, duplex: 'half' } as RequestInit) };
}

it('reads a body within the drain cap to its end', async () => {
  const { seen, request: r } = request(30, 100);
  await discardBody(r, LIMIT);
  expect(seen.bytes).toBe(3000);
});

it('stops reading past the drain cap', async () => {
  const { seen, request: r } = request(1_000_000, 1000);
  await discardBody(r, LIMIT);
  expect(seen.bytes).toBeGreaterThan(drainCap(LIMIT));
  expect(seen.bytes).toBeLessThan(drainCap(LIMIT) + 10_000);
  expect(seen.cancelled).toBe(true);
});

it('does not read a body declared longer than the drain cap', async () => {
  const { seen, request: r } = request(10, 100, { 'content-length': String(drainCap(LIMIT) + 1) });
  await discardBody(r, LIMIT);
  expect(seen.bytes).toBeLessThanOrEqual(100); // at most what the stream buffered before the first read
  expect(seen.cancelled).toBe(true);
});
