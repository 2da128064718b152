/** `flexmem plan` must reproduce the papers' own figures, computed from the presets' configs. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.ts';
import { presetConfig } from '../src/model/presets.ts';
import { flexmem } from './helpers/cli.ts';
import { tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';

const planOf = (...args: string[]) => {
  const result = flexmem('plan', ...args, '--json');
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
};
const d = 2048;
const embedding = 128256 * d; // tied: counted once

describe('flexmem plan', () => {
  it('MemoryLLM-1B: tables of about 6,304M values = 12.6 GB at fp16', () => {
    const result = flexmem('plan', '--preset', 'memoryllm-1b');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/tables\s+6,304M \(6\.30B\) values/);
    expect(result.stdout).toMatch(/f16\s+12\.6 GB/);
    const plan = planOf('--preset', 'memoryllm-1b');
    expect(plan.tableValues).toBe(24 * 2048 * 128256);
    expect(plan.tableBytes.f16).toBe(2 * 24 * 2048 * 128256);
  });

  // MemoryLLM's Table 5: 24 layers, d 2048, 32 heads of full MHA, FFN width 5464. Non-embedding
  // active parameters: the paper's figures are the weight matrices rounded down to millions; ours
  // add the RMSNorm weights (2,048 per norm).
  it.each([
    ['memoryllm', 'attention only', 24 * 4 * d * d + 25 * d, /without embedding\s+402M params/],
    [
      'dense',
      'the dense base, FFN on the residual',
      24 * (4 * d * d + 3 * d * 5464) + 49 * d,
      /without embedding\s+1,208M \(1\.21B\) params/,
    ],
    ['flex', 'Flex-3h²: FFN-C of 3d² per layer', 24 * (4 * d * d + 3 * d * d) + 49 * d, /without embedding\s+704M params/],
  ])("MemoryLLM-1B as %s (%s): the paper's non-embedding active count", (arch, _what, expected, line) => {
    const result = flexmem('plan', '--preset', 'memoryllm-1b', '--arch', arch);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(line);
    const plan = planOf('--preset', 'memoryllm-1b', '--arch', arch);
    expect(plan.activeParamsWithoutEmbedding).toBe(expected);
    expect(plan.embeddingParams).toBe(embedding);
    expect(plan.activeParams).toBe(expected + embedding);
  });

  it('Flex-βh² moves FFN-C out of FFN-M: same checkpoint as the dense base, same tables as MemoryLLM', () => {
    const config = parseConfig(presetConfig('memoryllm-1b', 'flex'));
    expect([config.ffn_c_intermediate_size, config.memory_intermediate_size]).toEqual([2048, 5464 - 2048]);
    const [dense, memoryllm, flex] = ['dense', 'memoryllm', 'flex'].map((arch) => planOf('--preset', 'memoryllm-1b', '--arch', arch));
    // Every weight of the dense layer is kept, plus FFN-M's own input norm (LN_l) per layer.
    expect(flex.checkpointParams - dense.checkpointParams).toBe(24 * d);
    expect(flex.tableValues).toBe(memoryllm.tableValues);
    // β = 1.5: FFN-C width d/2, 1.5·d² per layer.
    const half = planOf('--preset', 'memoryllm-1b', '--arch', 'flex', '--beta', '1.5');
    expect(half.activeParamsWithoutEmbedding).toBe(24 * (4 * d * d + 1.5 * d * d) + 49 * d);
    expect(half.checkpointParams).toBe(flex.checkpointParams);
    expect(flexmem('plan', '--preset', 'memoryllm-1b', '--arch', 'flex', '--beta', '1').stderr).toMatch(
      /FFN-C width β·h\/3 \(682\.6+\) that is a whole number/,
    );
    expect(flexmem('plan', '--preset', 'tiny', '--arch', 'flex', '--beta', '3').stderr).toMatch(
      /--beta sizes a flex derived from a preset's FFN budget \(memoryllm-1b/,
    );
  });

  it("MeKi-1.7B: tables of 1.09B values and 14,336 bytes per token at fp16, with MeKi's RoPE θ and RMSNorm ε", () => {
    const result = flexmem('plan', '--preset', 'meki-1.7b');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/tables\s+1,087M \(1\.09B\) values/);
    expect(result.stdout).toMatch(/f16\s+2\.2 GB, 14\.3 KB fetched per token \(14,336 bytes\)/);
    const plan = planOf('--preset', 'meki-1.7b');
    expect(plan.tableValues).toBe(28 * 256 * 151680);
    expect(plan.bytesPerToken.f16).toBe(14336);
    // The MeKi backbone is Qwen3-1.7B: about 1.7B active parameters.
    expect(plan.activeParams / 1e9).toBeCloseTo(1.75, 1);
    expect(plan.activeParams - plan.activeParamsWithoutEmbedding).toBe(151680 * d);
    const config = parseConfig(presetConfig('meki-1.7b'));
    expect([config.rope_theta, config.rms_norm_eps]).toEqual([500000, 1e-6]);
  });

  it('plans a checkpoint folder, and a dense model has no tables', () => {
    const dir = tempDir();
    try {
      writeTinyCheckpoint(dir.path, 'dense');
      const plan = planOf(dir.path);
      expect(plan.architecture).toBe('dense');
      expect(plan.tableValues).toBe(0);
      expect(plan.totalToActive).toBe(1);
      expect(flexmem('plan', dir.path, '--beta', '3').stderr).toMatch(/--beta sizes a preset's flex/);
    } finally {
      dir.remove();
    }
  });
});
