/**
 * A prompt's step asks the graph for its last position's logits alone (`logits_from`,
 * src/engine/logits-from.ts): the head runs over one position instead of T, and one row of V floats
 * comes back instead of T. It must give the last row of the every-position logits, in the
 * compute graph the worker serves and in the reference graph, and a graph built before the input
 * existed (which computes every position) must give the same through the decoder. A prompt may also
 * run in parts (`maxRunTokens`, the worker's MAX_RUN_TOKENS): the same logits and cache, in more runs.
 */
import type { InferenceSession } from 'onnxruntime-common';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { Decoder, type StepSession } from '../src/engine/decoder.ts';
import { GRAPH_IO } from '../src/model/graph-io.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';

const dir = tempDir();
afterAll(() => dir.remove());

/** The session, recording the dims of every logits output it returns. */
function recording(session: StepSession) {
  const dims: (readonly number[])[] = [];
  const wrapped: StepSession = {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    release: () => session.release(),
    run: (async (feeds: InferenceSession.FeedsType) => {
      const out = await session.run(feeds);
      dims.push(out[GRAPH_IO.logits].dims);
      return out;
    }) as StepSession['run'],
  };
  return { wrapped, dims };
}

/** The session as a graph built before `logits_from` looks: it lacks the input and computes every position. */
function withoutLogitsFrom(session: StepSession): StepSession {
  return {
    inputNames: session.inputNames.filter((name) => name !== GRAPH_IO.logitsFrom),
    outputNames: session.outputNames,
    release: () => session.release(),
    run: (async (feeds: InferenceSession.FeedsType) => {
      if (GRAPH_IO.logitsFrom in feeds) throw new Error('fed logits_from to a graph without it');
      return session.run({ ...feeds, [GRAPH_IO.logitsFrom]: new ort.Tensor('int64', BigInt64Array.of(0n), []) });
    }) as StepSession['run'],
  };
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe.each(['optimized', 'reference'] as const)('a prompt step asking for the last logits only (%s graph)', (graph) => {
  let local: LocalBundle;
  const prompt = Array.from({ length: 12 }, (_, i) => (i * 29 + 3) % 200);

  beforeAll(async () => {
    local = await openLocalBundle(await buildTinyBundle(dir.path, 'flex', {}, `flex-${graph}`), graph);
  });
  afterAll(() => local?.core.close());

  const decoderOver = (session: StepSession) =>
    new Decoder({ session, Tensor: ort.Tensor, config: local.manifest.config, rows: graph === 'reference' ? null : local.rows });

  it('gets the last row of the every-position logits, and the graph computes that one position alone', async () => {
    const V = local.manifest.config.vocab_size;
    const { wrapped, dims } = recording(local.bundle.session);
    const decoder = decoderOver(wrapped);
    const all = await decoder.step(decoder.start(), prompt);
    const last = await decoder.step(decoder.start(), prompt, 'last');
    expect(dims).toEqual([
      [1, prompt.length, V],
      [1, 1, V],
    ]);
    expect(last.length).toBe(V);
    const diff = maxAbsDiff(last, all.subarray(all.length - V));
    console.log(`${graph}: last-only vs every position, max |Δ logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-5);
    // Control: another position's logits differ, so the comparison could fail.
    expect(maxAbsDiff(last, all.subarray(0, V))).toBeGreaterThan(1e-3);
  });

  it('keeps the KV cache of every prompt position: the next step continues it', async () => {
    const decoder = decoderOver(local.bundle.session);
    const [a, b] = [decoder.start(), decoder.start()];
    await decoder.step(a, prompt);
    await decoder.step(b, prompt, 'last');
    expect(b.length).toBe(prompt.length);
    expect(maxAbsDiff(await decoder.step(b, [7]), await decoder.step(a, [7]))).toBe(0);
  });

  it('gives the same from a graph built before the input existed, which computes every position', async () => {
    const V = local.manifest.config.vocab_size;
    const older = decoderOver(withoutLogitsFrom(local.bundle.session));
    const current = decoderOver(local.bundle.session);
    const fromOlder = await older.step(older.start(), prompt, 'last');
    expect(fromOlder.length).toBe(V);
    expect(maxAbsDiff(fromOlder, await current.step(current.start(), prompt, 'last'))).toBeLessThanOrEqual(1e-5);
  });
});

describe('a prompt run in parts (maxRunTokens)', () => {
  let local: LocalBundle;
  const prompt = Array.from({ length: 21 }, (_, i) => (i * 31 + 7) % 200);

  beforeAll(async () => {
    local = await openLocalBundle(await buildTinyBundle(dir.path, 'flex', { reference: false }, 'flex-parts'));
  });
  afterAll(() => local?.core.close());

  const decoderOver = (session: StepSession, maxRunTokens?: number) =>
    new Decoder({ session, Tensor: ort.Tensor, config: local.manifest.config, rows: local.rows, maxRunTokens });

  it.each([1, 4, 8, 21, 0])('in parts of %i tokens: the logits and cache of one run, in ceil(T / parts) runs', async (parts) => {
    const V = local.manifest.config.vocab_size;
    const whole = decoderOver(local.bundle.session);
    const { wrapped, dims } = recording(local.bundle.session);
    const split = decoderOver(wrapped, parts);
    const [a, b] = [whole.start(), split.start()];
    const all = await whole.step(a, prompt);
    const partsAll = await split.step(split.start(), prompt);
    expect(partsAll.length).toBe(all.length);
    expect(maxAbsDiff(partsAll, all)).toBeLessThanOrEqual(1e-5);
    dims.length = 0;
    const last = await split.step(b, prompt, 'last');
    expect(dims.length).toBe(parts ? Math.ceil(prompt.length / parts) : 1);
    expect(dims.every((d) => d[1] === 1)).toBe(true); // each run computes one position's logits
    expect(b.length).toBe(prompt.length);
    expect(maxAbsDiff(last, all.subarray(all.length - V))).toBeLessThanOrEqual(1e-5);
    // The cache is the same: the next step continues it.
    expect(maxAbsDiff(await split.step(b, [9]), await whole.step(a, [9]))).toBeLessThanOrEqual(1e-5);
  });
});
