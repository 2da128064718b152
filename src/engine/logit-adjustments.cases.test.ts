import { describe, expect, it } from 'vitest';
import { LogitAdjuster } from './logit-adjustments.ts';

const logits = () => Float32Array.from([2, -1, 0.5, 3, -2]);

describe('logit adjustments, one at a time', () => {
  it('applies a frequency penalty alone', () => {
    const adjuster = new LogitAdjuster({ frequencyPenalty: 0.5 }, new Set());
    expect(adjuster.active).toBe(true);
    adjuster.accept(0);
    adjuster.accept(0);
    expect([...adjuster.apply(logits())]).toEqual([1, -1, 0.5, 3, -2]);
  });

  it('applies a repetition penalty alone, to the prompt and the output', () => {
    const adjuster = new LogitAdjuster({ repetitionPenalty: 2 }, new Set([3]));
    expect(adjuster.active).toBe(true);
    adjuster.accept(1);
    expect([...adjuster.apply(logits())]).toEqual([2, -2, 0.5, 1.5, -2]);
  });

  it('applies a presence penalty or a bias alone', () => {
    const presence = new LogitAdjuster({ presencePenalty: 1 }, new Set());
    expect(presence.active).toBe(true);
    presence.accept(2);
    expect([...presence.apply(logits())]).toEqual([2, -1, -0.5, 3, -2]);
    const bias = new LogitAdjuster({ bias: new Map([[4, 5]]) }, new Set());
    expect(bias.active).toBe(true);
    expect([...bias.apply(logits())]).toEqual([2, -1, 0.5, 3, 3]);
  });
});
