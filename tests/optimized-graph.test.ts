/**
 * A compute graph optimized at build time (cli/optimize-graph.ts: ORT format) and loaded the way
 * src/serving/session-options.ts says (onnxruntime-web's WASM, its optimizer off, no prepacking)
 * must compute what the graph as built computes, within the parity tolerance of tests/parity.test.ts
 * widened to 1e-4 (fused kernels sum in another order), over a prefill and cached decode steps.
 */
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { optimizeGraph } from '../cli/optimize-graph.ts';
import { writeRandomCheckpoint } from '../cli/random-checkpoint.ts';
import { Decoder } from '../src/engine/decoder.ts';
import { isOrtFormat, sessionOptionsFor } from '../src/serving/session-options.ts';
import { tempDir } from './helpers/fixtures.ts';
import { readFileSync } from 'node:fs';

const TOLERANCE = 1e-4;
const dir = tempDir();
afterAll(() => dir.remove());

async function tinyBundle(name: string, seed: number): Promise<string> {
  const checkpoint = join(dir.path, `${name}-checkpoint`);
  writeRandomCheckpoint(checkpoint, { preset: 'tiny', arch: 'flex', seed, dtype: 'f32' });
  await buildBundle(checkpoint, join(dir.path, name), { dtype: 'f32', reference: false, progress: false });
  return join(dir.path, name);
}

describe('a graph optimized at build time (ORT format)', () => {
  let local: LocalBundle;
  let ortWeb: typeof import('onnxruntime-web');
  let built: Uint8Array;
  let optimized: Uint8Array;
  let otherOptimized: Uint8Array;

  beforeAll(async () => {
    ortWeb = (await import('onnxruntime-web/wasm')) as unknown as typeof import('onnxruntime-web');
    ortWeb.env.wasm.numThreads = 1;
    ortWeb.env.wasm.proxy = false;
    const path = await tinyBundle('flex', 1);
    local = await openLocalBundle(path);
    built = new Uint8Array(readFileSync(join(path, local.manifest.objects.compute.path)));
    optimized = await optimizeGraph(built);
    const other = await tinyBundle('flex-seed2', 2);
    otherOptimized = await optimizeGraph(new Uint8Array(readFileSync(join(other, local.manifest.objects.compute.path))));
  });
  afterAll(() => local?.core.close());

  /** Logits of a 16-token prefill then 8 cached steps in onnxruntime-web, rows from the bundle. */
  async function logits(graph: Uint8Array, options: InferenceSession.SessionOptions): Promise<Float32Array> {
    const session = await ortWeb.InferenceSession.create(graph, options);
    try {
      const decoder = new Decoder({ session, Tensor: ortWeb.Tensor, config: local.manifest.config, rows: local.rows });
      const V = local.manifest.config.vocab_size;
      const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % V);
      const state = decoder.start();
      const out: number[] = [...(await decoder.step(state, ids.slice(0, 16)))];
      for (const id of ids.slice(16)) out.push(...(await decoder.step(state, [id])));
      return Float32Array.from(out);
    } finally {
      await session.release();
    }
  }

  const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

  it('is in ORT format and gets the load-time work switched off; the graph as built keeps the defaults', () => {
    expect(isOrtFormat(optimized)).toBe(true);
    expect(isOrtFormat(built)).toBe(false);
    expect(sessionOptionsFor(optimized).graphOptimizationLevel).toBe('disabled');
    expect(sessionOptionsFor(built)).toEqual({});
  });

  it(`computes the logits of the graph as built within ${TOLERANCE}, and another checkpoint's does not`, async () => {
    const reference = await logits(built, {});
    const diff = maxAbsDiff(await logits(optimized, sessionOptionsFor(optimized)), reference);
    console.log(`optimized graph: max |Δ logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(TOLERANCE);
    expect(maxAbsDiff(await logits(otherOptimized, sessionOptionsFor(otherOptimized)), reference)).toBeGreaterThan(TOLERANCE);
  });
});
