/**
 * Chained decode runs of a graph at batch B in workerd, for bench/lib/batch-profile-workerd.ts.
 * workerd's clock only advances across I/O, so nothing is timed here: the client times a request
 * with N steps against one with 0 (the same setup) and takes the difference.
 *
 *   POST /load   body: the graph bytes (compute.ort); query: layers, kv, hd, rowValues
 *   POST /chain  {batch, s0, steps}: a past of s0 positions, then `steps` runs, each present fed back
 *   POST /generate {streams, prompt, maxTokens}: `streams` concurrent greedy generations
 *                (src/engine/generation.ts, one Decoder each, one StepBatcher of 16, memory rows a
 *                block of zeros, text one character a token) after a prompt of `prompt` tokens
 */
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import type { ModelConfig } from '../../src/model/config.ts';
import { Decoder, type StepSession } from '../../src/engine/decoder.ts';
import { generate } from '../../src/engine/generation.ts';
import { StepBatcher } from '../../src/engine/step-batcher.ts';
import { logitsFromFeed } from '../../src/engine/logits-from.ts';
import { GRAPH_IO } from '../../src/model/graph-io.ts';
import { zeroRows } from '../lib/steps.ts';
import { sessionOptionsFor } from '../../src/serving/session-options.ts';
import { onnxRuntime } from '../../workers/onnx-runtime.ts';

let session: InferenceSession | null = null;
let shape = { layers: 0, kv: 0, hd: 0, rowValues: 0 };

async function chain(batch: number, s0: number, steps: number): Promise<number> {
  const ort = onnxRuntime();
  const { layers, kv, hd, rowValues } = shape;
  let past: Record<string, Tensor> = {};
  for (let l = 0; l < layers; l++)
    for (const name of [GRAPH_IO.pastKey(l), GRAPH_IO.pastValue(l)])
      past[name] = new ort.Tensor('float32', new Float32Array(batch * kv * s0 * hd).fill(0.01), [batch, kv, s0, hd]);
  let sum = 0;
  for (let i = 0; i < steps; i++) {
    const S = s0 + i;
    const feeds: Record<string, Tensor> = { ...past };
    feeds[GRAPH_IO.inputIds] = new ort.Tensor('int64', new BigInt64Array(batch).fill(7n), [batch, 1]);
    feeds[GRAPH_IO.positionIds] = new ort.Tensor('int64', new BigInt64Array(batch).fill(BigInt(S)), [batch, 1]);
    feeds[GRAPH_IO.memoryRows] = new ort.Tensor('float32', new Float32Array(batch * rowValues), [batch, 1, rowValues]);
    feeds[GRAPH_IO.attentionMask] = new ort.Tensor('int64', new BigInt64Array(batch * (S + 1)).fill(1n), [batch, S + 1]);
    Object.assign(feeds, logitsFromFeed(session!.inputNames, ort.Tensor, 0));
    const out = await session!.run(feeds);
    past = {};
    for (let l = 0; l < layers; l++) {
      past[GRAPH_IO.pastKey(l)] = out[GRAPH_IO.presentKey(l)];
      past[GRAPH_IO.pastValue(l)] = out[GRAPH_IO.presentValue(l)];
    }
    sum += (out[GRAPH_IO.logits].data as Float32Array)[0];
  }
  return sum;
}

async function streams(count: number, prompt: number, maxTokens: number): Promise<number> {
  const ort = onnxRuntime();
  const { layers, kv, hd, rowValues } = shape;
  const config = {
    num_hidden_layers: layers,
    num_key_value_heads: kv,
    head_dim: hd,
    vocab_size: 4096,
    max_position_embeddings: 256,
  } as ModelConfig;
  const s = session as unknown as StepSession;
  const batcher = count > 1 ? new StepBatcher({ session: s, Tensor: ort.Tensor, config, maxBatch: 16 }) : null;
  const rows = zeroRows(rowValues);
  let tokens = 0;
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const decoder = new Decoder({ session: s, Tensor: ort.Tensor, config, rows, batcher });
      const promptIds = Array.from({ length: prompt }, (_, t) => (t * 7 + i * 13) % 4000);
      const request = { promptIds, maxTokens, sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 }, stop: [], logprobs: null };
      for await (const d of generate({ decoder, decode: (ids) => 'x'.repeat(ids.length) }, request)) tokens += d.ids.length;
    }),
  );
  return tokens;
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    try {
      if (url.pathname === '/load') {
        // The body: the served graph's bytes, then its weights' (graphBytes says where they part).
        const body = new Uint8Array(await request.arrayBuffer());
        const q = (k: string) => Number(url.searchParams.get(k));
        shape = { layers: q('layers'), kv: q('kv'), hd: q('hd'), rowValues: q('rowValues') };
        const weightsPath = url.searchParams.get('weightsPath');
        const graph = {
          graph: body.subarray(0, q('graphBytes')),
          optimized: url.searchParams.get('optimized') === '1',
          weights: weightsPath ? { path: weightsPath, data: body.subarray(q('graphBytes')) } : undefined,
        };
        session = await onnxRuntime().InferenceSession.create(graph.graph, sessionOptionsFor(graph));
        return Response.json({ inputs: session.inputNames });
      }
      if (url.pathname === '/chain') {
        const { batch, s0, steps } = (await request.json()) as { batch: number; s0: number; steps: number };
        return Response.json({ checksum: await chain(batch, s0, steps) });
      }
      if (url.pathname === '/generate') {
        const { streams: count, prompt, maxTokens } = (await request.json()) as { streams: number; prompt: number; maxTokens: number };
        return Response.json({ tokens: await streams(count, prompt, maxTokens) });
      }
      return new Response('not found', { status: 404 });
    } catch (error) {
      return new Response(String((error as Error)?.stack ?? error), { status: 500 });
    }
  },
};
