/**
 * Sampling against the decode step of a model at the vocabulary sampled: the demo model's shape
 * with a Llama-3-sized vocabulary (random weights; the embedding and tied LM head grow with it),
 * its compute graph run by onnxruntime-web's wasm in Node (the engine of workerd, §3 puts the two
 * within a few percent), next to `sampleToken` and the straightforward sampler in the same process.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorConstructor } from 'onnxruntime-common';
import { Random } from '../../src/util/random.ts';
import { Decoder } from '../../src/engine/decoder.ts';
import { sampleToken } from '../../src/engine/sampler.ts';
import { referenceSample } from '../../src/engine/sampler-reference.ts';
import { parseConfig } from '../../src/model/config.ts';
import { initialValues } from '../../src/model/init.ts';
import { buildDecoderGraph } from '../../src/model/model.ts';
import { checkpointTensors } from '../../src/model/tensors.ts';
import { ROOT } from './paths.ts';
import { median, summarize, type Summary } from './stats.ts';
import { runSteps, zeroRows } from './steps.ts';

export interface LargeVocabResult {
  vocab: number;
  graphBytes: number;
  /** Per round: decode ms per step, sampleToken µs, straightforward sampler µs. */
  stepMs: Summary;
  sampleUs: Summary;
  referenceUs: Summary;
  /** Median over rounds of (sampling time / decode step time) in that round. */
  share: number;
  referenceShare: number;
}

export async function measureLargeVocab(rowValues: number, rounds: number, vocab = 131072): Promise<LargeVocabResult> {
  const raw = JSON.parse(readFileSync(join(ROOT, 'models', 'flex', 'config.json'), 'utf8')) as Record<string, unknown>;
  const config = parseConfig({ ...raw, vocab_size: vocab, bos_token_id: vocab - 1, eos_token_id: vocab - 1 });
  const specs = new Map(checkpointTensors(config).map((spec) => [spec.name, spec]));
  const graph = buildDecoderGraph(config, { tensor: (name) => initialValues(specs.get(name)!, 1) }, 'rows-input');
  const ortWeb = await import('onnxruntime-web/wasm');
  ortWeb.env.wasm.numThreads = 1;
  ortWeb.env.wasm.proxy = false;
  const session = await ortWeb.InferenceSession.create(graph);
  const decoder = new Decoder({ session, Tensor: ortWeb.Tensor as unknown as TensorConstructor, config, rows: zeroRows(rowValues) });
  const ids = Array.from({ length: 96 }, (_, i) => (i * 7919) % vocab);
  const rng = new Random(1);
  const logits = Float32Array.from({ length: vocab }, () => rng.normal() * 3);
  const options = { temperature: 0.8, topK: 0, topP: 1 };
  const timed = async (f: () => unknown, n: number) => {
    const t = performance.now();
    for (let i = 0; i < n; i++) await f();
    return (performance.now() - t) / n;
  };
  const stepMs: number[] = [];
  const sampleUs: number[] = [];
  const referenceUs: number[] = [];
  try {
    await runSteps(decoder, { ids, prefill: 32, steps: 4 });
    for (let round = 0; round < rounds; round++) {
      const prefillOnly = median([
        await timed(() => runSteps(decoder, { ids, prefill: 32, steps: 0 }), 1),
        await timed(() => runSteps(decoder, { ids, prefill: 32, steps: 0 }), 1),
      ]);
      const withSteps = median([
        await timed(() => runSteps(decoder, { ids, prefill: 32, steps: 32 }), 1),
        await timed(() => runSteps(decoder, { ids, prefill: 32, steps: 32 }), 1),
      ]);
      stepMs.push((withSteps - prefillOnly) / 32);
      sampleUs.push((await timed(() => sampleToken(logits, options, rng), 30)) * 1000);
      referenceUs.push((await timed(() => referenceSample(logits, options, rng.next()), 6)) * 1000);
    }
  } finally {
    await session.release();
  }
  const share = (us: number[]) => median(us.map((u, i) => u / 1000 / stepMs[i]));
  return {
    vocab,
    graphBytes: graph.byteLength,
    stepMs: summarize(stepMs),
    sampleUs: summarize(sampleUs),
    referenceUs: summarize(referenceUs),
    share: share(sampleUs),
    referenceShare: share(referenceUs),
  };
}
