/** f16 and int8 tables must keep `flexmem eval` perplexity within 1% of f32 tables. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';

const EVAL_TEXT = 'tests/fixtures/eval.txt';

function evalPerplexity(bundle: string, text = EVAL_TEXT, extra: string[] = []): number {
  const out = execFileSync('node', ['bin/flexmem.js', 'eval', bundle, '--text', text, '--json', ...extra], { encoding: 'utf8' });
  return JSON.parse(out).perplexity;
}

describe.each(['memoryllm', 'flex', 'meki'] as const)('%s tables', (arch) => {
  const dir = tempDir();
  const perplexities: Record<string, number> = {};

  beforeAll(async () => {
    for (const dtype of ['f32', 'f16', 'int8'] as const) {
      const bundle = await buildTinyBundle(dir.path, arch, { dtype, reference: false }, `${arch}-${dtype}`);
      perplexities[dtype] = evalPerplexity(bundle);
    }
    console.log(`${arch} eval perplexity: ${JSON.stringify(perplexities)}`);
  });
  afterAll(() => dir.remove());

  it.each(['f16', 'int8'])('%s perplexity is within 1% of f32', (dtype) => {
    expect(Math.abs(perplexities[dtype] / perplexities.f32 - 1)).toBeLessThan(0.01);
  });

  it('the quantized tables are not the f32 tables (the comparison can fail)', () => {
    expect(perplexities.int8).not.toBe(perplexities.f32);
  });
});

describe.each(['flex', 'meki'].filter((m) => existsSync(join('models', m, 'config.json'))))('the trained %s model', (model) => {
  const dir = tempDir();
  const perplexities: Record<string, number> = {};

  beforeAll(async () => {
    for (const dtype of ['f32', 'f16', 'int8'] as const) {
      const bundle = join(dir.path, dtype);
      await buildBundle(join('models', model), bundle, { dtype, reference: false, progress: false });
      perplexities[dtype] = evalPerplexity(bundle, 'training/data/valid.txt', ['--windows', '8']);
    }
    console.log(`trained ${model}, validation perplexity (8 windows): ${JSON.stringify(perplexities)}`);
  });
  afterAll(() => dir.remove());

  it.each(['f16', 'int8'])('%s perplexity is within 1% of f32', (dtype) => {
    expect(Math.abs(perplexities[dtype] / perplexities.f32 - 1)).toBeLessThan(0.01);
  });
});
