/**
 * Where the wall time of a batched decode step goes (issue 13, "Many streams in one isolate"), on
 * the demo model under onnxruntime-web's wasm in Node, one thread (the runtime workerd runs). Not a
 * suite of bench/run.ts: a profile to read, run by hand:
 *
 *   npx tsx bench/lib/batch-profile.ts [--reps 15] [--lengths 64,96,128]
 *
 * Every figure is a median of alternating repetitions, and each is printed beside its B = 1
 * counterpart measured in the same loop (the machine is shared: ratios, not absolute times).
 *   1. session.run alone at B = 1 and B = 16, same KV length (fresh past tensors each run, as a
 *      batch feeds its previous `present` back).
 *   2. The copies onnxruntime-web makes of the KV cache: into its heap for `past`, out of it for
 *      `present`, estimated as JS copies of the same bytes.
 *   3. The batcher's JS work: the int64 mask built with one BigInt per position, a rebuild of the
 *      merged cache (copyRealPositions for every member), 16 memory-row lookups from L0, sampling
 *      16 rows (greedy, vocab 4096) with the text streamer, and one SSE chunk per token.
 *   4. The whole loop: 16 concurrent generations (src/engine/generation.ts through the serving
 *      core with the step batcher) against one, time per token and per batched run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-common';
import * as ortWeb from 'onnxruntime-web/wasm';
import { readServedGraph } from '../../cli/local-bundle.ts';
import { copyRealPositions } from '../../src/engine/kv-rows.ts';
import { logitsFromFeed } from '../../src/engine/logits-from.ts';
import { generate, type GenerationRequest } from '../../src/engine/generation.ts';
import { LogitAdjuster } from '../../src/engine/logit-adjustments.ts';
import { sampleToken } from '../../src/engine/sampler.ts';
import { TextStreamer } from '../../src/engine/text-streamer.ts';
import { GRAPH_IO, layerKvNames } from '../../src/model/graph-io.ts';
import { sessionOptionsFor } from '../../src/serving/session-options.ts';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { Random } from '../../src/util/random.ts';
import { demoBundle } from './bundles.ts';
import { Tensor, wasmServingCore } from './wasm-core.ts';
import { ROOT } from './paths.ts';
import { scriptArgs } from './script-args.ts';
import { median } from './stats.ts';

const args = scriptArgs({ reps: '15', lengths: '64,96,128' });
const REPS = args.number('reps');
const LENGTHS = args.string('lengths').split(',').map(Number);
const B = 16;

const ms = (x: number) => `${x.toFixed(3)} ms`;

/** Median ms of `f` over REPS repetitions, each `inner` calls. */
async function time(f: () => unknown, inner = 1, reps = REPS): Promise<number> {
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) await f();
    samples.push((performance.now() - t0) / inner);
  }
  return median(samples);
}

const demo = await demoBundle('flex', 'f16');
const { config } = demo.manifest;
const { num_hidden_layers: L, num_key_value_heads: KV, head_dim: hd, vocab_size: V } = config;
const graph = readServedGraph(demo.dir, demo.manifest);
const session = (await ortWeb.InferenceSession.create(graph.graph, sessionOptionsFor(graph))) as unknown as InferenceSession;
const rowValues = demo.manifest.tables!.layout.rowValues;
const names = layerKvNames(L, GRAPH_IO.pastKey, GRAPH_IO.pastValue);
const kvBytesPerPosition = names.length * KV * hd * 4;
console.log(
  `demo model: ${L} layers, ${KV} KV heads x ${hd}, vocab ${V}; KV cache ${kvBytesPerPosition} bytes per position per sequence; ${REPS} reps`,
);

/** A decode step's inputs other than the KV cache, after a past of S positions. */
function stepInputs(batch: number, S: number, maskKind: 'int64' | 'none' = 'int64'): Record<string, OrtTensor> {
  const f: Record<string, OrtTensor> = {};
  f[GRAPH_IO.inputIds] = new Tensor('int64', new BigInt64Array(batch).fill(7n), [batch, 1]);
  f[GRAPH_IO.positionIds] = new Tensor('int64', new BigInt64Array(batch).fill(BigInt(S)), [batch, 1]);
  f[GRAPH_IO.memoryRows] = new Tensor('float32', new Float32Array(batch * rowValues), [batch, 1, rowValues]);
  if (maskKind === 'int64') f[GRAPH_IO.attentionMask] = new Tensor('int64', new BigInt64Array(batch * (S + 1)).fill(1n), [batch, S + 1]);
  return Object.assign(f, logitsFromFeed(session.inputNames, Tensor, 0));
}

function feeds(batch: number, S: number, maskKind: 'int64' | 'none' = 'int64'): Record<string, OrtTensor> {
  const f = stepInputs(batch, S, maskKind);
  for (const name of names) f[name] = new Tensor('float32', new Float32Array(batch * KV * S * hd).fill(0.01), [batch, KV, S, hd]);
  return f;
}

console.log('\n1. session.run alone, chained as the batcher runs it (each present fed back as the next past), B = 1 vs B = 16');
/** Per-step ms of `steps` chained runs at batch `batch` from a past of S0 positions. */
async function chain(batch: number, S0: number, steps: number): Promise<number[]> {
  let past: Record<string, OrtTensor> = feeds(batch, S0);
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const f = stepInputs(batch, S0 + i);
    for (const name of names) f[name] = past[name];
    const t0 = performance.now();
    const out = await session.run(f);
    times.push(performance.now() - t0);
    past = {};
    for (let l = 0; l < L; l++) {
      past[GRAPH_IO.pastKey(l)] = out[GRAPH_IO.presentKey(l)];
      past[GRAPH_IO.pastValue(l)] = out[GRAPH_IO.presentValue(l)];
    }
  }
  return times;
}
const S0 = 64;
const STEPS = 64;
const chained: Record<number, number[][]> = { 1: [], [B]: [] };
for (let r = 0; r < Math.max(3, Math.round(REPS / 4)); r++) {
  chained[1].push(await chain(1, S0, STEPS));
  chained[B].push(await chain(B, S0, STEPS));
  chained[1].push(await chain(1, 1, 32));
  chained[B].push(await chain(B, 1, 32));
}
const runAt: Record<number, [number, number]> = {};
const bins: [number, number][] = [
  [1, 33],
  [64, 80],
  [80, 96],
  [96, 112],
  [112, 128],
  [64, 128],
];
console.log('   past S | B=1 per step | B=16 per step | B=16 / B=1 | B=16 per row');
for (const [lo, hi] of bins) {
  const pick = (b: number) =>
    median(
      chained[b].flatMap((t) => {
        const s0 = t.length === STEPS ? S0 : 1;
        return t.filter((_, i) => s0 + i >= lo && s0 + i < hi);
      }),
    );
  const one = pick(1);
  const sixteen = pick(B);
  runAt[(lo + hi) >> 1] = [one, sixteen];
  console.log(`   ${lo}..${hi - 1} | ${ms(one)} | ${ms(sixteen)} | ${(sixteen / one).toFixed(2)}x | ${ms(sixteen / B)}`);
}

console.log("\n1b. A 64-token prompt (B = 1) in one run against chunks run one after another (each chunk after the previous one's cache)");
async function prefill(total: number, chunk: number): Promise<void> {
  let past: Record<string, OrtTensor> = feeds(1, 0);
  for (let at = 0; at < total; at += chunk) {
    const T = Math.min(chunk, total - at);
    const f: Record<string, OrtTensor> = {};
    for (const name of names) f[name] = past[name];
    f[GRAPH_IO.inputIds] = new Tensor('int64', new BigInt64Array(T).fill(7n), [1, T]);
    f[GRAPH_IO.positionIds] = new Tensor(
      'int64',
      BigInt64Array.from({ length: T }, (_, i) => BigInt(at + i)),
      [1, T],
    );
    f[GRAPH_IO.memoryRows] = new Tensor('float32', new Float32Array(T * rowValues), [1, T, rowValues]);
    f[GRAPH_IO.attentionMask] = new Tensor('int64', new BigInt64Array(at + T).fill(1n), [1, at + T]);
    Object.assign(f, logitsFromFeed(session.inputNames, Tensor, T - 1));
    const out = await session.run(f);
    past = {};
    for (let l = 0; l < L; l++) {
      past[GRAPH_IO.pastKey(l)] = out[GRAPH_IO.presentKey(l)];
      past[GRAPH_IO.pastValue(l)] = out[GRAPH_IO.presentValue(l)];
    }
  }
}
for (const chunk of [64, 32, 16, 8]) await prefill(64, chunk);
const whole: number[] = [];
const parts: Record<number, number[]> = { 32: [], 16: [], 8: [] };
for (let r = 0; r < REPS; r++) {
  let t0 = performance.now();
  await prefill(64, 64);
  whole.push(performance.now() - t0);
  for (const chunk of [32, 16, 8]) {
    t0 = performance.now();
    await prefill(64, chunk);
    parts[chunk].push(performance.now() - t0);
  }
}
console.log(`   whole: ${ms(median(whole))}`);
for (const chunk of [32, 16, 8])
  console.log(
    `   ${64 / chunk} chunks of ${chunk}: ${ms(median(parts[chunk]))} in all (${(median(parts[chunk]) / median(whole)).toFixed(2)}x), ${ms(median(parts[chunk]) / (64 / chunk))} per chunk`,
  );

console.log(
  '\n2. KV bytes through the heap per step (past in + present out), copied in JS as an estimate of the copies onnxruntime-web makes',
);
const heap = new Float32Array((B * KV * 129 * hd * names.length * 2) / 1);
for (const S of LENGTHS) {
  const per = B * KV * S * hd;
  const pasts = names.map(() => new Float32Array(per).fill(0.5));
  const copyIn = await time(() => {
    let at = 0;
    for (const p of pasts) {
      heap.set(p, at);
      at += p.length;
    }
  }, 5);
  const copyOut = await time(() => {
    let at = 0;
    for (let i = 0; i < names.length; i++) {
      heap.slice(at, at + per + B * KV * hd);
      at += per;
    }
  }, 5);
  const mib = (2 * per * names.length * 4) / 2 ** 20;
  console.log(`   S=${S}: ${mib.toFixed(1)} MiB in+out at B=16; copy in ${ms(copyIn)}, copy out (slice, a new array) ${ms(copyOut)}`);
}

console.log('\n3. The batcher and generation loop, per batched step of 16 rows');
for (const S of LENGTHS) {
  // As StepBatcher.run builds the next mask from the batch's: before from a Uint8Array, then
  // converted with one BigInt per position; now int64 throughout (row copies, one write per row).
  const bytes = new Uint8Array(B * S).fill(1);
  const kept = new BigInt64Array(B * S).fill(1n);
  const mask = await time(() => {
    const real = new Uint8Array(B * (S + 1));
    for (let b = 0; b < B; b++) {
      real.set(bytes.subarray(b * S, (b + 1) * S), b * (S + 1));
      real[b * (S + 1) + S] = 1;
    }
    return new Tensor('int64', BigInt64Array.from(real, BigInt), [B, S + 1]);
  }, 20);
  const maskKept = await time(() => {
    const real = new BigInt64Array(B * (S + 1));
    for (let b = 0; b < B; b++) {
      real.set(kept.subarray(b * S, (b + 1) * S), b * (S + 1));
      real[b * (S + 1) + S] = 1n;
    }
    return new Tensor('int64', real, [B, S + 1]);
  }, 20);
  const members = Array.from({ length: B }, () => names.map(() => new Float32Array(KV * S * hd).fill(0.25)));
  const rebuild = await time(() => {
    for (const [n] of names.entries()) {
      const data = new Float32Array(B * KV * S * hd);
      for (let b = 0; b < B; b++) copyRealPositions({ data: members[b][n], length: S, row: 0, real: null }, data, S, b, KV, hd);
    }
  }, 3);
  // A compaction (one stream left): the last row moved into the leaver's place, in every tensor.
  const merged = names.map(() => new Float32Array(B * KV * S * hd).fill(0.5));
  const row = KV * S * hd;
  const compaction = await time(() => {
    for (const data of merged) data.copyWithin(3 * row, (B - 1) * row, B * row);
  }, 20);
  console.log(
    `   S=${S}: a member leaves: rebuild of the other 15 (before) ~${ms((rebuild * 15) / 16)}; compaction, one row moved (now) ${ms(compaction)}`,
  );
  console.log(
    `   S=${S}: mask converted per step, BigInt64Array.from(real, BigInt) (before) ${ms(mask)}; kept int64, one row copy per sequence (now) ${ms(maskKept)}; rebuild of 16 members (copyRealPositions, all ${names.length} tensors) ${ms(rebuild)}`,
  );
}

const tokenizer = new TextTokenizer(JSON.parse(readFileSync(join(demo.dir, demo.manifest.objects.tokenizer.path), 'utf8')));
const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8').slice(20_000, 40_000);
const ids = tokenizer.encode(text).slice(0, 512);
const core = wasmServingCore(demo, B);
const bundle = await core.bundle(demo.manifest.version);
const hot = core.rows(bundle)!;
await core.hotSetReady(bundle);
let k = 0;
const lookups = await time(async () => {
  for (let b = 0; b < B; b++) await hot.rows([ids[k++ % ids.length]]);
}, 20);
const logits = Array.from({ length: B }, (_, b) => {
  const rng = new Random(b);
  return Float32Array.from({ length: V }, () => rng.next() * 10);
});
const adjusters = logits.map(() => new LogitAdjuster({}, new Set()));
const streamers = logits.map(() => new TextStreamer((t) => tokenizer.decode(t)));
const rngs = logits.map((_, b) => new Random(b));
const sampling = await time(() => {
  for (let b = 0; b < B; b++) {
    const id = sampleToken(adjusters[b].apply(logits[b]), { temperature: 0, topK: 0, topP: 1 }, rngs[b]);
    adjusters[b].accept(id);
    streamers[b].push(ids[(k++ + id) % ids.length]);
  }
}, 20);
const encoder = new TextEncoder();
const sse = await time(() => {
  for (let b = 0; b < B; b++) {
    const chunk = {
      id: 'cmpl-0123456789abcdef',
      object: 'text_completion',
      created: 1764446400,
      model: 'flex',
      system_fingerprint: 'v-0123456789',
      choices: [{ index: 0, text: ' word', logprobs: null, finish_reason: null }],
    };
    encoder.encode(`data: ${JSON.stringify(chunk)}\n\n`);
  }
}, 20);
console.log(
  `   16 L0 row lookups ${ms(lookups)}; sampling 16 rows (greedy, vocab ${V}, adjuster + text streamer) ${ms(sampling)}; 16 SSE chunks (JSON + encode) ${ms(sse)}`,
);

console.log('\n4. The whole loop in Node: generate() through the serving core, step batcher on (maxDecodeBatch 16)');
const promptIds = (i: number) => ids.slice(i * 64, i * 64 + 64);
const request = (i: number, maxTokens: number): GenerationRequest => ({
  promptIds: promptIds(i % 8),
  maxTokens,
  sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 },
  stop: [],
  logprobs: null,
});
async function streams(c: number, maxTokens: number): Promise<{ ms: number; tokens: number; runs: number; rows: number }> {
  const counted = () => core.batchStats(bundle) ?? { runs: 0, rows: 0 };
  const before = { ...counted() };
  const t0 = performance.now();
  let tokens = 0;
  await Promise.all(
    Array.from({ length: c }, async (_, i) => {
      const it = generate({ decoder: core.decoder(bundle, hot), decode: (t) => tokenizer.decode(t) }, request(i, maxTokens));
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        tokens += r.value.ids.length;
      }
    }),
  );
  const after = counted();
  return { ms: performance.now() - t0, tokens, runs: after.runs - before.runs, rows: after.rows - before.rows };
}
await streams(1, 8);
await streams(B, 8);
const full1: number[] = [];
const full16: number[] = [];
const pre1: number[] = [];
const pre16: number[] = [];
let last16 = { ms: 0, tokens: 0, runs: 0, rows: 0 };
for (let r = 0; r < Math.max(3, Math.round(REPS / 3)); r++) {
  const a = await streams(1, 64);
  const a0 = await streams(1, 1);
  const b = await streams(B, 64);
  const b0 = await streams(B, 1);
  full1.push(a.ms);
  pre1.push(a0.ms);
  full16.push(b.ms);
  pre16.push(b0.ms);
  last16 = b;
}
const dec1 = (median(full1) - median(pre1)) / 63;
const dec16 = (median(full16) - median(pre16)) / 63;
console.log(
  `   1 stream x 64 tokens: ${ms(median(full1))} (${((64 / median(full1)) * 1000).toFixed(0)} tok/s); prefill + first token alone ${ms(median(pre1))}`,
);
console.log(
  `   16 streams x 64 tokens: ${ms(median(full16))} (${((16 * 64 * 1000) / median(full16)).toFixed(0)} tok/s, ${((16 * 64 * median(full1)) / (64 * median(full16))).toFixed(2)}x one stream); 16 prefills + first tokens alone ${ms(median(pre16))}`,
);
console.log(
  `   per decode round: 1 stream ${ms(dec1)}, 16 streams ${ms(dec16)} (${(dec16 / dec1).toFixed(2)}x); last 16-stream batch: ${last16.runs} runs, mean batch ${(last16.rows / last16.runs).toFixed(1)}`,
);
const mid = 96;
console.log(
  `   session.run alone over S=64..127: B=1 ${ms(runAt[mid][0])}, B=16 ${ms(runAt[mid][1])}; so outside session.run: 1 stream ${ms(dec1 - runAt[mid][0])}, 16 streams ${ms(dec16 - runAt[mid][1])} per round`,
);
await core.close();
await session.release();
