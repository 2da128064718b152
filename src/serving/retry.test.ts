import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InternalError } from '../errors.ts';
import { StoreHttpError } from '../storage/store-error.ts';
import { OriginUnavailableError, withinPolicy } from './retry.ts';

const policy = { attempts: 3, deadlineMs: 300, backoffMs: 10 };

/** A read that fails with `errors` in turn, then answers "ok"; it counts its calls. */
function flaky(...errors: Error[]) {
  const read = async () => {
    read.calls++;
    const error = errors.shift();
    if (error) throw error;
    return 'ok';
  };
  read.calls = 0;
  return read;
}

/**
 * The policy's deadline is wall time, as it must be in production; the tests run it on a clock of
 * their own, because on a loaded machine real timers fire late and a late timer eats the time of
 * the attempts after it (this file failed that way with two test suites running at once).
 */
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** `work`'s outcome once every timer it sets (attempt timeouts, backoffs) has run. */
async function settled<T>(work: Promise<T>): Promise<T | unknown> {
  const outcome = work.catch((error: unknown) => error);
  await vi.runAllTimersAsync();
  return outcome;
}

describe('the origin read policy', () => {
  it('tries again after a dropped connection, a 5xx, a 408 or a 429', async () => {
    for (const error of [
      new TypeError('Network connection lost.'),
      new StoreHttpError('HTTP 503', 503),
      new StoreHttpError('HTTP 429', 429),
    ]) {
      const read = flaky(error, new StoreHttpError('HTTP 408', 408));
      expect(await settled(withinPolicy(policy, 'k', 0, read))).toBe('ok');
      expect(read.calls).toBe(3);
    }
  });

  it('gives up after its attempts: an OriginUnavailableError naming the read and the last error', async () => {
    const read = flaky(...Array.from({ length: 5 }, () => new StoreHttpError('S3 GET k: HTTP 500', 500)));
    const error = (await settled(withinPolicy(policy, 'k', 0, read))) as Error;
    expect(error).toBeInstanceOf(OriginUnavailableError);
    expect(error.message).toMatch(/^reading k failed after 3 attempts in \d+ ms: S3 GET k: HTTP 500$/);
    expect(read.calls).toBe(3);
  });

  it('does not retry a refused read (a 4xx other than 408 and 429)', async () => {
    const read = flaky(new StoreHttpError('S3 GET k: HTTP 403', 403));
    const error = (await settled(withinPolicy(policy, 'k', 0, read))) as Error;
    expect(error).toBeInstanceOf(InternalError);
    expect(error).not.toBeInstanceOf(OriginUnavailableError);
    expect(read.calls).toBe(1);
  });

  it('aborts hung attempts and ends at the deadline, each attempt with its own signal', async () => {
    const signals: AbortSignal[] = [];
    const hung = (signal: AbortSignal) => {
      signals.push(signal);
      return new Promise<never>(() => {});
    };
    const started = Date.now();
    expect(await settled(withinPolicy(policy, 'k', 0, hung))).toBeInstanceOf(OriginUnavailableError);
    expect(signals).toHaveLength(3);
    expect(signals.every((s) => s.aborted)).toBe(true);
    // The attempts share the deadline: the last one ends with it, not a backoff or a share later.
    expect(Date.now() - started).toBe(policy.deadlineMs);
  });

  it('gives a hung first attempt up early enough for a retry to succeed', async () => {
    let calls = 0;
    const read = (signal: AbortSignal) =>
      ++calls === 1 ? new Promise<never>(() => {}) : Promise.resolve(signal.aborted ? 'aborted' : 'ok');
    expect(await settled(withinPolicy(policy, 'k', 0, read))).toBe('ok');
    expect(calls).toBe(2);
  });
});
