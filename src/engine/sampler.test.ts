import { describe, expect, it } from 'vitest';
import { Random } from '../util/random.ts';
import { argmax, logProbability, sampleToken, type SamplingOptions } from './sampler.ts';

const logits = Float32Array.from([0.1, 2.0, 1.9, -1, 0.5]);

describe('sampler', () => {
  it('is greedy at temperature 0', () => {
    expect(sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, new Random(1))).toBe(1);
  });

  it('gives the same tokens for the same seed, and other tokens for another seed', () => {
    const draw = (seed: number) => {
      const rng = new Random(seed);
      return Array.from({ length: 40 }, () => sampleToken(logits, { temperature: 1, topK: 0, topP: 1 }, rng));
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(new Set(draw(42)).size).toBeGreaterThan(2);
  });

  it('keeps only the top k, and only the nucleus of mass p', () => {
    const rng = new Random(3);
    const topTwo = new Set(Array.from({ length: 200 }, () => sampleToken(logits, { temperature: 1, topK: 2, topP: 1 }, rng)));
    expect([...topTwo].sort()).toEqual([1, 2]);
    const nucleus = new Set(Array.from({ length: 200 }, () => sampleToken(logits, { temperature: 1, topK: 0, topP: 0.01 }, rng)));
    expect([...nucleus]).toEqual([1]);
  });

  it('computes log-probabilities that normalise', () => {
    const total = [0, 1, 2, 3, 4].reduce((s, i) => s + Math.exp(logProbability(logits, i)), 0);
    expect(total).toBeCloseTo(1, 6);
    expect(argmax(logits)).toBe(1);
  });
});

describe('min_p', () => {
  // p_i / p_max = exp((l_i − l_max) / T); at T = 1: [0.150, 1, 0.905, 0.050, 0.223].
  const drawn = (options: Partial<SamplingOptions>, draws = 400) => {
    const rng = new Random(5);
    const all = { temperature: 1, topK: 0, topP: 1, ...options };
    return [...new Set(Array.from({ length: draws }, () => sampleToken(logits, all, rng)))].sort();
  };

  it('keeps the tokens with p ≥ min_p · p_max', () => {
    expect(drawn({ minP: 0.5 })).toEqual([1, 2]);
    expect(drawn({ minP: 0.2 })).toEqual([1, 2, 4]);
    expect(drawn({ minP: 1 })).toEqual([1]);
    expect(drawn({ minP: 0 })).toEqual([0, 1, 2, 3, 4]);
  });

  it('applies after temperature: at T = 0.5 the ratios square', () => {
    // [0.022, 1, 0.819, 0.002, 0.050]
    expect(drawn({ minP: 0.2, temperature: 0.5 })).toEqual([1, 2]);
  });

  it('combines with top-k and top-p (over what min_p keeps)', () => {
    expect(drawn({ minP: 0.2, topK: 4 })).toEqual([1, 2, 4]);
    expect(drawn({ minP: 0.2, topK: 2 })).toEqual([1, 2]);
    // Over all five, tokens 1 and 2 hold 0.818 of the mass, so top_p 0.85 needs token 4 too;
    // renormalised over min_p's {1, 2, 4} they hold 0.895, so it keeps {1, 2}.
    expect(drawn({ topP: 0.85 })).toEqual([1, 2, 4]);
    expect(drawn({ minP: 0.2, topP: 0.85 })).toEqual([1, 2]);
  });
});
