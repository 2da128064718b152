import { describe, expect, it } from 'vitest';
import { memorySlices, parseConfig, rowWidth } from './config.ts';
import { presetConfig } from './presets.ts';

describe('config', () => {
  it('fills defaults and derives the memory layout', () => {
    const config = parseConfig({ ...presetConfig('tiny', 'flex'), memory_layers: [3, 1] });
    expect(config.head_dim).toBe(16);
    expect(config.memory_layers).toEqual([1, 3]);
    expect(memorySlices(config).map((s) => [s.layer, s.kind, s.offset])).toEqual([
      [1, 'additive', 0],
      [3, 'additive', 64],
    ]);
    expect(rowWidth(config)).toBe(128);
  });

  it.each([
    [{ architecture: 'rwkv' }, /unknown architecture "rwkv"/],
    [{ num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/],
    [{ memory_layers: [9] }, /memory_layers has layer 9, but the model has 4 layers/],
    [{ memory_dim: undefined }, /memory_dim is required for architecture meki/],
    [{ vocab_size: -5 }, /vocab_size/],
    [{ eos_token_id: 999 }, /eos_token_id 999 is outside the vocabulary/],
  ])('refuses %j', (change, message) => {
    expect(() => parseConfig({ ...presetConfig('tiny', 'meki'), ...change })).toThrow(message);
  });
});
