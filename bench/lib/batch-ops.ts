/**
 * Which operators a batched decode step of the demo graph spends its time in: onnxruntime-node's
 * profiler (one thread; onnxruntime-web's wasm build cannot hand its profile out), at B = 1 and
 * B = 16 with the same past length, summed by operator type over the runs. A proxy for the wasm
 * build's split (native kernels, not wasm SIMD), to tell the KV-cache work apart from the weights'.
 *
 *   npx tsx bench/lib/batch-ops.ts [--past 96] [--runs 30]
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorConstructor } from 'onnxruntime-common';
import * as ort from 'onnxruntime-node';
import { logitsFromFeed } from '../../src/engine/logits-from.ts';
import { GRAPH_IO } from '../../src/model/graph-io.ts';
import { demoBundle } from './bundles.ts';
import { WORK } from './paths.ts';
import { scriptArgs } from './script-args.ts';

const args = scriptArgs({ past: '96', runs: '30' });
const PAST = args.number('past');
const RUNS = args.number('runs');

const demo = await demoBundle('flex', 'f16');
const { config } = demo.manifest;
const { num_hidden_layers: L, num_key_value_heads: KV, head_dim: hd } = config;
const rowValues = demo.manifest.tables!.layout.rowValues;
const graph = readFileSync(join(demo.dir, demo.manifest.objects.compute.path));

async function profile(batch: number): Promise<Map<string, number>> {
  const prefix = join(WORK, `batch-ops-b${batch}`);
  const session = await ort.InferenceSession.create(graph, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    enableProfiling: true,
    profileFilePrefix: prefix,
  });
  const feeds: Record<string, ort.Tensor> = {};
  for (let l = 0; l < L; l++)
    for (const name of [GRAPH_IO.pastKey(l), GRAPH_IO.pastValue(l)])
      feeds[name] = new ort.Tensor('float32', new Float32Array(batch * KV * PAST * hd).fill(0.01), [batch, KV, PAST, hd]);
  feeds[GRAPH_IO.inputIds] = new ort.Tensor('int64', new BigInt64Array(batch).fill(7n), [batch, 1]);
  feeds[GRAPH_IO.positionIds] = new ort.Tensor('int64', new BigInt64Array(batch).fill(BigInt(PAST)), [batch, 1]);
  feeds[GRAPH_IO.memoryRows] = new ort.Tensor('float32', new Float32Array(batch * rowValues), [batch, 1, rowValues]);
  feeds[GRAPH_IO.attentionMask] = new ort.Tensor('int64', new BigInt64Array(batch * (PAST + 1)).fill(1n), [batch, PAST + 1]);
  Object.assign(feeds, logitsFromFeed(session.inputNames, ort.Tensor as unknown as TensorConstructor, 0));
  for (let i = 0; i < 5; i++) await session.run(feeds);
  for (let i = 0; i < RUNS; i++) await session.run(feeds);
  // endProfiling writes `${prefix}_<date>.json` (onnxruntime-node's binding does not return the name).
  session.endProfiling();
  await session.release();
  const base = `batch-ops-b${batch}_`;
  const found = readdirSync(WORK).filter((f) => f.startsWith(base) && f.endsWith('.json'));
  if (found.length !== 1) throw new Error(`expected one profile ${base}*.json in ${WORK}, found ${found.length}`);
  const file = join(WORK, found[0]);
  const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
  rmSync(file, { force: true });
  const byOp = new Map<string, number>();
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').slice(5);
  byOp.set('(whole run)', runs.reduce((n, e) => n + e.dur, 0) / runs.length);
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const perRun = kernels.length / (RUNS + 5);
  for (const e of kernels.slice(Math.round(5 * perRun))) {
    const op = e.args?.op_name ?? '?';
    byOp.set(op, (byOp.get(op) ?? 0) + e.dur / RUNS);
  }
  return byOp;
}

const one = await profile(1);
const sixteen = await profile(16);
const ops = [...sixteen.keys()].sort((a, b) => (sixteen.get(b) ?? 0) - (sixteen.get(a) ?? 0));
const total16 = [...sixteen.entries()].filter(([k]) => k !== '(whole run)').reduce((n, [, v]) => n + v, 0);
console.log(`onnxruntime-node, 1 thread, demo graph, past ${PAST}, ${RUNS} runs: µs per run by operator type`);
console.log('op | B=1 µs | B=16 µs | B=16 / B=1 | share of B=16 kernel time');
for (const op of ops) {
  const a = one.get(op) ?? 0;
  const b = sixteen.get(op) ?? 0;
  console.log(
    `${op} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b / a).toFixed(2)}x | ${op === '(whole run)' ? '' : `${((100 * b) / total16).toFixed(1)}%`}`,
  );
}
