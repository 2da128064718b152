import { describe, expect, it } from 'vitest';
import { Random } from '../util/random.ts';
import { argmax, logProbability, sampleToken } from './sampler.ts';

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
