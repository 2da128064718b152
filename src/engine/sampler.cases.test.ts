/** Which token a given random draw picks: the order of the draw and the edges of each filter. */
import { describe, expect, it } from 'vitest';
import type { Random } from '../util/random.ts';
import { argmax, sampleToken, type SamplingOptions, topLogProbabilities } from './sampler.ts';

/** A generator that always returns `u` (u = 1 stands for a draw that rounding left at the very top). */
const fixed = (u: number) => ({ next: () => u }) as unknown as Random;
const f32 = (values: number[]) => Float32Array.from(values);
const plain: SamplingOptions = { temperature: 1, topK: 0, topP: 1 };
const draw = (logits: number[], u: number, options: Partial<SamplingOptions> = {}) =>
  sampleToken(f32(logits), { ...plain, ...options }, fixed(u));

describe('sampleToken: the order of the draw', () => {
  // Weights at T = 1: [0.5, 1, 0.5] of 2. In id order u = 0.6 lands on token 1; in likelihood
  // order (1, 0, 2) it lands on token 0.
  const logits = [0, Math.LN2, 0];

  it('draws in id order when nothing filters, whatever top_k says when it keeps everything', () => {
    expect(draw(logits, 0.6)).toBe(1);
    expect(draw(logits, 0.6, { topK: 3 })).toBe(1);
    expect(draw(logits, 0.6, { topK: 4 })).toBe(1);
    expect(draw(logits, 0.1)).toBe(0);
    expect(draw(logits, 0.9)).toBe(2);
  });

  it('draws most likely first under top-k or top-p, ties by id', () => {
    // Top-2 keeps tokens 1 and 0 (weights 1 and 0.5): u = 0.8 lands on token 0.
    expect(draw(logits, 0.8, { topK: 2 })).toBe(0);
    expect(draw(logits, 0.6, { topK: 2 })).toBe(1);
    expect(draw(logits, 0.6, { topP: 0.99 })).toBe(0);
    expect(draw(logits, 0.9, { topP: 0.99 })).toBe(2);
    // Three equal logits: ids 0, 1, 2 in that order.
    expect(draw([1, 1, 1], 0.1, { topP: 0.99 })).toBe(0);
    expect(draw([1, 1, 1], 0.5, { topP: 0.99 })).toBe(1);
    expect(draw([1, 1, 1], 0.9, { topP: 0.99 })).toBe(2);
  });

  it('divides the logits by the temperature under top-k', () => {
    // T = 2: weights [1, 3^-1/2 = 0.577]; token 0 has 0.634 of the mass, so u = 0.8 picks token 1.
    expect(draw([Math.log(3), 0, -10], 0.8, { topK: 2, temperature: 2 })).toBe(1);
    // T = 0.5: [1, 1/9]: token 0 has 0.9.
    expect(draw([Math.log(3), 0, -10], 0.8, { topK: 2, temperature: 0.5 })).toBe(0);
  });

  it('is argmax at temperature 0', () => {
    expect(draw([0, 3, 1], 0.99, { temperature: 0 })).toBe(1);
  });
});

describe('sampleToken: the edges of the filters', () => {
  it('keeps a token whose weight is exactly min_p', () => {
    const logits = f32([0, -0.75, -5]);
    const minP = Math.exp(logits[1]);
    expect(sampleToken(logits, { ...plain, topK: 2, minP }, fixed(0.99))).toBe(1);
    expect(sampleToken(logits, { ...plain, minP }, fixed(0.99))).toBe(1);
    expect(sampleToken(logits, { ...plain, topK: 2, minP: minP * 1.0001 }, fixed(0.99))).toBe(0);
  });

  it('stops top-p at the first prefix that reaches p exactly', () => {
    // Two equal tokens (the third's weight underflows to 0): the first alone holds 0.5.
    expect(draw([0, 0, -1000], 0.9, { topP: 0.5 })).toBe(0);
    expect(draw([0, 0, -1000], 0.9, { topP: 0.51 })).toBe(1);
  });

  it('keeps what min_p kept, and no more, when rounding leaves the top-p sum short of p', () => {
    // Normalised over the four tokens min_p keeps, these weights sum to 0.9999999999999998.
    const logits = [0, -0.027027027681469917, -0.027027027681469917, -0.837837815284729, -5];
    expect(draw(logits, 0.9999, { minP: 0.05, topP: 1 - 2 ** -53 })).toBe(3);
  });

  it('skips tokens whose weight is zero at the start of the draw', () => {
    // min_p drops token 0 in the unfiltered draw; under top-k, token 2's weight underflows to 0.
    expect(draw([-5, 0, 0], 0, { minP: 0.5 })).toBe(1);
    expect(draw([0, 0, -1000], 0.5, { topK: 3, topP: 0.999 })).toBe(1);
  });

  it('gives the last token still in the draw when rounding leaves the draw at the very top', () => {
    // Without filters: the last token min_p kept (tokens 3 and 4 are dropped).
    expect(draw([0, 0, 0, -9, -9], 1, { minP: 0.5 })).toBe(2);
    expect(draw([0, 0, 0, 0, 0], 1)).toBe(4);
    expect(draw([-9, 0, -9], 1, { minP: 0.5 })).toBe(1);
    // With top-k: the last kept candidate, not the next one.
    expect(draw([0, 1, 2, 3], 1, { topK: 2 })).toBe(2);
    expect(draw([3, 2, 1, 0], 1, { topK: 3, minP: 0.3 })).toBe(1);
  });
});

describe('topLogProbabilities and argmax', () => {
  it('gives the k most likely with their log-probabilities, ties by id, at most the vocabulary', () => {
    const logits = f32([Math.log(1), Math.log(3), Math.log(3), Math.log(1)]);
    const top = topLogProbabilities(logits, 3);
    expect(top.map((t) => t.id)).toEqual([1, 2, 0]);
    expect(top[0].logprob).toBeCloseTo(Math.log(3 / 8), 6);
    expect(top[2].logprob).toBeCloseTo(Math.log(1 / 8), 6);
    expect(topLogProbabilities(logits, 9).map((t) => t.id)).toEqual([1, 2, 0, 3]);
    expect(topLogProbabilities(logits, 0)).toEqual([]);
    expect(topLogProbabilities(f32([2, 2, 2]), 2).map((t) => t.id)).toEqual([0, 1]);
  });

  it('argmax takes the first of equal maxima and looks at the last value', () => {
    expect(argmax(f32([1, 5, 5]))).toBe(1);
    expect(argmax(f32([1, 2, 7]))).toBe(2);
  });
});
