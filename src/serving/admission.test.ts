import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Admission } from './admission.ts';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Admission', () => {
  it('admits up to maxActive at once, queues up to maxQueued, refuses the rest at once', async () => {
    const admission = new Admission({ maxActive: 2, maxQueued: 1, queueWaitMs: 1000 });
    const [a, b] = await Promise.all([admission.acquire(), admission.acquire()]);
    expect(a && b).toBeTruthy();
    const queued = admission.acquire();
    expect(admission.queued).toBe(1);
    expect(await admission.acquire()).toBeNull();
    a!.release();
    expect(await queued).not.toBeNull();
    expect(admission.active).toBe(2);
    expect(admission.queued).toBe(0);
  });

  it('admits waiting requests in arrival order', async () => {
    const admission = new Admission({ maxActive: 1, maxQueued: 3, queueWaitMs: 1000 });
    const first = (await admission.acquire())!;
    const order: number[] = [];
    const waiting = [1, 2, 3].map(async (i) => {
      const slot = await admission.acquire();
      order.push(i);
      return slot;
    });
    first.release();
    (await waiting[0])!.release();
    (await waiting[1])!.release();
    await waiting[2];
    expect(order).toEqual([1, 2, 3]);
  });

  it('refuses a request that waited queueWaitMs, and forgets it', async () => {
    const admission = new Admission({ maxActive: 1, maxQueued: 1, queueWaitMs: 1000 });
    const held = (await admission.acquire())!;
    const waiting = admission.acquire();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await waiting).toBeNull();
    expect(admission.queued).toBe(0);
    held.release();
    expect(admission.active).toBe(0);
  });

  it('refuses at once when there is no queue', async () => {
    const admission = new Admission({ maxActive: 1, maxQueued: 0, queueWaitMs: 1000 });
    await admission.acquire();
    expect(await admission.acquire()).toBeNull();
  });

  it('releases a slot exactly once, by release() or by the abort of its signal', async () => {
    const admission = new Admission({ maxActive: 1, maxQueued: 1, queueWaitMs: 1000 });
    const client = new AbortController();
    const slot = (await admission.acquire(client.signal))!;
    const next = admission.acquire();
    client.abort(); // the client went away: its slot goes to the next in line
    const second = (await next)!;
    expect(admission.active).toBe(1);
    slot.release(); // late and repeated releases of the first slot change nothing
    slot.release();
    expect(admission.active).toBe(1);
    second.release();
    second.release();
    expect(admission.active).toBe(0);
  });

  it('drops a queued request whose client went away, without taking a slot', async () => {
    const admission = new Admission({ maxActive: 1, maxQueued: 2, queueWaitMs: 1000 });
    const held = (await admission.acquire())!;
    const client = new AbortController();
    const gone = admission.acquire(client.signal);
    const after = admission.acquire();
    client.abort();
    expect(await gone).toBeNull();
    expect(admission.queued).toBe(1);
    held.release();
    expect(await after).not.toBeNull();
    expect(admission.active).toBe(1);
  });

  it('refuses a request whose signal has already aborted', async () => {
    const admission = new Admission({ maxActive: 1, maxQueued: 1, queueWaitMs: 1000 });
    expect(await admission.acquire(AbortSignal.abort())).toBeNull();
    expect(admission.active).toBe(0);
  });

  it('needs at least one slot', () => {
    expect(() => new Admission({ maxActive: 0, maxQueued: 0, queueWaitMs: 0 })).toThrow(/at least 1/);
  });
});
