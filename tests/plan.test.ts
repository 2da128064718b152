/** `flexmem plan` must reproduce the papers' own figures. */
import { describe, expect, it } from 'vitest';
import { flexmem } from './helpers/cli.ts';
import { tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';

describe('flexmem plan', () => {
  it('MemoryLLM-1B: tables of about 6,304M values = 12.6 GB at fp16', () => {
    const result = flexmem('plan', '--preset', 'memoryllm-1b');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/tables\s+6,304M \(6\.30B\) values/);
    expect(result.stdout).toMatch(/f16\s+12\.6 GB/);
    const plan = JSON.parse(flexmem('plan', '--preset', 'memoryllm-1b', '--json').stdout);
    expect(plan.tableValues).toBe(24 * 2048 * 128256);
    expect(plan.tableBytes.f16).toBe(2 * 24 * 2048 * 128256);
  });

  it('MeKi-1.7B: tables of 1.09B values and about 14 KB per token at fp16', () => {
    const result = flexmem('plan', '--preset', 'meki-1.7b');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/tables\s+1,087M \(1\.09B\) values/);
    expect(result.stdout).toMatch(/f16\s+2\.2 GB, 14\.3 KB fetched per token/);
    const plan = JSON.parse(flexmem('plan', '--preset', 'meki-1.7b', '--json').stdout);
    expect(plan.tableValues).toBe(28 * 256 * 151680);
    expect(plan.bytesPerToken.f16).toBe(28 * 256 * 2);
    // The MeKi backbone is Qwen3-1.7B: about 1.7B active parameters.
    expect(plan.activeParams / 1e9).toBeCloseTo(1.75, 1);
  });

  it('plans a checkpoint folder, and a dense model has no tables', () => {
    const dir = tempDir();
    try {
      writeTinyCheckpoint(dir.path, 'dense');
      const plan = JSON.parse(flexmem('plan', dir.path, '--json').stdout);
      expect(plan.architecture).toBe('dense');
      expect(plan.tableValues).toBe(0);
      expect(plan.totalToActive).toBe(1);
    } finally {
      dir.remove();
    }
  });
});
