/**
 * The independent oracle: the TypeScript engine (a bundle built by `flexmem build`, f32 tables,
 * served through cli/local-bundle.ts) must reproduce the logits and perplexity that the PyTorch
 * model of training/ (model.py, code the TypeScript does not share) computed for the same weights.
 *
 * - Every architecture on a tiny random checkpoint (tests/fixtures/golden/tiny-<arch>.json, by
 *   training/golden_tiny.py). The checkpoint is not committed: `writeRandomCheckpoint` makes it
 *   again here, and its sha256 must be the one PyTorch read.
 * - The trained demo models models/flex and models/meki (tests/fixtures/golden/{flex,meki}.json and
 *   perplexity.json, by training/golden.py and training/ppl_fixture.py).
 *
 * Logits are compared over the prefill and cached decode steps (the fixtures feed the PyTorch
 * greedy continuation; PyTorch recomputed the whole sequence at every step, without a cache).
 * Perplexity is `perplexity()` of src/engine/perplexity.ts, the function `flexmem eval` runs.
 *
 * Every bound is a measured difference times a stated margin, and each has controls: broken
 * inputs that must fail the same check.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { readCheckpoint, writeCheckpoint } from '../cli/checkpoint.ts';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { writeRandomCheckpoint } from '../cli/random-checkpoint.ts';
import { f16round } from '@petamoriken/float16';
import type { RowSource } from '../src/bundle/row-source.ts';
import type { Decoder } from '../src/engine/decoder.ts';
import { perplexity } from '../src/engine/perplexity.ts';
import type { Architecture } from '../src/model/config.ts';
import { checkpointTensors } from '../src/model/tensors.ts';
import { tempDir } from './helpers/fixtures.ts';
import { type Golden, readGolden } from './helpers/golden.ts';

interface TinyGolden extends Golden {
  generator: { preset: string; arch: Architecture; seed: number; dtype: 'f32' | 'f16' };
  sha256: Record<string, string>;
  perplexity: { text: string; token_ids: number[]; predicted_tokens: number; ppl: number };
}

// ---- bounds -------------------------------------------------------------------------------------
// Largest differences from PyTorch measured on the x86-64 machine that wrote this (onnxruntime-node
// 1.30 against Debian's PyTorch 1.13 on OpenBLAS, both float32):
//   tiny random models: max |logit| 3.10e-6 (dense), relative perplexity 3.3e-8 (memoryllm);
//   trained models:     max |logit| 4.29e-6 (flex and meki), relative perplexity 6.5e-7 (meki,
//                       PyTorch summing the NLL of 1,024 tokens in float32).
// Both sides sum in float32 in different orders, and another CPU (other SIMD kernels) sums in
// other orders again: the tolerance is the measurement times a margin of 10.
const MARGIN = 10;
const TINY = { logits: 3.1e-6 * MARGIN, perplexity: 3.3e-8 * MARGIN };
const TRAINED = { logits: 4.29e-6 * MARGIN, perplexity: 6.5e-7 * MARGIN };

// ---- helpers ------------------------------------------------------------------------------------

function floats(b64: string): Float32Array {
  const bytes = Buffer.from(b64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** max |logit - golden| over every fixture row: one prefill step, then one cached step per continuation token. */
async function maxDiffFromGolden(decoder: Decoder, golden: Golden): Promise<number> {
  const V = golden.vocab_size;
  let worst = 0;
  for (const prompt of golden.prompts) {
    const expected = floats(prompt.logits_f32_b64);
    const [rows] = prompt.logits_shape;
    const state = decoder.start();
    const served = [await decoder.step(state, prompt.prompt_ids)];
    for (const id of prompt.continuation_ids) served.push((await decoder.step(state, [id])).slice());
    const all = new Float32Array(served.reduce((n, a) => n + a.length, 0));
    let at = 0;
    for (const a of served) {
      all.set(a, at);
      at += a.length;
    }
    const first = prompt.prompt_ids.length + prompt.continuation_ids.length - rows;
    for (let i = 0; i < rows * V; i++) worst = Math.max(worst, Math.abs(all[first * V + i] - expected[i]));
  }
  return worst;
}

const relative = (a: number, b: number) => Math.abs(a / b - 1);

/** The rows of token t + 1 served for token t: a table read at the wrong index. */
const rowsOfNextToken = (source: RowSource, V: number): RowSource => ({
  rowValues: source.rowValues,
  rows: (ids) => source.rows(ids.map((t) => (t + 1) % V)),
});

/** Rows rounded to f16: what f16 tables would feed the graph. */
const f16Rows = (source: RowSource): RowSource => ({
  rowValues: source.rowValues,
  rows: async (ids) => (await source.rows(ids)).map(f16round),
});

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A copy of a checkpoint with one value of one tensor moved by `delta`. */
function writePerturbedCheckpoint(from: string, to: string, tensor: string, index: number, delta: number): void {
  const checkpoint = readCheckpoint(from);
  const configJson = JSON.parse(readFileSync(join(from, 'config.json'), 'utf8'));
  const specs = checkpointTensors(checkpoint.config);
  expect(specs.map((s) => s.name)).toContain(tensor);
  writeCheckpoint(
    to,
    configJson,
    checkpoint.tokenizerJson as object,
    specs,
    (spec) => {
      const values = checkpoint.weights.tensor(spec.name);
      if (spec.name === tensor) values[index] += delta;
      return values;
    },
    'f32',
  );
}

// One weight per control: in the memory path (folded into the tables) where there is one, and in
// the compute path. These weights are N(0, 1/fan_in), std 0.0625 to 0.25; the control moves the
// first value of one of them (one value out of 1,024 to 16,384) by 0.01.
const PERTURBED: Record<Architecture, string[]> = {
  dense: ['model.layers.1.mlp.down_proj.weight', 'model.layers.1.self_attn.o_proj.weight'],
  memoryllm: ['model.layers.1.memory.down_proj.weight', 'model.layers.1.self_attn.o_proj.weight'],
  flex: ['model.layers.1.memory.down_proj.weight', 'model.layers.1.mlp.down_proj.weight'],
  meki: ['model.layers.1.memory.dynamic.down_proj.weight', 'model.layers.1.memory.out_proj.weight'],
};
const PERTURBATION = 0.01;

const dir = tempDir();
afterAll(() => dir.remove());

describe.each(['dense', 'memoryllm', 'flex', 'meki'] as const)('tiny random %s checkpoint against PyTorch', (arch) => {
  const golden = readGolden<TinyGolden>(`tiny-${arch}`);
  const checkpoint = join(dir.path, `tiny-${arch}`);
  let local: LocalBundle;

  beforeAll(async () => {
    const { preset, seed, dtype } = golden.generator;
    writeRandomCheckpoint(checkpoint, { preset, arch, seed, dtype });
    await buildBundle(checkpoint, join(dir.path, `tiny-${arch}-bundle`), { dtype: 'f32', reference: false, progress: false });
    local = await openLocalBundle(join(dir.path, `tiny-${arch}-bundle`));
  });
  afterAll(() => local?.core.close());

  it('is the checkpoint PyTorch read (the seeded generator is deterministic)', () => {
    for (const [file, hash] of Object.entries(golden.sha256))
      expect(sha256(join(checkpoint, file)), `${file} changed: rerun training/golden_tiny.py`).toBe(hash);
  });

  it(`reproduces the PyTorch logits within ${TINY.logits.toExponential(2)}, prefill and 8 cached decode steps`, async () => {
    for (const prompt of golden.prompts) expect(local.tokenizer.encode(prompt.text)).toEqual(prompt.prompt_ids);
    const worst = await maxDiffFromGolden(local.decoder, golden);
    console.log(`tiny ${arch}: max |logit - PyTorch| = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(TINY.logits);
  });

  it(`reproduces the PyTorch perplexity of ${golden.perplexity.text} within ${TINY.perplexity.toExponential(1)} (relative)`, async () => {
    expect(local.tokenizer.encode(readFileSync(golden.perplexity.text, 'utf8'))).toEqual(golden.perplexity.token_ids);
    const result = await perplexity(local.decoder, golden.perplexity.token_ids);
    expect(result.predictedTokens).toBe(golden.perplexity.predicted_tokens);
    console.log(`tiny ${arch}: perplexity ${result.perplexity} against PyTorch ${golden.perplexity.ppl}`);
    expect(relative(result.perplexity, golden.perplexity.ppl)).toBeLessThanOrEqual(TINY.perplexity);
  });

  it.each(PERTURBED[arch])(`control: one value of %s moved by ${PERTURBATION} fails both checks`, async (tensor) => {
    const name = tensor.replace(/^model\.layers\./, 'l').replaceAll('.', '-');
    writePerturbedCheckpoint(checkpoint, join(dir.path, `${arch}-${name}`), tensor, 0, PERTURBATION);
    await buildBundle(join(dir.path, `${arch}-${name}`), join(dir.path, `${arch}-${name}-bundle`), {
      dtype: 'f32',
      reference: false,
      progress: false,
    });
    const broken = await openLocalBundle(join(dir.path, `${arch}-${name}-bundle`));
    try {
      const logitDiff = await maxDiffFromGolden(broken.decoder, golden);
      const pplDiff = relative((await perplexity(broken.decoder, golden.perplexity.token_ids)).perplexity, golden.perplexity.ppl);
      console.log(
        `tiny ${arch}, ${tensor}[0] + ${PERTURBATION}: max |logit - PyTorch| = ${logitDiff.toExponential(2)}, perplexity ${pplDiff.toExponential(2)}`,
      );
      expect(logitDiff).toBeGreaterThan(TINY.logits);
      expect(pplDiff).toBeGreaterThan(TINY.perplexity);
    } finally {
      await broken.core.close();
    }
  });

  if (arch === 'dense') return; // no memory rows
  it('control: rows of another token fail both checks; rows rounded to f16 fail the logit check', async () => {
    const V = golden.vocab_size;
    const shifted = await maxDiffFromGolden(local.core.decoder(local.bundle, rowsOfNextToken(local.rows!, V)), golden);
    const rounded = await maxDiffFromGolden(local.core.decoder(local.bundle, f16Rows(local.rows!)), golden);
    const shiftedPpl = relative(
      (await perplexity(local.core.decoder(local.bundle, rowsOfNextToken(local.rows!, V)), golden.perplexity.token_ids)).perplexity,
      golden.perplexity.ppl,
    );
    console.log(
      `tiny ${arch}: rows of token t+1: ${shifted.toExponential(2)} (perplexity ${shiftedPpl.toExponential(2)}); f16 rows: ${rounded.toExponential(2)}`,
    );
    expect(shifted).toBeGreaterThan(TINY.logits);
    expect(shiftedPpl).toBeGreaterThan(TINY.perplexity);
    expect(rounded).toBeGreaterThan(TINY.logits);
  });
});

describe.each(['flex', 'meki'] as const)('the committed %s checkpoint against PyTorch', (model) => {
  const golden = readGolden(model);
  const reference = JSON.parse(readFileSync('tests/fixtures/golden/perplexity.json', 'utf8')).models[model].windows_4;
  let local: LocalBundle;
  let validIds: number[];

  beforeAll(async () => {
    await buildBundle(join('models', model), join(dir.path, model), { dtype: 'f32', reference: false, progress: false });
    local = await openLocalBundle(join(dir.path, model));
    // 4 windows need 1,025 tokens: the text up to its first <|endoftext|> (a special token, split
    // out before anything else is tokenized, so these are exactly the first ids of the whole file).
    const text = readFileSync('training/data/valid.txt', 'utf8');
    validIds = local.tokenizer.encode(text.slice(0, text.indexOf('<|endoftext|>') + '<|endoftext|>'.length));
    expect(validIds.length).toBeGreaterThan(reference.tokens_scored);
  });
  afterAll(() => local?.core.close());

  it(`reproduces the PyTorch logits within ${TRAINED.logits.toExponential(2)}, prefill and 8 cached decode steps`, async () => {
    for (const prompt of golden.prompts) expect(local.tokenizer.encode(prompt.text)).toEqual(prompt.prompt_ids);
    const worst = await maxDiffFromGolden(local.decoder, golden);
    console.log(`${model}: max |logit - PyTorch| = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(TRAINED.logits);
  });

  it(`gives the model card's validation perplexity (first 4 windows) within ${TRAINED.perplexity.toExponential(1)}`, async () => {
    const result = await perplexity(local.decoder, validIds, { maxWindows: 4 });
    expect(result.predictedTokens).toBe(reference.tokens_scored);
    console.log(`${model}: perplexity ${result.perplexity} against PyTorch ${reference.ppl}`);
    expect(relative(result.perplexity, reference.ppl)).toBeLessThanOrEqual(TRAINED.perplexity);
  });

  it('control: rows of another token fail both checks; rows rounded to f16 fail the logit check', async () => {
    const V = golden.vocab_size;
    const shifted = local.core.decoder(local.bundle, rowsOfNextToken(local.rows!, V));
    const shiftedLogits = await maxDiffFromGolden(shifted, golden);
    const shiftedPpl = relative((await perplexity(shifted, validIds, { maxWindows: 4 })).perplexity, reference.ppl);
    const rounded = await maxDiffFromGolden(local.core.decoder(local.bundle, f16Rows(local.rows!)), golden);
    console.log(
      `${model}: rows of token t+1: ${shiftedLogits.toExponential(2)} (perplexity ${shiftedPpl.toExponential(2)}); f16 rows: ${rounded.toExponential(2)}`,
    );
    expect(shiftedLogits).toBeGreaterThan(TRAINED.logits);
    expect(shiftedPpl).toBeGreaterThan(TRAINED.perplexity);
    expect(rounded).toBeGreaterThan(TRAINED.logits);
  });
});
