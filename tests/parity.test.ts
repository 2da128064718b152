/**
 * The bundle (compute.onnx + f32 tables) must compute the same model as reference.onnx, which
 * runs the memory path inside the graph; and cached decoding must equal a full recompute.
 *
 * Both checks compare float32 onnxruntime graphs that differ only in where the rows come from
 * (a table read against the same MatMuls inside the graph) or in how the sequence is cut into
 * steps, so the differences are a few float32 roundings. Each bound is the largest difference
 * measured times a stated margin, and controls (wrong rows, wrong positions, a wrong cache) must
 * fail the same check.
 */
import { f16round } from '@petamoriken/float16';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { writeRandomCheckpoint } from '../cli/random-checkpoint.ts';
import type { RowSource } from '../src/bundle/row-source.ts';
import type { Decoder, DecoderState } from '../src/engine/decoder.ts';
import type { Architecture } from '../src/model/config.ts';
import { tempDir } from './helpers/fixtures.ts';

const PREFILL = 32;
const DECODE = 16;

// Measured on the x86-64 machine that wrote this (onnxruntime-node 1.30, tiny random checkpoints
// of seed 1, 32-token prefill then 16 cached steps):
//   cached decoding against a full recompute: max |difference| 2.4e-6 (dense 2.3e-6, memoryllm
//     1.2e-6, flex 2.4e-6, meki 1.7e-6): the same float32 sums cut into other steps;
//   compute.onnx + f32 tables against reference.onnx: 0 (bit-identical: the build's memory graph
//     and the reference graph compute a row with the same kernels). A CPU whose kernels sum a
//     batch of rows in another order than a single row would differ by float32 reorderings like
//     the ones above, so both bounds are 2.4e-6 times a margin of 10 (other SIMD kernels).
const MARGIN = 10;
const FLOAT32_REORDERING = 2.4e-6;
const PARITY_BOUND = FLOAT32_REORDERING * MARGIN;
const CACHE_BOUND = FLOAT32_REORDERING * MARGIN;

/** Logits of a 32-token prefill then 16 single-token cached steps, as [48, V] rows. */
async function cachedLogits(decoder: Decoder, ids: number[], afterPrefill?: (state: DecoderState) => void): Promise<Float32Array[]> {
  const V = decoder.config.vocab_size;
  const state = decoder.start();
  const prefill = await decoder.step(state, ids.slice(0, PREFILL));
  afterPrefill?.(state);
  const rows = Array.from({ length: PREFILL }, (_, i) => prefill.slice(i * V, (i + 1) * V));
  for (const id of ids.slice(PREFILL)) rows.push((await decoder.step(state, [id])).slice());
  return rows;
}

async function fullLogits(decoder: Decoder, ids: number[]): Promise<Float32Array[]> {
  const V = decoder.config.vocab_size;
  const all = await decoder.step(decoder.start(), ids);
  return ids.map((_, i) => all.slice(i * V, (i + 1) * V));
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[], fromRow = 0): number {
  let max = 0;
  for (let r = fromRow; r < a.length; r++) {
    a[r].forEach((v, i) => {
      max = Math.max(max, Math.abs(v - b[r][i]));
    });
  }
  return max;
}

const withRows = (source: RowSource, rows: RowSource['rows']): RowSource => ({ rowValues: source.rowValues, rows });

const dir = tempDir();
afterAll(() => dir.remove());

/** A tiny random checkpoint (preset tiny, f32) built with f32 tables into dir/name. */
async function tinyBundle(name: string, arch: Architecture, seed: number, reference: boolean): Promise<string> {
  const checkpoint = join(dir.path, `${name}-checkpoint`);
  writeRandomCheckpoint(checkpoint, { preset: 'tiny', arch, seed, dtype: 'f32' });
  await buildBundle(checkpoint, join(dir.path, name), { dtype: 'f32', reference, progress: false });
  return join(dir.path, name);
}

/** A real text, so ids cover frequent and rare tokens; ids past the text are fixed, varied ones. */
function testIds(local: LocalBundle): number[] {
  const text = local.tokenizer.encode('The President said that the people of the United States were strong and free, and that');
  return Array.from({ length: PREFILL + DECODE }, (_, i) => text[i] ?? (i * 37) % local.manifest.config.vocab_size);
}

describe.each(['memoryllm', 'flex', 'meki'] as const)('%s bundle against reference.onnx', (arch) => {
  let bundle: LocalBundle;
  let reference: LocalBundle;
  let other: LocalBundle;
  let ids: number[];
  let oracle: Float32Array[];

  beforeAll(async () => {
    const path = await tinyBundle(arch, arch, 1, true);
    bundle = await openLocalBundle(path, 'compute');
    reference = await openLocalBundle(path, 'reference');
    // Another version of the same shape: seed 2 (its rows are another checkpoint's).
    other = await openLocalBundle(await tinyBundle(`${arch}-seed2`, arch, 2, false));
    ids = testIds(bundle);
    oracle = await cachedLogits(reference.decoder, ids);
  });
  afterAll(async () => {
    await Promise.all([bundle, reference, other].map((b) => b?.core.close()));
  });

  it(`matches reference.onnx within ${PARITY_BOUND.toExponential(1)} over a 32-token prefill and 16 cached decode steps`, async () => {
    const diff = maxAbsDiff(await cachedLogits(bundle.decoder, ids), oracle);
    console.log(`${arch}: max |served - reference| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(PARITY_BOUND);
  });

  it('control: zeroed rows, rows of another token or version, rows rounded to f16 all fail the parity check', async () => {
    const rows = bundle.rows!;
    const V = bundle.manifest.config.vocab_size;
    const controls: Record<string, RowSource> = {
      zero: withRows(rows, async (t) => new Float32Array(t.length * rows.rowValues)),
      'token t+1': withRows(rows, (t) => rows.rows(t.map((id) => (id + 1) % V))),
      'seed 2': other.rows!,
      f16: withRows(rows, async (t) => (await rows.rows(t)).map(f16round)),
    };
    const diffs: Record<string, number> = {};
    for (const [name, source] of Object.entries(controls))
      diffs[name] = maxAbsDiff(await cachedLogits(bundle.core.decoder(bundle.bundle, source), ids), oracle);
    console.log(`${arch}: controls, max |served - reference|: ${JSON.stringify(diffs)}`);
    for (const [name, diff] of Object.entries(diffs)) expect(diff, name).toBeGreaterThan(PARITY_BOUND);
  });
});

describe.each(['dense', 'memoryllm', 'flex', 'meki'] as const)('%s bundle, KV cache', (arch) => {
  let bundle: LocalBundle;
  let ids: number[];
  let full: Float32Array[];

  beforeAll(async () => {
    bundle = await openLocalBundle(await tinyBundle(`${arch}-cache`, arch, 1, false));
    ids = testIds(bundle);
    full = await fullLogits(bundle.decoder, ids);
  });
  afterAll(() => bundle?.core.close());

  it(`decodes with the KV cache as a full recompute of the sequence, within ${CACHE_BOUND.toExponential(1)}`, async () => {
    const diff = maxAbsDiff(await cachedLogits(bundle.decoder, ids), full);
    console.log(`${arch}: max |cached - full recompute| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(CACHE_BOUND);
  });

  it('control: decode steps one position off, or after a prefill whose first token differs, fail the check', async () => {
    const shifted = maxAbsDiff(
      await cachedLogits(bundle.decoder, ids, (state) => {
        state.length += 1;
      }),
      full,
      PREFILL,
    );
    const otherPrefix = [(ids[0] + 1) % bundle.manifest.config.vocab_size, ...ids.slice(1)];
    const wrongCache = maxAbsDiff(await cachedLogits(bundle.decoder, otherPrefix), full, PREFILL);
    console.log(
      `${arch}: controls, max |cached - full| over the decode steps: positions +1 ${shifted.toExponential(2)}, other cache ${wrongCache.toExponential(2)}`,
    );
    expect(shifted).toBeGreaterThan(CACHE_BOUND);
    expect(wrongCache).toBeGreaterThan(CACHE_BOUND);
  });
});
