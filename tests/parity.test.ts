/**
 * The bundle (compute.onnx + f32 tables) must compute the same model as reference.onnx, which
 * runs the memory path inside the graph; and cached decoding must equal a full recompute.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import type { Decoder } from '../src/engine/decoder.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';

const PREFILL = 32;
const DECODE = 16;

/** Logits of a 32-token prefill then 16 single-token cached steps, as [48, V] rows. */
async function cachedLogits(decoder: Decoder, ids: number[]): Promise<Float32Array[]> {
  const V = decoder.config.vocab_size;
  const state = decoder.start();
  const prefill = await decoder.step(state, ids.slice(0, PREFILL));
  const rows = Array.from({ length: PREFILL }, (_, i) => prefill.slice(i * V, (i + 1) * V));
  for (const id of ids.slice(PREFILL)) rows.push((await decoder.step(state, [id])).slice());
  return rows;
}

async function fullLogits(decoder: Decoder, ids: number[]): Promise<Float32Array[]> {
  const V = decoder.config.vocab_size;
  const all = await decoder.step(decoder.start(), ids);
  return ids.map((_, i) => all.slice(i * V, (i + 1) * V));
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let max = 0;
  a.forEach((row, r) => {
    row.forEach((v, i) => {
      max = Math.max(max, Math.abs(v - b[r][i]));
    });
  });
  return max;
}

describe.each(['memoryllm', 'flex', 'meki'] as const)('%s bundle', (arch) => {
  const dir = tempDir();
  let bundle: LocalBundle;
  let reference: LocalBundle;
  let ids: number[];

  beforeAll(async () => {
    const path = await buildTinyBundle(dir.path, arch);
    bundle = await openLocalBundle(path, 'compute');
    reference = await openLocalBundle(path, 'reference');
    // A real text, so ids cover frequent and rare tokens; ids past the text are fixed, varied ones.
    const text = bundle.tokenizer.encode('The President said that the people of the United States were strong and free, and that');
    ids = Array.from({ length: PREFILL + DECODE }, (_, i) => text[i] ?? (i * 37) % bundle.manifest.config.vocab_size);
  });
  afterAll(() => dir.remove());

  it('matches reference.onnx within 1e-4 over a 32-token prefill and 16 cached decode steps', async () => {
    const served = await cachedLogits(bundle.decoder, ids);
    const oracle = await cachedLogits(reference.decoder, ids);
    expect(maxAbsDiff(served, oracle)).toBeLessThanOrEqual(1e-4);
  });

  it('decodes with the KV cache exactly as a full recompute of the sequence', async () => {
    const cached = await cachedLogits(bundle.decoder, ids);
    const full = await fullLogits(bundle.decoder, ids);
    expect(maxAbsDiff(cached, full)).toBeLessThanOrEqual(1e-4);
  });

  it('depends on the memory rows (zeroed rows change the logits)', async () => {
    const R = bundle.rows!.rowValues;
    const zeroRows = { rowValues: R, rows: async (t: readonly number[]) => new Float32Array(t.length * R) };
    const ablated = bundle.core.decoder(bundle.bundle, zeroRows);
    const withMemory = await fullLogits(bundle.decoder, ids);
    const withoutMemory = await fullLogits(ablated, ids);
    expect(maxAbsDiff(withMemory, withoutMemory)).toBeGreaterThan(0.05);
  });
});
