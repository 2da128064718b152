import { describe, expect, it } from 'vitest';
import type { Decoder, DecoderState } from './decoder.ts';
import { perplexity } from './perplexity.ts';
import { logProbability } from './sampler.ts';

const V = 5;

/** Logits that depend on the token and its position in the window, so a wrong target or offset shows. */
const logitsAt = (token: number, position: number) =>
  Float32Array.from({ length: V }, (_, v) => ((token * 3 + position * 7 + v * v) % 11) / 4);

function fakeDecoder(context: number) {
  const steps: { start: number; ids: number[] }[] = [];
  let starts = 0;
  const decoder = {
    config: { vocab_size: V, max_position_embeddings: context },
    start: (): DecoderState => {
      starts++;
      return { length: 0, past: {} };
    },
    async step(state: DecoderState, ids: readonly number[]) {
      if (ids.length === 0) throw new Error('step needs at least one token');
      if (state.length + ids.length > context) throw new Error('past the context');
      steps.push({ start: state.length, ids: [...ids] });
      const out = new Float32Array(ids.length * V);
      ids.forEach((id, i) => {
        out.set(logitsAt(id, state.length + i), i * V);
      });
      state.length += ids.length;
      return out;
    },
  } as unknown as Decoder;
  return { decoder, steps, starts: () => starts };
}

/** Every token but the first, predicted from the one before it at its position in its window. */
function expectedNll(ids: number[], context: number, upTo = ids.length) {
  let nll = 0;
  for (let k = 1; k < upTo; k++) nll -= logProbability(logitsAt(ids[k - 1], (k - 1) % context), ids[k]);
  return nll;
}

const ids = [3, 1, 4, 1, 0, 2, 4, 3, 2, 0];

describe('perplexity', () => {
  it('reads non-overlapping windows of the context, in chunks, predicting every token but the first once', async () => {
    const { decoder, steps, starts } = fakeDecoder(4);
    const result = await perplexity(decoder, ids, { chunk: 3 });
    expect(steps).toEqual([
      { start: 0, ids: [3, 1, 4] },
      { start: 3, ids: [1] },
      { start: 0, ids: [0, 2, 4] },
      { start: 3, ids: [3] },
      { start: 0, ids: [2] },
    ]);
    expect(starts()).toBe(3);
    expect(result.windows).toBe(3);
    expect(result.predictedTokens).toBe(9);
    const mean = expectedNll(ids, 4) / 9;
    expect(result.meanNll).toBeCloseTo(mean, 10);
    expect(result.perplexity).toBeCloseTo(Math.exp(mean), 10);
    expect(result.meanNll).toBeGreaterThan(0);
  });

  it('feeds a window that is a whole number of chunks without an empty step', async () => {
    const { decoder, steps } = fakeDecoder(4);
    const result = await perplexity(decoder, ids.slice(0, 9), { chunk: 2 });
    expect(steps.map((s) => s.ids.length)).toEqual([2, 2, 2, 2]);
    expect(result.predictedTokens).toBe(8);
  });

  it('feeds a whole window at once by default (chunks of 64), and stops after maxWindows', async () => {
    const long = Array.from({ length: 150 }, (_, i) => (i * 7) % V);
    const { decoder, steps } = fakeDecoder(100);
    const all = await perplexity(decoder, long);
    expect(steps.map((s) => [s.start, s.ids.length])).toEqual([
      [0, 64],
      [64, 36],
      [0, 49],
    ]);
    expect(all.predictedTokens).toBe(149);
    expect(all.meanNll).toBeCloseTo(expectedNll(long, 100) / 149, 10);

    const first = fakeDecoder(100);
    const one = await perplexity(first.decoder, long, { maxWindows: 1 });
    expect(one).toMatchObject({ windows: 1, predictedTokens: 100 });
    expect(one.meanNll).toBeCloseTo(expectedNll(long, 100, 101) / 100, 10);
  });

  it('reads nothing from fewer than two tokens', async () => {
    const { decoder, steps } = fakeDecoder(4);
    const result = await perplexity(decoder, [2]);
    expect(steps).toEqual([]);
    expect(result).toMatchObject({ windows: 0, predictedTokens: 0 });
  });
});
