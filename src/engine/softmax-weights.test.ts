import { describe, expect, it } from 'vitest';
import { Random } from '../util/random.ts';
import { fastCumulativeWeights, fastSoftmaxWeights, RELATIVE_ERROR } from './softmax-weights.ts';

describe('fastSoftmaxWeights', () => {
  it('stays within its assumed relative error of Math.exp, and sums within its bound', () => {
    const rng = new Random(8);
    for (const temperature of [0.1, 0.8, 3]) {
      const logits = Float32Array.from({ length: 5000 }, () => rng.normal() * 4);
      const top = Math.max(...logits);
      const fast = fastSoftmaxWeights(logits, top, temperature, 0);
      expect(fast).not.toBeNull();
      if (fast === null) return;
      let exactTotal = 0;
      let worst = 0;
      for (let i = 0; i < logits.length; i++) {
        const exact = Math.exp((logits[i] - top) / temperature);
        exactTotal += exact;
        if (exact > 1e-15) worst = Math.max(worst, Math.abs(fast.weights[i] - exact) / exact);
      }
      expect(worst).toBeLessThan(RELATIVE_ERROR);
      expect(worst).toBeGreaterThan(RELATIVE_ERROR / 10); // the bound is not loose either
      expect(Math.abs(fast.total - exactTotal)).toBeLessThan(fast.errorBound);
    }
  });

  it('weighs 0 from exp(−36) down, -Infinity included, and exp(−36 + δ) not', () => {
    // At temperature 1 a logit 36 below the top is exactly where the table ends.
    const logits = Float32Array.from([0, -35.99, -36, -80, Number.NEGATIVE_INFINITY]);
    const weights = fastSoftmaxWeights(logits, 0, 1, 0)?.weights;
    expect(weights?.[1]).toBeCloseTo(Math.exp(-35.99), 20);
    expect(weights?.[1]).toBeGreaterThan(0);
    expect([weights?.[2], weights?.[3], weights?.[4]]).toEqual([0, 0, 0]);
  });

  it('applies min_p exactly at the threshold, and refuses NaN', () => {
    const logits = Float32Array.from([0, -0.75, -5]);
    const minP = Math.exp(-0.75);
    const fast = fastSoftmaxWeights(logits, 0, 1, minP);
    expect(fast?.weights[1]).toBe(minP);
    expect(fast?.weights[2]).toBe(0);
    expect(fastSoftmaxWeights(logits, 0, 1, minP * (1 + 1e-15))?.weights[1]).toBe(0);
    expect(fastSoftmaxWeights(Float32Array.from([0, Number.NaN]), 0, 1, 0)).toBeNull();
  });

  it('gives the running sums of the same weights, bit for bit, in one pass', () => {
    const rng = new Random(9);
    const logits = Float32Array.from({ length: 3001 }, () => rng.normal() * 4);
    const top = Math.max(...logits);
    const weights = Float64Array.from(fastSoftmaxWeights(logits, top, 0.8, 0)?.weights.subarray(0, logits.length) ?? []);
    const running = fastCumulativeWeights(logits, top, 0.8);
    let sum = 0;
    for (let i = 0; i < logits.length; i++) {
      sum += weights[i];
      if (running?.cumulative[i] !== sum) expect.fail(`running sum ${i}: ${running?.cumulative[i]} against ${sum}`);
    }
    expect(running?.total).toBe(sum);
    expect(fastCumulativeWeights(Float32Array.from([0, Number.NaN]), 0, 1)).toBeNull();
  });
});
