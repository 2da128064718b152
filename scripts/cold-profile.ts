/**
 * Issue 13 (cold start), run in Node: onnxruntime-web's wasm build (one thread, no proxy), the
 * same as the edge worker's, from a fresh process, timing each step of a cold isolate's first
 * request. V8 flags can be passed to the process (`node --no-wasm-lazy-compilation --import tsx
 * scripts/cold-profile.ts ...`): they cannot be set in Workers, but they show what the cost is.
 *
 *   npx tsx scripts/cold-profile.ts <bundle dir> [--options served|default|no-arena|no-pattern|
 *     no-arena-no-pattern|no-prepacking] [--warm-up none|runtime|kernels|kernels-only] [--graph served|compute]
 *
 * Prints one JSON line: ms per phase and the last position's logits checksum.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-common';
import * as ort from 'onnxruntime-web/wasm';
import { parseManifest } from '../src/bundle/manifest.ts';
import { Decoder } from '../src/engine/decoder.ts';
import { sessionOptionsFor, type GraphObjects } from '../src/serving/session-options.ts';
import { readServedGraph } from '../cli/local-bundle.ts';
import { warmUpKernels, warmUpRuntime } from '../workers/runtime-warm-up.ts';
import { zeroRows } from '../bench/lib/steps.ts';

const [dir, ...rest] = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : fallback;
};
const optionsName = flag('options', 'served');
const graphName = flag('graph', 'served');

const manifest = parseManifest(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
// 'served': the graph optimized at build time and its weights, as the worker loads them; 'compute': compute.onnx as built.
const graph: GraphObjects =
  graphName === 'served'
    ? readServedGraph(dir, manifest)
    : { graph: new Uint8Array(readFileSync(join(dir, manifest.objects.compute.path))), optimized: false };

function optionsFor(name: string): InferenceSession.SessionOptions {
  const served = sessionOptionsFor(graph);
  switch (name) {
    case 'served':
      return served;
    case 'default':
      return {};
    case 'no-arena':
      return { ...served, enableCpuMemArena: false };
    case 'no-pattern':
      return { ...served, enableMemPattern: false };
    case 'no-arena-no-pattern':
      return { ...served, enableCpuMemArena: false, enableMemPattern: false };
    case 'no-prepacking':
      return { ...served, extra: { session: { disable_prepacking: '1' } } };
    default:
      throw new Error(`unknown options ${name}`);
  }
}

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;

const times: Record<string, number> = {};
async function timed<T>(name: string, work: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await work();
  times[name] = Math.round((performance.now() - t0) * 10) / 10;
  return result;
}

const { config } = manifest;
const ids = Array.from({ length: 32 }, (_, i) => (i * 37 + 5) % config.vocab_size);
const rows = manifest.tables ? zeroRows(manifest.tables.layout.rowValues) : null;
async function prefill(session: InferenceSession): Promise<number> {
  const decoder = new Decoder({ session, Tensor: ort.Tensor, config, rows });
  const logits = await decoder.step(decoder.start(), ids, 'last');
  let sum = 0;
  for (let i = logits.length - config.vocab_size; i < logits.length; i++) sum += logits[i];
  return sum;
}

// 'runtime': onnxruntime's start as the edge worker ran it at module scope; 'kernels': that, then
// the kernels' warm-up (workers/runtime-warm-up.ts); 'kernels-only': the kernels' warm-up alone,
// which then starts the runtime itself.
const warmUp = flag('warm-up', 'kernels');
if (warmUp === 'runtime' || warmUp === 'kernels') await timed('runtime', () => warmUpRuntime(ort));
if (warmUp === 'kernels' || warmUp === 'kernels-only') await timed('kernels', () => warmUpKernels(ort));
const options = optionsFor(optionsName);
const first = await timed('create1', () => ort.InferenceSession.create(graph.graph, options));
const checksum = await timed('prefill1', () => prefill(first));
await timed('prefill2', () => prefill(first));
const second = await timed('create2', () => ort.InferenceSession.create(graph.graph, options));
await timed('prefill3', () => prefill(second));
console.log(JSON.stringify({ graph: graphName, options: optionsName, warmUp, ...times, checksum }));
