/**
 * sampleToken must pick, for every draw, the token the straightforward sampler picks: random logits
 * of several shapes and sizes, every filter and their edges, and draws placed on the edges between
 * tokens, where the fast path's error bound has to hand over to the exact computation.
 */
import { describe, expect, it } from 'vitest';
import { Random } from '../util/random.ts';
import { sampleToken, type SamplingOptions } from './sampler.ts';
import { referenceDrawInIdOrder, referenceSample } from './sampler-reference.ts';

const fixed = (u: number) => ({ next: () => u }) as unknown as Random;

type Shape = (rng: Random, n: number) => Float32Array;
const shapes: Record<string, Shape> = {
  'gaussian σ 3': (rng, n) => Float32Array.from({ length: n }, () => rng.normal() * 3),
  'peaked (one logit far above)': (rng, n) => {
    const logits = Float32Array.from({ length: n }, () => rng.normal());
    logits[Math.floor(rng.next() * n)] = 25;
    return logits;
  },
  'ties (small integers)': (rng, n) => Float32Array.from({ length: n }, () => Math.floor(rng.next() * 4)),
  'flat (all equal)': (_rng, n) => new Float32Array(n).fill(0.5),
  'wide range with -Infinity (a banned token)': (rng, n) =>
    Float32Array.from({ length: n }, (_, i) => (i % 7 === 3 ? -Infinity : rng.normal() * 40)),
};

function randomOptions(rng: Random): SamplingOptions {
  const pick = <T>(values: T[]) => values[Math.floor(rng.next() * values.length)];
  return {
    temperature: pick([0, 0.05, 0.3, 0.8, 1, 1.7, 10]),
    topK: pick([0, 0, 1, 2, 5, 40, 100, 5000]),
    topP: pick([1, 1, 1e-6, 0.1, 0.5, 0.9, 0.95, 0.999999]),
    minP: pick([undefined, 0, 0, 1e-9, 0.01, 0.1, 0.5, 1]),
  };
}

const expected = (logits: Float32Array, options: SamplingOptions, u: number) =>
  options.temperature === 0 ? Array.prototype.indexOf.call(logits, Math.max(...logits)) : referenceSample(logits, options, u);

describe('sampleToken equals the straightforward sampler', () => {
  for (const [name, shape] of Object.entries(shapes)) {
    it(`on ${name} logits, over random settings, sizes and draws`, () => {
      const rng = new Random(name.length * 7919);
      for (let trial = 0; trial < 300; trial++) {
        const n = [1, 2, 3, 17, 64, 65, 700, 4096][trial % 8];
        const logits = shape(rng, n);
        const options = randomOptions(rng);
        const u = rng.next();
        expect(sampleToken(logits, options, fixed(u)), JSON.stringify({ trial, n, options, u })).toBe(expected(logits, options, u));
      }
    });
  }

  it('at a Llama-3-sized vocabulary (131,072), with and without filters', () => {
    const rng = new Random(3);
    for (let trial = 0; trial < 24; trial++) {
      const logits = shapes[trial % 2 === 0 ? 'gaussian σ 3' : 'peaked (one logit far above)'](rng, 131072);
      const options = { ...randomOptions(rng), temperature: 0.8 };
      if (trial % 3 === 0) options.topK = 0;
      const u = rng.next();
      expect(sampleToken(logits, options, fixed(u)), JSON.stringify({ trial, options, u })).toBe(referenceSample(logits, options, u));
    }
  });

  it('when the draw lands on the edge between two tokens, within rounding of the total', () => {
    const rng = new Random(17);
    for (let trial = 0; trial < 200; trial++) {
      const logits = shapes['gaussian σ 3'](rng, 300);
      const temperature = [0.5, 1, 2][trial % 3];
      const minP = trial % 4 === 0 ? 0.01 : 0;
      // The exact cumulative weight up to a random token, as a fraction of the exact total.
      let top = -Infinity;
      for (const l of logits) top = Math.max(top, l);
      const weights = Array.from(logits, (l) => {
        const w = Math.exp((l - top) / temperature);
        return w < minP ? 0 : w;
      });
      const total = weights.reduce((a, b) => a + b, 0);
      const edge = weights.slice(0, Math.floor(rng.next() * 300)).reduce((a, b) => a + b, 0) / total;
      for (const nudge of [-2e-16, -1e-16, 0, 1e-16, 2e-16, 1e-13]) {
        const u = Math.min(Math.max(edge + nudge, 0), 1 - 2 ** -53);
        const options = { temperature, topK: 0, topP: 1, minP };
        expect(sampleToken(logits, options, fixed(u))).toBe(referenceDrawInIdOrder(logits, temperature, minP, u));
      }
    }
  });

  it('when top-p is reached exactly at a candidate, and min_p keeps a weight exactly equal to it', () => {
    // Weights [1, 1, 0.5, 0.5 …]: the first two hold exactly half of a total of 4 (as with tokens 0..5 here).
    const logits = Float32Array.from([0, 0, -Math.LN2, -Math.LN2, -Math.LN2, -Math.LN2, ...new Array(100).fill(-60)]);
    for (const topP of [0.5, 0.5 + 1e-12, 0.5 - 1e-12])
      for (const u of [0, 0.3, 0.49, 0.51, 0.99]) {
        const options = { temperature: 1, topK: 0, topP, minP: Math.exp(-Math.LN2) };
        expect(sampleToken(logits, options, fixed(u))).toBe(referenceSample(logits, options, u));
      }
  });

  it('keeps a seeded sequence of draws identical over a generation-like loop', () => {
    const rng = new Random(5);
    const logits = shapes['gaussian σ 3'](rng, 32768);
    const options = { temperature: 0.8, topK: 0, topP: 0.95, minP: 0.001 };
    const fast = new Random(99);
    const slow = new Random(99);
    for (let step = 0; step < 40; step++) {
      logits[step * 101] += 9; // a different distribution each step
      expect(sampleToken(logits, options, fast)).toBe(referenceSample(logits, options, slow.next()));
    }
  });
});
