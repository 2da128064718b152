/**
 * Paired A/B of one 16-row decode step of the demo model in onnxruntime-web's WASM (one thread):
 * the graph optimized at build time as onnxruntime-node writes it, whose outputs are copied
 * through `Identity` nodes, against the same graph without them (cli/output-identities.ts, what
 * `flexmem build` serves). Rounds alternate A and B; prints the medians, the median paired ratio
 * and the largest logit difference (docs/architecture.md "Continuous batching").
 *
 *   npx tsx bench/lib/batch-output-copies.ts [--positions 64] [--rounds 40]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web/wasm';
import { onnxruntimeOptimized, WEIGHTS_PATH } from '../../cli/optimize-graph.ts';
import { withoutOutputIdentities } from '../../cli/output-identities.ts';
import { rowWidth } from '../../src/model/config.ts';
import { GRAPH_IO } from '../../src/model/graph-io.ts';
import { sessionOptionsFor } from '../../src/serving/session-options.ts';
import { demoBundle } from './bundles.ts';
import { scriptArgs } from './script-args.ts';
import { median } from './stats.ts';

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
const args = scriptArgs({ positions: '64', rounds: '40' });
const POSITIONS = args.number('positions');
const ROUNDS = args.number('rounds');
const ROWS = 16;

const demo = await demoBundle('flex');
const config = demo.manifest.config;
const { graph, weights } = await onnxruntimeOptimized(new Uint8Array(readFileSync(join(demo.dir, demo.manifest.objects.compute.path))));
// Both loaded as the worker loads a served graph.
const session = (bytes: Uint8Array) =>
  ort.InferenceSession.create(bytes, sessionOptionsFor({ graph: bytes, optimized: true, weights: { path: WEIGHTS_PATH, data: weights } }));
const withCopies = await session(graph);
const withoutCopies = await session(withoutOutputIdentities(graph));

const feeds: Record<string, ort.Tensor> = {};
const { num_key_value_heads: KV, head_dim: hd } = config;
for (let l = 0; l < config.num_hidden_layers; l++)
  for (const name of [GRAPH_IO.pastKey(l), GRAPH_IO.pastValue(l)])
    feeds[name] = new ort.Tensor('float32', new Float32Array(ROWS * KV * POSITIONS * hd).fill(0.01), [ROWS, KV, POSITIONS, hd]);
feeds[GRAPH_IO.inputIds] = new ort.Tensor('int64', new BigInt64Array(ROWS).fill(5n), [ROWS, 1]);
feeds[GRAPH_IO.positionIds] = new ort.Tensor('int64', new BigInt64Array(ROWS).fill(BigInt(POSITIONS)), [ROWS, 1]);
feeds[GRAPH_IO.attentionMask] = new ort.Tensor('int64', new BigInt64Array(ROWS * (POSITIONS + 1)).fill(1n), [ROWS, POSITIONS + 1]);
if (withCopies.inputNames.includes(GRAPH_IO.memoryRows))
  feeds[GRAPH_IO.memoryRows] = new ort.Tensor('float32', new Float32Array(ROWS * rowWidth(config)), [ROWS, 1, rowWidth(config)]);
if (withCopies.inputNames.includes(GRAPH_IO.logitsFrom)) feeds[GRAPH_IO.logitsFrom] = new ort.Tensor('int64', BigInt64Array.of(0n), []);

async function step(session: ort.InferenceSession): Promise<{ ms: number; logits: Float32Array }> {
  const started = performance.now();
  const out = await session.run(feeds);
  return { ms: performance.now() - started, logits: out[GRAPH_IO.logits].data as Float32Array };
}

for (let i = 0; i < 5; i++) {
  await step(withCopies);
  await step(withoutCopies);
}
const a: number[] = [];
const b: number[] = [];
let maxLogitDiff = 0;
for (let i = 0; i < ROUNDS; i++) {
  // Which goes first alternates, so neither always runs on a cache the other warmed.
  const first = await step(i % 2 ? withoutCopies : withCopies);
  const second = await step(i % 2 ? withCopies : withoutCopies);
  const [ra, rb] = i % 2 ? [second, first] : [first, second];
  a.push(ra.ms);
  b.push(rb.ms);
  for (let k = 0; k < ra.logits.length; k++) maxLogitDiff = Math.max(maxLogitDiff, Math.abs(ra.logits[k] - rb.logits[k]));
}
console.log(
  JSON.stringify({
    rows: ROWS,
    positions: POSITIONS,
    withCopiesMs: median(a),
    withoutCopiesMs: median(b),
    pairedRatio: median(a.map((x, i) => b[i] / x)),
    maxLogitDiff,
  }),
);
