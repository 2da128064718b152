import type { InferenceSession } from 'onnxruntime-common';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { queuedSession } from './session-queue.ts';

type Outputs = InferenceSession.ReturnType;

/** A session whose runs settle when the test calls their finishers, recording the order they started in. */
function heldSession() {
  const started: number[] = [];
  const finishers: (() => void)[] = [];
  const session = {
    inputNames: ['x'],
    release: async () => {},
    run: (feeds: { x: { data: number } }) =>
      new Promise<Outputs>((resolve) => {
        started.push(feeds.x.data);
        finishers.push(() => resolve({ present: { data: new Float32Array(1 << 16) } } as unknown as Outputs));
      }),
  } as unknown as InferenceSession;
  return { session, started, finishers };
}

const feeds = (x: number) => ({ x: { data: x } }) as unknown as InferenceSession.FeedsType;
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('queuedSession', () => {
  it('starts a run only once the one before it has settled, in the order they were asked', async () => {
    const { session, started, finishers } = heldSession();
    const queued = queuedSession(session);
    const runs = [queued.run(feeds(1)), queued.run(feeds(2)), queued.run(feeds(3))];
    await turn();
    expect(started).toEqual([1]);
    finishers.shift()!();
    await turn();
    expect(started).toEqual([1, 2]);
    finishers.shift()!();
    await turn();
    finishers.shift()!();
    await Promise.all(runs);
    expect(started).toEqual([1, 2, 3]);
  });

  it('does not keep a settled run’s outputs alive (they hold every layer’s KV cache)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const { session, finishers } = heldSession();
    const queued = queuedSession(session);
    let outputs: WeakRef<object> | null = null;
    await (async () => {
      const run = queued.run(feeds(1));
      await turn();
      // shift: a kept resolver would itself keep its promise, and so the outputs, alive.
      finishers.shift()!();
      outputs = new WeakRef(await run);
    })();
    await turn();
    gc();
    expect(outputs!.deref()).toBeUndefined();
  });
});
