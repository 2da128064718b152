/** What the CLI's `init`, `eval` and `--reference` do, checked against results computed here. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle } from '../cli/local-bundle.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';

const EVAL_TEXT = 'tests/fixtures/eval.txt';
const dir = tempDir();
/** int8 tables and reference.onnx: the two graphs give measurably different perplexities. */
let bundle: string;
let plain: string; // without reference.onnx
beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'memoryllm', { reference: true, dtype: 'int8' });
  plain = await buildTinyBundle(dir.path, 'flex', { reference: false });
});
afterAll(() => dir.remove());

async function cli(...args: string[]): Promise<string> {
  const result = await flexmemAsync(args);
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

/** Every file of a folder, by name, as bytes. */
const filesOf = (folder: string) => Object.fromEntries(readdirSync(folder).map((f) => [f, readFileSync(join(folder, f))]));

describe('flexmem init', () => {
  it('writes identical files for the same seed, and other weights (only) for another seed', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((name) => join(dir.path, `init-${name}`));
    await Promise.all([
      cli('init', a, '--arch', 'meki', '--seed', '3'),
      cli('init', b, '--arch', 'meki', '--seed', '3'),
      cli('init', c, '--arch', 'meki', '--seed', '4'),
    ]);
    const [A, B, C] = [a, b, c].map(filesOf);
    expect(Object.keys(A).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    expect(B).toEqual(A);
    expect(Object.keys(C).sort()).toEqual(Object.keys(A).sort());
    expect(C['config.json']).toEqual(A['config.json']);
    expect(C['tokenizer.json']).toEqual(A['tokenizer.json']);
    expect(C['model.safetensors'].byteLength).toBe(A['model.safetensors'].byteLength);
    expect(C['model.safetensors'].equals(A['model.safetensors'])).toBe(false);
  });
});

describe('flexmem eval', () => {
  /**
   * Perplexity written out here: non-overlapping windows of the context, each fed in one step
   * (eval feeds chunks of 64 through the KV cache), log-softmax in float64.
   */
  async function perplexityByHand(text: string, graph: 'compute' | 'reference' = 'compute', maxWindows = Infinity) {
    const { decoder, tokenizer } = await openLocalBundle(bundle, graph);
    const V = decoder.config.vocab_size;
    const C = decoder.config.max_position_embeddings;
    const ids = tokenizer.encode(text);
    let nll = 0;
    let predicted = 0;
    for (let start = 0, w = 0; start + 1 < ids.length && w < maxWindows; start += C, w++) {
      const inputs = ids.slice(start, Math.min(start + C, ids.length - 1));
      const logits = await decoder.step(decoder.start(), inputs);
      inputs.forEach((_, i) => {
        const row = logits.subarray(i * V, (i + 1) * V);
        const max = Math.max(...row);
        const logSum = Math.log(row.reduce((sum, l) => sum + Math.exp(l - max), 0)) + max;
        nll += logSum - row[ids[start + i + 1]];
        predicted++;
      });
    }
    return { perplexity: Math.exp(nll / predicted), predictedTokens: predicted, tokens: ids.length, C };
  }
  const evalJson = async (...args: string[]) => JSON.parse(await cli('eval', bundle, '--text', EVAL_TEXT, '--json', ...args));
  let whole: Promise<Record<string, number>> | undefined;
  /** `eval` over the whole text, run once for the tests that need it. */
  const evalWhole = () => {
    whole ??= evalJson();
    return whole;
  };

  it('prints the perplexity computed here, over every window; --windows limits them', async () => {
    const expected = await perplexityByHand(readFileSync(EVAL_TEXT, 'utf8'));
    expect(expected.tokens).toBeGreaterThan(2 * expected.C); // several windows, the last one partial
    const [all, one] = await Promise.all([evalWhole(), evalJson('--windows', '1')]);
    expect(all.windows).toBe(Math.ceil((expected.tokens - 1) / expected.C));
    expect(all.predictedTokens).toBe(expected.tokens - 1);
    expect(all.perplexity).toBeCloseTo(expected.perplexity, 3);
    expect(Math.abs(all.perplexity / expected.perplexity - 1)).toBeLessThan(1e-5);
    const first = await perplexityByHand(readFileSync(EVAL_TEXT, 'utf8'), 'compute', 1);
    expect(one).toMatchObject({ windows: 1, predictedTokens: expected.C });
    expect(Math.abs(one.perplexity / first.perplexity - 1)).toBeLessThan(1e-5);
    // Control: the first window alone has another perplexity than the whole text, beyond the tolerance.
    expect(Math.abs(first.perplexity / expected.perplexity - 1)).toBeGreaterThan(1e-3);
  });

  it('--reference evaluates reference.onnx (memory computed in the graph, not read from the int8 tables)', async () => {
    const text = readFileSync(EVAL_TEXT, 'utf8');
    const [tables, reference] = await Promise.all([evalWhole(), evalJson('--reference')]);
    const byHand = await perplexityByHand(text, 'reference');
    expect(Math.abs(reference.perplexity / byHand.perplexity - 1)).toBeLessThan(1e-5);
    // Control: the int8 tables' perplexity is another one (6e-4 apart), beyond that tolerance (but close: quantization).
    const gap = Math.abs(reference.perplexity / tables.perplexity - 1);
    expect(gap).toBeGreaterThan(2e-4);
    expect(gap).toBeLessThan(1e-2);
  });
});

describe('--reference', () => {
  it('is refused, in one line, for a bundle built without reference.onnx', async () => {
    for (const command of [
      ['run', plain, '--prompt', 'The', '--reference'],
      ['eval', plain, '--text', EVAL_TEXT, '--reference'],
    ]) {
      const result = await flexmemAsync(command);
      expect(result.status).toBe(1);
      expect(result.stderr.trim()).toMatch(/^flexmem: bundle .* has no reference graph \(build it with --reference\)$/);
    }
  });
});
