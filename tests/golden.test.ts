/**
 * The independent check of the graph builder: the committed demo checkpoints, built into bundles
 * (f32 tables) and run by the TypeScript engine, reproduce the logits the PyTorch model of
 * training/ computed for fixed prompts (tests/fixtures/golden/, written by training/golden.py),
 * over the prefill and over cached decode steps.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { openLocalBundle } from '../cli/local-bundle.ts';
import { flexmem } from './helpers/cli.ts';
import { tempDir } from './helpers/fixtures.ts';

interface Golden {
  vocab_size: number;
  prompts: { text: string; prompt_ids: number[]; continuation_ids: number[]; logits_f32_b64: string }[];
}

const models = ['flex', 'meki'].filter((m) => existsSync(join('models', m, 'config.json')));
const dir = tempDir();
afterAll(() => dir.remove());

describe.each(models)('the committed %s checkpoint', (model) => {
  const golden = JSON.parse(readFileSync(`tests/fixtures/golden/${model}.json`, 'utf8')) as Golden;

  it('reproduces the PyTorch logits within 1e-3, prefill and cached decode', async () => {
    const bundleDir = join(dir.path, model);
    await buildBundle(join('models', model), bundleDir, { dtype: 'f32', reference: false, progress: false });
    const { decoder, tokenizer } = await openLocalBundle(bundleDir);
    const V = golden.vocab_size;
    let worst = 0;
    for (const prompt of golden.prompts) {
      expect(tokenizer.encode(prompt.text)).toEqual(prompt.prompt_ids);
      const bytes = Buffer.from(prompt.logits_f32_b64, 'base64');
      const expected = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      const state = decoder.start();
      const prefill = await decoder.step(state, prompt.prompt_ids);
      const rows = [prefill.slice((prompt.prompt_ids.length - 1) * V)];
      for (const id of prompt.continuation_ids) rows.push((await decoder.step(state, [id])).slice());
      rows.forEach((row, r) => {
        row.forEach((v, i) => {
          worst = Math.max(worst, Math.abs(v - expected[r * V + i]));
        });
      });
    }
    console.log(`${model}: max |logit - PyTorch| = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-3);
  });

  it("gives the model card's validation perplexity under `flexmem eval` (first 4 windows)", () => {
    const reference = JSON.parse(readFileSync('tests/fixtures/golden/perplexity.json', 'utf8')).models[model].windows_4;
    const result = flexmem('eval', join(dir.path, model), '--text', 'training/data/valid.txt', '--windows', '4', '--json');
    expect(result.status, result.stderr).toBe(0);
    const measured = JSON.parse(result.stdout);
    expect(measured.predictedTokens).toBe(reference.tokens_scored);
    expect(Math.abs(measured.perplexity / reference.ppl - 1)).toBeLessThan(1e-4);
  });
});
