import { describe, expect, it } from 'vitest';
import { LogitAdjuster } from './logit-adjustments.ts';

const logits = () => Float32Array.from([2, -1, 0.5, 3, -2]);

describe('logit adjustments', () => {
  it('leaves the logits alone (no copy) when nothing applies', () => {
    const raw = logits();
    const adjuster = new LogitAdjuster({ bias: new Map(), presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1 }, new Set([0]));
    adjuster.accept(1);
    expect(adjuster.active).toBe(false);
    expect(adjuster.apply(raw)).toBe(raw);
  });

  it('applies bias, repetition, frequency and presence as computed by hand, on a copy', () => {
    const raw = logits();
    const adjuster = new LogitAdjuster(
      { bias: new Map([[3, -1]]), repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25 },
      new Set([0, 1]),
    );
    for (const id of [1, 4, 1]) adjuster.accept(id);
    // bias: l3 = 3 − 1 = 2. repetition over prompt {0, 1} ∪ output {1, 4}: l0 = 2 / 2 = 1,
    // l1 = −1 · 2 = −2, l4 = −2 · 2 = −4. Then c1 = 2: l1 = −2 − (2 · 0.25 + 0.5) = −3;
    // c4 = 1: l4 = −4 − (0.25 + 0.5) = −4.75. l2 is untouched.
    expect([...adjuster.apply(raw)]).toEqual([1, -3, 0.5, 2, -4.75]);
    expect([...raw]).toEqual([2, -1, 0.5, 3, -2]);
  });

  it('penalises only generated tokens with presence and frequency (not the prompt)', () => {
    const adjuster = new LogitAdjuster({ presencePenalty: 1, frequencyPenalty: 1 }, new Set([0, 1, 2]));
    expect([...adjuster.apply(logits())]).toEqual([2, -1, 0.5, 3, -2]);
    adjuster.accept(3);
    adjuster.accept(3);
    // l3 = 3 − (2 · 1 + 1) = 0
    expect([...adjuster.apply(logits())]).toEqual([2, -1, 0.5, 0, -2]);
  });

  it('adds the bias before the repetition penalty, as vLLM does', () => {
    const adjuster = new LogitAdjuster({ bias: new Map([[0, 2]]), repetitionPenalty: 2 }, new Set([0]));
    // (2 + 2) / 2 = 2, not 2 / 2 + 2 = 3
    expect(adjuster.apply(logits())[0]).toBe(2);
  });

  it('encourages repeats with a repetition penalty below 1, and a negative presence penalty', () => {
    const adjuster = new LogitAdjuster({ repetitionPenalty: 0.5, presencePenalty: -1 }, new Set([2]));
    adjuster.accept(1);
    // l1 = −1 · 0.5 + 1 = 0.5; l2 = 0.5 / 0.5 = 1
    expect([...adjuster.apply(logits())]).toEqual([2, 0.5, 1, 3, -2]);
  });
});
