import type { InferenceSession } from 'onnxruntime-common';
import type { StepSession } from '../engine/decoder.ts';

/**
 * Runs one session.run at a time: onnxruntime-web's single wasm instance is not reentrant, and
 * concurrent generations in one isolate interleave their steps through this queue.
 */
export function queuedSession(session: InferenceSession): StepSession {
  let queue: Promise<unknown> = Promise.resolve();
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    release: () => queue.then(() => session.release()),
    run: ((feeds: InferenceSession.FeedsType, fetches?: InferenceSession.FetchesType) => {
      const result = queue.then(() => (fetches ? session.run(feeds, fetches) : session.run(feeds)));
      // The queue keeps only the run's settling, not its outputs: those include every layer's
      // present KV tensors, which it would otherwise hold until the next run (an idle isolate would
      // keep the last request's whole cache).
      queue = result.then(
        () => {},
        () => {},
      );
      return result;
    }) as StepSession['run'],
  };
}
