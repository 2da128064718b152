/**
 * The decode loop both runtimes run for the step benchmarks (onnxruntime-node in Node,
 * onnxruntime-web in workerd): the same Decoder the worker uses, fed a fixed token sequence
 * (no sampling), so every runtime does exactly the same work.
 */
import type { RowSource } from '../../src/bundle/row-source.ts';
import type { Decoder } from '../../src/engine/decoder.ts';

export interface StepPlan {
  /** Token ids: the first `prefill` are one prefill step, then one decode step per id. */
  ids: number[];
  prefill: number;
  /** Decode steps after the prefill (0 measures setup + prefill alone). */
  steps: number;
}

/** A RowSource with no lookup at all: a preallocated block of zeros of the right width. */
export function zeroRows(rowValues: number): RowSource {
  const cache = new Map<number, Float32Array>();
  return {
    rowValues,
    rows: async (ids) => {
      let block = cache.get(ids.length);
      if (!block) {
        block = new Float32Array(ids.length * rowValues);
        cache.set(ids.length, block);
      }
      return block;
    },
  };
}

/** Runs the plan; returns a checksum of the last logits so the work cannot be skipped. */
export async function runSteps(decoder: Decoder, plan: StepPlan): Promise<number> {
  if (plan.prefill + plan.steps > plan.ids.length) throw new Error(`plan needs ${plan.prefill + plan.steps} ids, got ${plan.ids.length}`);
  const { config } = decoder;
  const state = decoder.start();
  // As a generation's prompt: the last position's logits alone.
  let logits = await decoder.step(state, plan.ids.slice(0, plan.prefill), 'last');
  for (let i = 0; i < plan.steps; i++) logits = await decoder.step(state, [plan.ids[plan.prefill + i]]);
  let sum = 0;
  for (let i = logits.length - config.vocab_size; i < logits.length; i++) sum += logits[i];
  return sum;
}

/** Looks up `n` rows one at a time (as decode steps do), cycling through `ids`. */
export async function runLookups(rows: RowSource, ids: number[], n: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (await rows.rows([ids[i % ids.length]]))[0];
  return sum;
}
