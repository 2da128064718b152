import { describe, expect, it } from 'vitest';
import { StaleWhileError } from './stale-while-error.ts';

/** A cell over a scripted origin and a hand-moved clock. */
function setup() {
  const clock = { now: 0 };
  const logs: string[] = [];
  const origin = { value: 'v1' as string | null, failing: false, reads: 0, gate: null as Promise<void> | null };
  const cell = new StaleWhileError<string>(
    async () => {
      origin.reads++;
      if (origin.gate) await origin.gate;
      if (origin.failing) throw new Error('origin down');
      return origin.value;
    },
    (key) => `models/${key}.json`,
    { ttlMs: 1000, maxStaleMs: 10_000, settleMs: 3000, now: () => clock.now, log: (m) => logs.push(m) },
  );
  return { clock, logs, origin, cell };
}

describe('a value that keeps serving while re-reads fail', () => {
  it('is read at most once per TTL', async () => {
    const { clock, origin, cell } = setup();
    expect(await cell.get('m')).toBe('v1');
    clock.now = 1000;
    origin.value = 'v2';
    expect(await cell.get('m')).toBe('v1');
    expect(origin.reads).toBe(1);
    clock.now = 1001;
    expect(await cell.get('m')).toBe('v2');
    expect(origin.reads).toBe(2);
  });

  it('serves the held value when a re-read fails, logs the episode once, and its end', async () => {
    const { clock, logs, origin, cell } = setup();
    await cell.get('m');
    origin.failing = true;
    for (let t = 1; t <= 5; t++) {
      clock.now = t * 1500;
      expect(await cell.get('m')).toBe('v1');
    }
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/^models\/m\.json cannot be read \(origin down\); serving the value read 1\.5 s ago, for up to 10 s$/);
    origin.failing = false;
    origin.value = 'v2';
    clock.now = 9000;
    await cell.get('m'); // in the episode nobody waits: this one starts the read and gets v1
    expect(await cell.get('m')).toBe('v2');
    expect(logs[1]).toMatch(/^models\/m\.json can be read again, after 7\.5 s of failures$/);
  });

  it('fails once the held value is older than maxStaleMs', async () => {
    const { clock, logs, origin, cell } = setup();
    await cell.get('m');
    origin.failing = true;
    clock.now = 5000;
    expect(await cell.get('m')).toBe('v1');
    clock.now = 10_001;
    await expect(cell.get('m')).rejects.toThrow('origin down');
    await expect(cell.get('m')).rejects.toThrow('origin down');
    expect(logs.filter((l) => /too old to serve/.test(l))).toHaveLength(1);
  });

  it('does not make a request wait for a read another request started', async () => {
    const { clock, origin, cell } = setup();
    await cell.get('m');
    let open = () => {};
    origin.gate = new Promise((resolve) => {
      open = resolve;
    });
    origin.value = 'v2';
    clock.now = 2000;
    const first = cell.get('m');
    expect(await cell.get('m')).toBe('v1'); // while the first one reads
    open();
    expect(await first).toBe('v2');
    expect(origin.reads).toBe(2);
  });

  it("without a held value a failure is the caller's, and a gone value (null) is not kept", async () => {
    const { origin, cell } = setup();
    origin.failing = true;
    await expect(cell.get('m')).rejects.toThrow('origin down');
    origin.failing = false;
    origin.value = null;
    expect(await cell.get('m')).toBeNull();
    expect(await cell.get('m')).toBeNull();
    expect(origin.reads).toBe(3);
  });
});
