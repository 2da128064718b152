/**
 * docs/BENCHMARKS.md and docs/benchmarks.svg, rendered from the latest stored result of each
 * suite (bench/.work/results/<suite>.json). Only measured values are printed; a suite that has
 * not run says so. Every table names the command that reproduces it.
 */
import type { HotsetResult } from '../suites/hotset.ts';
import type { LatencyResult, VariantResult } from '../suites/latency.ts';
import type { LoadCell, LoadResult } from '../suites/load.ts';
import type { ScaleResult } from '../suites/scale.ts';
import type { LargestResult } from '../suites/largest.ts';
import type { DtypesResult } from '../suites/dtypes.ts';
import { floorNote } from './batching-floor.ts';
import { renderDtypes } from './dtypes-report.ts';
import { renderLargest } from './largest-report.ts';
import { CONFIG_LABELS, RUNTIME_LABELS, SAMPLE_REFERENCE_131072, type StepsResult } from '../suites/steps.ts';
import type { TtftResult } from '../suites/ttft.ts';
import type { RunEnv } from './env.ts';
import { fmt, kb, markdownTable, mb } from './stats.ts';
import { barChart, compose, lineChart, placeholder, type Panel } from './svg.ts';

export interface Meta {
  command: string;
  date: string;
  quick: boolean;
  seconds: number;
  env: RunEnv;
}

export interface Stored<T> {
  meta: Meta;
  result: T;
}

export interface AllResults {
  latency?: Stored<LatencyResult>;
  steps?: Stored<StepsResult>;
  scale?: Stored<ScaleResult>;
  hotset?: Stored<HotsetResult>;
  ttft?: Stored<TtftResult>;
  load?: Stored<LoadResult>;
  largest?: Stored<LargestResult>;
  dtypes?: Stored<DtypesResult>;
  /** Every run's command and wall time (bench/.work/results/runs.json). */
  runs?: RunRecord[];
}

export interface RunRecord {
  command: string;
  suites: string[];
  quick: boolean;
  rounds: number | null;
  seconds: number;
  date: string;
  built: Record<string, number>;
}

const pct = (x: number, digits = 1) => (Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : 'n/a');
const spct = (x: number, digits = 1) => (Number.isFinite(x) ? `${x < 0 ? '−' : '+'}${Math.abs(x * 100).toFixed(digits)}%` : 'n/a');
const ms = (x: number) => (Number.isFinite(x) ? `${fmt(x)} ms` : 'n/a');
const iqr = (s: { median: number; p25: number; p75: number }) => `${fmt(s.median)} (${fmt(s.p25)}–${fmt(s.p75)})`;
const x = (r: number) =>
  Number.isFinite(r) ? `${Math.abs(r) >= 100 ? r.toFixed(0) : Math.abs(r) >= 10 ? r.toFixed(1) : r.toFixed(2)}×` : 'n/a';
const table = markdownTable;
const heapMb = (h: { usedSize: number; backingStorageSize: number } | null | undefined) =>
  h ? mb(h.usedSize + h.backingStorageSize) : 'n/a';

function reproduce(meta: Meta | undefined, only: string): string {
  const when = meta
    ? `Measured ${meta.date.slice(0, 16).replace('T', ' ')} UTC by \`${meta.command}\` (${meta.seconds.toFixed(0)} s${meta.quick ? ', quick mode' : ''}; 1-min load average ${meta.env.loadStart[0]} at the start, ${meta.env.loadEnd?.[0] ?? 'n/a'} at the end, on ${meta.env.cores} cores). `
    : '';
  return `_${when}Reproduce: \`npx tsx bench/run.ts --only ${only}\` (add \`--quick\` for fewer rounds)._`;
}

function variant(l: LatencyResult | undefined, id: string): VariantResult | undefined {
  return l?.variants.find((v) => v.variant.id === id);
}

interface Target {
  target: string;
  measured: string;
  verdict: string;
  evidence: string;
}

function targets(all: AllResults): Target[] {
  const out: Target[] = [];
  const s = all.steps?.result;
  const l = all.latency?.result;
  if (s) {
    const o = s.ratios.hotF16OverheadWorkerd;
    const o32 = s.ratios.hotF32OverheadWorkerd;
    const step = s.cells.find((c) => c.runtime === 'workerd' && c.config === 'zero')!.summary.median;
    const micro = s.micro.lookupUs['workerd f16'] / 1000 / step;
    const micro32 = s.micro.lookupUs['workerd f32'] / 1000 / step;
    out.push({
      target: 'hot tiers: the memory path adds ≤ 3% to the decode step',
      measured: `served f16 tables: one L0 lookup (${fmt(s.micro.lookupUs['workerd f16'])} µs) = ${spct(micro)} of the ${ms(step)} step; A/B decode loop ${spct(o)}. With f32 tables: ${spct(micro32)} (lookup ${fmt(s.micro.lookupUs['workerd f32'])} µs); A/B ${spct(o32)} (workerd)`,
      verdict: micro <= 0.03 ? 'met' : `missed: ${spct(micro)} instead of ≤ 3%`,
      evidence: '§3 step table and micro-benchmarks',
    });
  }
  const c0 = variant(l, 'cold-r2');
  const c20 = variant(l, 'cold-r2-20');
  if (c0 && c20) {
    const rtt = 20 + c0.memoryPerDecodeMs.median;
    const ratio = c20.memoryPerDecodeMs.median / rtt;
    out.push({
      target: 'cold origin 20 ms away: a decode step waits ≤ one origin round trip',
      measured: `memory wait per decode step ${ms(c20.memoryPerDecodeMs.median)} = ${x(ratio)} (20 ms + the ${ms(c0.memoryPerDecodeMs.median)} a step waits on a 0 ms origin); ${fmt(c20.originRequestsPerToken)} origin request per token`,
      verdict: ratio <= 1.1 ? 'met (≤ 1.1× counted as met)' : `missed: ${x(ratio)} one round trip`,
      evidence: '§1 table (cold, local R2 ± 20 ms)',
    });
    const waves = (c20.memoryPrefillMs.median - c0.memoryPrefillMs.median) / 20;
    out.push({
      target: 'cold origin 20 ms away: the prefill waits one parallel wave',
      measured: `prefill memory wait ${ms(c20.memoryPrefillMs.median)} vs ${ms(c0.memoryPrefillMs.median)} at 0 ms: ${fmt(waves)} × 20 ms; ${fmt(c20.prefillOriginRequests)} origin requests for a ${l!.promptTokens}-token prompt, at most 6 in flight`,
      verdict: waves <= 1.5 ? 'met (≤ 1.5 waves counted as met)' : `missed: ≈ ${fmt(waves)} waves instead of 1`,
      evidence: '§1 table; §5 prompt waves',
    });
  }
  const c = all.scale?.result;
  if (c?.instances.length) {
    const heaps = c.instances.map((i) => (i.heapAfter ? i.heapAfter.usedSize + i.heapAfter.backingStorageSize : NaN));
    const maxHeap = Math.max(...heaps.filter(Number.isFinite));
    const biggest = Math.max(...c.instances.map((i) => i.tableBytes));
    out.push({
      target: 'scale: the worker stays within the 128 MB isolate memory with tables far larger',
      measured: `isolate heap + ArrayBuffers after serving ≤ ${mb(maxHeap)} MiB with up to ${mb(biggest)} MiB of tables (workerd process RSS, which also holds the runtime and compiled code: ≤ ${mb(Math.max(...c.instances.map((i) => i.rssAfter)))} MiB)`,
      verdict: maxHeap <= 128e6 ? 'met' : 'missed',
      evidence: '§4 table',
    });
    const colds = c.instances.filter((i) => i.setting === 'cold').sort((a, b) => a.tableBytes - b.tableBytes);
    if (colds.length >= 2) {
      const [a, b] = [colds[0], colds[colds.length - 1]];
      const r = b.memoryPerDecodeMs.median / a.memoryPerDecodeMs.median;
      out.push({
        target: 'scale: per-token memory cost stays flat as the table grows',
        measured: `cold, ${mb(a.tableBytes)} → ${mb(b.tableBytes)} MiB of tables (${x(b.tableBytes / a.tableBytes)}): memory wait per decode step ${ms(a.memoryPerDecodeMs.median)} → ${ms(b.memoryPerDecodeMs.median)} (${x(r)}); origin bytes per token ${kb(a.originBytesPerToken)} → ${kb(b.originBytesPerToken)} KiB`,
        verdict:
          a.originBytesPerToken === b.originBytesPerToken && r <= 1.5
            ? 'met (same bytes per token; memory wait within 1.5×)'
            : r > 1.5
              ? `not flat: ${x(r)}`
              : 'bytes differ',
        evidence: '§4 table',
      });
    }
  }
  if (s) {
    const r = s.ratios.workerdVsNode1t;
    out.push({
      target: 'ORT-web in workerd within 2× of onnxruntime-node on a decode step',
      measured: `${x(r)} onnxruntime-node (1 thread); ${x(s.ratios.workerdVsNode)} onnxruntime-node (default threads)`,
      verdict: r <= 2 ? `met (${x(r)} ≤ 2×)` : `missed by ${x(r / 2)}`,
      evidence: '§3 table',
    });
  }
  return out;
}

export function renderMarkdown(all: AllResults): string {
  const parts: string[] = [];
  const metas = [all.latency, all.steps, all.scale, all.hotset, all.ttft, all.load].filter(Boolean).map((s) => s!.meta);
  const allSuites = (r: RunRecord) =>
    ['hotset', 'steps', 'latency', 'ttft', 'scale'].every((s) => r.suites.includes(s)) && r.rounds === null;
  const lastRun = (quick: boolean) => [...(all.runs ?? [])].reverse().find((r) => allSuites(r) && r.quick === quick);
  const duration = (r: RunRecord | undefined) =>
    r
      ? `${(r.seconds / 60).toFixed(1)} min on ${r.date.slice(0, 10)}${
          Object.keys(r.built).length
            ? ` (of which building: ${Object.entries(r.built)
                .map(([k, v]) => `${k} ${v.toFixed(0)} s`)
                .join(', ')})`
            : ''
        }`
      : 'not run yet';
  const env = metas.sort((a, b) => b.date.localeCompare(a.date))[0]?.env;
  parts.push(`# Benchmarks

Written by \`npm run bench\` ([bench/run.ts](../bench/run.ts)); do not edit by hand. Every number below was measured by
the command named under its table, on the machine described here; nothing is estimated. The plot is
[benchmarks.svg](benchmarks.svg).

![benchmarks](benchmarks.svg)

## How to run

| command | what | time here |
|---|---|---|
| \`npm run bench\` | every suite, full rounds, writes this file and the plot | last: ${duration(lastRun(false))} |
| \`npm run bench -- --quick\` | every suite with fewer rounds and tokens | last: ${duration(lastRun(true))} |
| \`npx tsx bench/run.ts --only latency,steps\` | chosen suites (\`latency\`, \`steps\`, \`scale\`, \`hotset\`, \`ttft\`, \`load\`); other sections keep their last results | |
| \`npx tsx bench/run.ts --report-only\` | re-render this file from the stored results | seconds |

Options: \`--rounds N\` overrides the rounds of every suite; \`--no-write\` prints without touching \`docs/\`.

## Machine and method

${
  env
    ? `- ${env.cpu}, ${env.cores} cores, ${env.memGiB} GiB; load average (1/5/15 min) at the start of the most recent suite ${env.loadStart.join(' / ')}. Busiest processes then (%CPU, nice, command): ${env.busiest.map((b: string) => `\`${b.replace(/\s+/g, ' ')}\``).join(', ')}.
- Node ${env.node}; workerd ${env.versions.workerd} (miniflare ${env.versions.miniflare}, wrangler ${env.versions.wrangler}); onnxruntime-web ${env.versions['onnxruntime-web']}, onnxruntime-node ${env.versions['onnxruntime-node']}; s3rver ${env.versions.s3rver}. Commit ${env.commit} plus the working tree at the time of the run.`
    : '- (no run recorded yet)'
}
- The worker is the real one: \`wrangler deploy --dry-run\` bundles \`workers/edge.worker.ts\`, Miniflare runs it in workerd with local R2
  (or an S3 origin served by s3rver), with the \`[vars]\` of \`wrangler.toml\` unless a variant overrides them. Each variant is its own
  Miniflare instance (its own workerd process); rounds interleave the variants in a shuffled order, and tables give the **median over
  rounds** (with the 25th–75th percentile in parentheses) and **paired ratios** (median of per-round ratios).
- Latencies are taken **in the client**, where the server-sent events arrive: per-token decode time is the inter-arrival time of the
  stream's chunks, prefill is the time from the first (role) chunk to the first token. The split into memory wait and compute comes
  from the worker's own \`flexmem.timing\` summary. Deployed Workers advance their clock only at I/O (docs/platform.md); the local workerd
  used here does not: ${
    all.steps
      ? `a ${fmt(all.steps.result.clock.busyClientMs)} ms busy loop with no I/O advanced \`Date.now()\` by ${all.steps.result.clock.dateDelta} ms inside the worker`
      : '(clock check not run)'
  }, so the summary's split is meaningful here. Memory wait includes decoding the fetched rows to f32.
- The demo model is \`models/flex\` (Flex-MemoryLLM, ${all.steps ? `${mb(all.steps.result.weights.computeBytes)} MiB of compute weights, ${mb(all.steps.result.weights.tableBytesF16)} MiB of f16 tables` : 'trained'}), built with f16 tables as \`npm start\` builds it.
`);

  // Targets
  const t = targets(all);
  parts.push(`## Targets of issue 6

${
  t.length
    ? table(
        ['target', 'measured', 'verdict', 'where'],
        t.map((r) => [r.target, r.measured, `**${r.verdict}**`, r.evidence]),
      )
    : '_No suite with a target has run yet._'
}
`);

  // 1. latency
  const L = all.latency;
  if (L) {
    const l = L.result;
    const rows = l.variants.map((v) => [
      v.variant.label,
      iqr(v.decodeGapMs),
      x(v.decodeVsHot),
      fmt(v.memoryPerDecodeMs.median),
      fmt(v.computePerDecodeMs.median),
      iqr(v.prefillMs),
      fmt(v.memoryPrefillMs.median),
      fmt(v.ttftMs.median),
      fmt(v.originRequestsPerToken),
      kb(v.originBytesPerToken),
      Object.entries(v.decodeRowsByTier)
        .filter(([, n]) => n > 0)
        .map(([tier, n]) => `${tier} ${n}`)
        .join(', '),
    ]);
    parts.push(`## 1. Decode and prefill latency by memory tier

The demo model served by the edge worker, \`/v1/completions\` streaming, a ${l.promptTokens}-token prompt from the validation text and
${l.maxTokens} generated tokens (\`temperature 0.8, seed 11\`, so every variant generates the same tokens), ${l.rounds} interleaved rounds
after ${l.warmups ?? 2} warm-up request(s) per variant. Cold = \`ISOLATE_CACHE_BYTES=0 HOT_SET_BYTES=0 USE_CACHE_API=false\`; warm = the Cache API or
KV in front of an origin 20 ms away, isolate tier off; hot = the \`wrangler.toml\` defaults (isolate hot set + LRU). Memory wait and
origin reads per decode step are (N-token request − 1-token request) / (N − 1), from paired requests with the same prompt.

${table(
  [
    'variant',
    'decode ms/token (client)',
    'vs hot',
    'memory wait ms/step (server)',
    'rest of step ms (server)',
    'prefill ms (client)',
    'prefill memory wait ms',
    'TTFT ms',
    'origin req/token',
    'origin KiB/token',
    'decode rows by tier (all rounds)',
  ],
  rows,
)}

${failuresNote(l.failures)}

${reproduce(L.meta, 'latency')}
`);
  } else parts.push('## 1. Decode and prefill latency by memory tier\n\n_Not run yet: `npx tsx bench/run.ts --only latency`._\n');

  // 2 + 3 steps
  const S = all.steps;
  if (S) {
    const s = S.result;
    const runtimes = [...new Set(s.cells.map((c) => c.runtime))];
    const configs = [...new Set(s.cells.map((c) => c.config))];
    const cell = (rt: string, cfg: string) => s.cells.find((c) => c.runtime === rt && c.config === cfg)!;
    const w = s.weights;
    const hot = variant(all.latency?.result, 'hot');
    const dense = variant(all.latency?.result, 'dense');
    parts.push(`## 2. Dense-equivalent graph (reference.onnx) vs compute graph + tables

Per-token decode step of the same model, the memory path read from tables (\`compute.onnx\`) or computed in the graph
(\`reference.onnx\`, built by \`flexmem build --reference\`), and resident weights:

${table(
  ['', 'compute.onnx + tables', 'reference.onnx (dense-equivalent)', 'ratio dense / compute'],
  [
    ['graph weights (ONNX initializers)', `${mb(w.computeBytes)} MiB`, `${mb(w.referenceBytes)} MiB`, x(w.referenceBytes / w.computeBytes)],
    ['tables (not resident; rows are read per token)', `${mb(w.tableBytesF16)} MiB f16 (${mb(w.tableBytesF32)} MiB f32)`, '—', ''],
    [
      'decode step, workerd (rows from L0, f16)',
      ms(cell('workerd', 'hot-f16').summary.median),
      ms(cell('workerd', 'dense').summary.median),
      x(s.ratios.denseVsHotWorkerd),
    ],
    [
      'decode step, workerd (compute graph alone, no lookup)',
      ms(cell('workerd', 'zero').summary.median),
      ms(cell('workerd', 'dense').summary.median),
      x(s.ratios.denseVsZeroWorkerd),
    ],
    [
      'decode step, onnxruntime-node 1 thread (rows from L0, f16)',
      ms(cell('node-1t', 'hot-f16').summary.median),
      ms(cell('node-1t', 'dense').summary.median),
      x(s.ratios.denseVsHotNode1t),
    ],
    [
      'decode step, onnxruntime-node 1 thread (compute graph alone)',
      ms(cell('node-1t', 'zero').summary.median),
      ms(cell('node-1t', 'dense').summary.median),
      x(s.ratios.denseVsZeroNode1t),
    ],
    ...(hot && dense
      ? [
          [
            'served by the edge worker: decode ms/token (client, §1)',
            ms(hot.decodeGapMs.median),
            ms(dense.decodeGapMs.median),
            x(dense.decodeGapMs.median / hot.decodeGapMs.median),
          ],
          [
            'served by the edge worker: isolate V8 heap + ArrayBuffers after §1 (after GC)',
            `${heapMb(hot.memory?.heap)} MiB`,
            `${heapMb(dense.memory?.heap)} MiB`,
            hot.memory?.heap && dense.memory?.heap
              ? x(
                  (dense.memory.heap.usedSize + dense.memory.heap.backingStorageSize) /
                    (hot.memory.heap.usedSize + hot.memory.heap.backingStorageSize),
                )
              : 'n/a',
          ],
        ]
      : []),
  ],
)}

The edge-worker rows serve the dense-equivalent as a bundle whose compute object is \`reference.onnx\` and which has no tables
(\`bench/lib/bundles.ts: denseEquivalent\`), so the unmodified worker runs it. The isolate of the "hot" worker holds its hot set and LRU
(up to \`ISOLATE_CACHE_BYTES\`) on top of the graph.

${reproduce(S.meta, 'steps')} (edge-worker rows: \`--only latency\`)

## 3. Decode step by runtime

The same loop (\`bench/lib/steps.ts\`: the project's \`Decoder\` over a fixed ${s.plan.prefill}-token prefill then ${s.plan.steps} decode steps of
validation-text ids) in each runtime; ms per decode step = (median time of prefill + ${s.plan.steps} steps − median time of the prefill alone) / ${s.plan.steps},
each median over ${s.pairs ?? 1} alternating runs, then the median over ${s.rounds} interleaved rounds. workerd is timed from the client around whole requests to the bench worker
(\`bench/worker/bench.worker.ts\`).

${table(
  ['graph and rows', ...runtimes.map((r) => RUNTIME_LABELS[r])],
  configs.map((cfg) => [CONFIG_LABELS[cfg], ...runtimes.map((rt) => iqr(cell(rt, cfg).summary))]),
)}

Ratios (paired per round): workerd / onnxruntime-node 1 thread = **${x(s.ratios.workerdVsNode1t)}**; workerd / onnxruntime-node default
threads = ${x(s.ratios.workerdVsNode)}; workerd / onnxruntime-web in Node = ${x(s.ratios.workerdVsWebNode)} (compute graph alone).
Memory path from L0 on top of the compute graph (A/B of the loops above, paired per round): workerd ${spct(s.ratios.hotF16OverheadWorkerd)} (f16 tables),
${spct(s.ratios.hotF32OverheadWorkerd)} (f32); onnxruntime-node 1 thread ${spct(s.ratios.hotF16OverheadNode1t)} (f16), ${spct(s.ratios.hotF32OverheadNode1t)} (f32). The A/B
difference is small against this machine's noise for f32; the micro-benchmarks below isolate the same work.

### Hot-path micro-benchmarks

One row is ${s.micro.rowBytes} bytes stored, ${s.micro.rowValues} f32 values decoded.

${table(
  ['operation', 'workerd µs', 'Node µs'],
  [
    [
      'one L0 row lookup incl. decode, f16 table (`MemoryHierarchy.rowsFor().rows([id])`)',
      fmt(s.micro.lookupUs['workerd f16']),
      fmt(s.micro.lookupUs['node f16']),
    ],
    ['one L0 row lookup incl. decode, f32 table', fmt(s.micro.lookupUs['workerd f32']), fmt(s.micro.lookupUs['node f32'])],
    [
      'decode one f16 row: `decodeRow` (src/bundle/row-codec.ts as of the run)',
      fmt(s.micro.decodeUs['workerd src']),
      fmt(s.micro.decodeUs['node src']),
    ],
  ],
)}

${
  s.micro.overheadUs
    ? `### Per-token work outside the model

What the worker does per generated token besides \`session.run\` (src/engine/generation.ts), each timed in workerd
from the client as (n operations − none) / n. For scale: the decode step of the compute graph is ${ms(cell('workerd', 'zero').summary.median)} here${
        hot ? `, and the hot variant of §1 spends ${ms(hot.decodeGapMs.median)} per token as seen by the client` : ''
      }.

${table(
  ['operation', 'µs per token (workerd)', 'share of the decode step (paired per round)'],
  Object.entries(s.micro.overheadUs).map(([k, v]) => [k, fmt(v), s.micro.overheadVsStep ? pct(s.micro.overheadVsStep[k]) : '']),
)}

The sampling rows draw from the same Gaussian logits (σ 3) every time; \`sampleToken\` picks the token the straightforward
sampler picks for every draw (src/engine/sampler.equivalence.test.ts), which it falls back to when it cannot prove that.${
        s.micro.largeVocab
          ? `

Against the decode step of a model at that vocabulary: the demo's shape with vocabulary ${s.micro.largeVocab.vocab} (random weights; graph ${mb(s.micro.largeVocab.graphBytes)} MiB, the embedding and tied LM head
grow with the vocabulary), onnxruntime-web's wasm in Node, constant rows; sampling timed in the same process, ${s.micro.largeVocab.stepMs.n} rounds, shares paired per round (\`bench/lib/large-vocab.ts\`):

${table(
  ['', 'ms (median, IQR)', 'share of the decode step'],
  [
    [`decode step, vocabulary ${s.micro.largeVocab.vocab}`, iqr(s.micro.largeVocab.stepMs), ''],
    [
      'sampleToken, temperature 0.8',
      iqr({
        ...s.micro.largeVocab.sampleUs,
        median: s.micro.largeVocab.sampleUs.median / 1000,
        p25: s.micro.largeVocab.sampleUs.p25 / 1000,
        p75: s.micro.largeVocab.sampleUs.p75 / 1000,
      }),
      pct(s.micro.largeVocab.share),
    ],
    [
      'straightforward sampler, temperature 0.8',
      iqr({
        ...s.micro.largeVocab.referenceUs,
        median: s.micro.largeVocab.referenceUs.median / 1000,
        p25: s.micro.largeVocab.referenceUs.p25 / 1000,
        p75: s.micro.largeVocab.referenceUs.p75 / 1000,
      }),
      pct(s.micro.largeVocab.referenceShare),
    ],
  ],
)}`
          : ''
      }

`
    : ''
}${reproduce(S.meta, 'steps')}
`);
  } else
    parts.push(
      '## 2. Dense-equivalent graph\n\n_Not run yet: `npx tsx bench/run.ts --only steps`._\n\n## 3. Decode step by runtime\n\n_Not run yet._\n',
    );

  // 4. scale
  const C = all.scale;
  if (C) {
    const c = C.result;
    const rows = c.instances.map((i) => [
      `${i.shape.vocab} × ${i.shape.layers} layers × d ${i.shape.hidden}`,
      i.setting === 'cold' ? 'cold (isolate 0, no Cache API)' : 'wrangler.toml defaults',
      `${mb(i.tableBytes)} MiB`,
      `${mb(i.computeBytes)} MiB`,
      `${heapMb(i.heapIdle)} → ${heapMb(i.heapAfter)} (${i.heapAfterNoGc ? heapMb(i.heapAfterNoGc) : 'n/a'} before GC)`,
      `${mb(i.rssIdle)} → ${mb(i.rssAfter)} (peak ${mb(i.hwm)})`,
      iqr(i.decodePerTokenMs),
      fmt(i.memoryPerDecodeMs.median),
      fmt(i.originReadMs),
      kb(i.originBytesPerToken),
    ]);
    parts.push(`## 4. Scale models: tables far larger than the compute path

Random-weight Flex models (\`writeRandomCheckpoint\`, preset \`tiny\` with overrides: ${c.instances[0] ? `${c.instances[0].shape.layers} layers, d ${c.instances[0].shape.hidden}, FFN-C and FFN-M width 64, 4 heads / 2 KV heads` : ''}),
f32 tables (${c.instances[0] ? `${c.instances[0].rowBytes} bytes per row` : ''}), served by the edge worker from s3rver (S3 protocol, so table bytes never pass through
workerd except the rows it reads), ${c.maxTokens} generated tokens, ${c.rounds} interleaved rounds. Memory is read from outside the worker:
the isolate's V8 heap (used + ArrayBuffers; these do NOT include onnxruntime-web's wasm memory, which §4b adds) through workerd's inspector, after a full
garbage collection (forced by taking a heap snapshot) (the 128 MB isolate limit also counts the wasm memory: §4b) and the RSS of the whole workerd process (/proc/<pid>/status), which also holds the runtime,
Miniflare's internal workers and the compiled wasm code. "Idle" is after one \`/health\` request. Per-token decode time (client) =
(finish of an N-token stream − finish of a 1-token stream) / (N − 1); these random models emit tokens that decode to nothing, so chunk
gaps cannot be used. "origin read" is the origin alone: one 32 KiB range read of that table from Node.

${table(['vocab × layers × d', 'setting', 'tables', 'graph weights', 'isolate heap MiB idle → after', 'workerd RSS MiB idle → after', 'decode ms/token (client)', 'memory wait ms/step', 'origin read ms', 'origin KiB/token'], rows)}

${scaleNotes(c)}

${failuresNote(c.failures)}

${reproduce(C.meta, 'scale')}
`);
  } else parts.push('## 4. Scale models\n\n_Not run yet: `npx tsx bench/run.ts --only scale`._\n');
  parts.push(renderLargest(all.largest));
  parts.push(renderDtypes(all.dtypes));

  // 5. hot set
  const H = all.hotset;
  if (H) {
    const h = H.result;
    const l = all.latency?.result;
    const cold = ['cold-r2', 'cold-s3'].map((id) => variant(l, id)).filter(Boolean) as VariantResult[];
    parts.push(`## 5. Hot-set hit rate and origin traffic

The validation text (\`training/data/valid.txt\`, ${h.tokens} tokens with the demo tokenizer, ${h.distinctIds} of ${h.vocab} ids occur) — ids are
frequency-ordered, so a hot set of N rows holds ids [0, N). "Best possible" is the text's own N most frequent ids. The default
\`HOT_SET_BYTES\` = ${mb(h.hotSetBytes)} MiB holds **${h.defaultHotRows} rows** of ${h.rowBytes} bytes (f16).

${table(
  ['hot-set rows N', 'bytes (f16 rows)', 'hit rate (ids < N)', 'best possible N ids'],
  h.curve.map((p) => [p.n === h.defaultHotRows ? `**${p.n} (default)**` : p.n, `${mb(p.bytes)} MiB`, pct(p.coverage), pct(p.ideal)]),
)}

Origin traffic of a cold data centre (hot set at the default size, an unbounded page cache, the first ${h.pages[0]?.tokens} validation tokens
streamed through it), by page size:

${table(
  ['page', 'rows per page', 'origin requests per token', 'origin bytes per token'],
  h.pages.map((p) => [`${kb(p.pageBytes)} KiB`, p.rowsPerPage, fmt(p.requestsPerToken, 4), fmt(p.bytesPerToken, 0)]),
)}

Measured by the worker with the hierarchy cold (every row from the origin, \`PAGE_BYTES\` = ${h.prompt.pageBytes} bytes of rows): ${
      cold.length
        ? cold
            .map(
              (v) =>
                `${v.variant.label}: ${fmt(v.originRequestsPerToken)} origin request and ${kb(v.originBytesPerToken)} KiB per generated token`,
            )
            .join('; ')
        : 'run `--only latency`'
    }.

A ${h.prompt.window}-token prompt (median over ${h.prompt.windows} windows of the validation text), at most ${h.prompt.concurrency} reads in flight: pages
coalesced into runs of adjacent pages only; as \`MemoryHierarchy\` plans them${h.prompt.gapCap !== undefined ? ` (gaps up to ${kb(h.prompt.gapCap)} KiB merged while more than ${h.prompt.concurrency} runs remain)` : ''}; and merged across any gap into ${h.prompt.concurrency} reads:

${table(
  [
    'hierarchy',
    'adjacent pages only: requests / waves / bytes',
    'as src plans them: requests / waves / bytes',
    `any gap merged into ${h.prompt.concurrency} reads: bytes`,
  ],
  [h.prompt, ...(h.promptHot ? [h.promptHot] : [])].map((p) => [
    p.hotRows ? `default hot set (ids < ${p.hotRows}) loaded` : 'cold (no hot set)',
    `${fmt(p.runs)} / ${fmt(p.waves)} / ${kb(p.bytes)} KiB`,
    p.plannedRequests !== undefined ? `${fmt(p.plannedRequests)} / ${fmt(p.plannedWaves)} / ${kb(p.plannedBytes)} KiB` : 'n/a',
    `${kb(p.mergedBytes)} KiB (${x(p.mergedBytes / p.bytes)})`,
  ]),
)}
${
  h.prompt.readsWithin2x
    ? `
Against the rows a prompt needs (distinct ids × row bytes), with at most ${h.prompt.concurrency} contiguous range reads per wave (one object per read; R2 and S3
serve one range per request). The fewest bytes ${h.prompt.concurrency} reads can cover is the optimal interval partition of the needed pages (or rows):
the span minus the ${h.prompt.concurrency - 1} largest gaps, which is what merging the smallest gaps first without a cap reaches. Whole pages never come within 2× of the rows
of a cold prompt (a page holds ${rowsPerPageOf(h)} rows, of which a prompt rarely needs more than one), so the last columns count reads of single rows or runs of rows. Goal of issue 13: at most 1.2 waves at no more than 2× the rows needed.

${table(
  [
    'hierarchy',
    'rows needed',
    `optimal ${h.prompt.concurrency} reads of whole pages`,
    `optimal ${h.prompt.concurrency} reads of rows (no pages)`,
    'fewest row reads within 2× the rows (median)',
    'waves at that (mean)',
  ],
  [h.prompt, ...(h.promptHot ? [h.promptHot] : [])].map((p) => {
    const r = p.readsWithin2x!;
    const need = p.neededBytes ?? NaN;
    return [
      p.hotRows ? `default hot set (ids < ${p.hotRows}) loaded` : 'cold (no hot set)',
      `${kb(need)} KiB`,
      `${kb(p.optimalPageBytes ?? NaN)} KiB (${x((p.optimalPageBytes ?? NaN) / need)})`,
      `${kb(p.optimalRowBytes ?? NaN)} KiB (${x((p.optimalRowBytes ?? NaN) / need)})`,
      fmt(r.rows),
      fmt(r.wavesRows),
    ];
  }),
)}
`
    : ''
}
Bigram prefetch (rows of the top-k successors of the current token that are not in the default hot set, counted on ${h.prefetch[0]?.source};
${pct(h.missesPerToken)} of next tokens miss the hot set):

${table(
  ['k', 'misses whose row would already be prefetched', 'extra rows fetched per step'],
  h.prefetch.map((p) => [p.k, pct(p.coveredOfMisses), fmt(p.extraRowsPerStep)]),
)}

${reproduce(H.meta, 'hotset')}
`);
  } else parts.push('## 5. Hot-set hit rate\n\n_Not run yet: `npx tsx bench/run.ts --only hotset`._\n');

  // 6. ttft
  const T = all.ttft;
  if (T) {
    const tt = T.result;
    const keys: [string, string][] = [
      ['instanceStart', 'new Miniflare instance until ready (workerd start, script + wasm module load, onnxruntime start at module scope)'],
      ['firstRequest', 'first request on the isolate (`GET /health`, no bundle)'],
      [
        'bundleLoad',
        'first completion: response headers (pointer, manifest, served graph + weights + tokenizer reads, sha256, ORT session)',
      ],
      ['memoryWaitCold', '… its rows wave (server memory wait, incl. decoding rows)'],
      ['originRequestsCold', '… its origin requests'],
      ['prefillCold', '… first (role) chunk → first token (rows wave + prefill)'],
      ['ttftCold', '**TTFT on the cold isolate** (request sent → first token)'],
      ['headersWarm', 'the same request again on that isolate (its second request): headers'],
      ['memoryWaitWarm', '… memory wait (rows from L0)'],
      ['prefillWarm', '… role chunk → first token'],
      ['ttftWarm', '**TTFT of the second request**'],
    ];
    const phaseLabels: Record<string, string> = {
      'first request (no bundle)': 'first request on the isolate',
      read: 'read pointer, manifest, the served graph and its weights, tokenizer.json (local R2)',
      hash: 'sha256 of graph + tokenizer',
      tokenizer: 'parse the tokenizer',
      runtime:
        "onnxruntime start: wasm instantiation, runtime init, a one-node session created and run (edge worker: inside its kernels' warm-up, at module scope)",
      kernels:
        "the kernels' warm-up: a one-layer model of the same architecture (served as bundles are, its weights beside it) created, a prefill and a decode step run (edge worker: at module scope)",
      session: "first `InferenceSession.create` of the served graph (sessionOptionsFor), after the runtime start and the kernels' warm-up",
      session2: 'a second `InferenceSession.create` (graph only)',
      prefill: 'first 32-token prefill on the first session (constant rows)',
      prefill2: 'the same prefill again',
    };
    parts.push(`## 6. Time to first token on a cold isolate

Each repetition starts a new Miniflare instance (a new workerd process, empty caches) with the \`wrangler.toml\` defaults, publishes
nothing new (the demo bundle is already in its local R2), and sends one ${tt.promptTokens}-token prompt with \`max_tokens: 1\`, then the
same request again. ${tt.reps} repetitions per origin latency, medians (25th–75th percentile).

${table(
  ['', 'origin 0 ms', 'origin +20 ms'],
  keys.map(([k, label]) => [label, iqr(tt.summary['0'][k]), iqr(tt.summary['20'][k])]),
)}

The bundle load split by phase (bench worker on a fresh instance that has not started onnxruntime, one phase per request, client-timed;
CPU from /proc, medians, in 10 ms ticks: the isolate's thread, and all of workerd's threads, V8's background compilation included):

${table(
  [
    'phase',
    'ms',
    'CPU ms: isolate thread / all threads',
    'workerd RSS after it, MiB',
    'isolate heap + ArrayBuffers after it (after GC), MiB',
  ],
  [
    ['instance ready', '', '', fmt(tt.phaseRss?.ready?.median ?? NaN), fmt(tt.phaseHeap?.ready?.median ?? NaN)],
    ...Object.entries(tt.phases).map(([k, v]) => [
      phaseLabels[k] ?? k,
      iqr(v),
      tt.phaseCpu?.[k] ? `${fmt(tt.phaseCpu[k].busiest.median)} / ${fmt(tt.phaseCpu[k].total.median)}` : '',
      fmt(tt.phaseRss?.[k]?.median ?? NaN),
      fmt(tt.phaseHeap?.[k]?.median ?? NaN),
    ]),
    [
      '200 decode steps on the first session (rows: a constant block)',
      '',
      '',
      fmt(tt.phaseRss?.['after 200 decode steps']?.median ?? NaN),
      fmt(tt.phaseHeap?.['after 200 decode steps']?.median ?? NaN),
    ],
  ],
)}

${
  tt.before
    ? `Before build-time optimization and the module-scope start (a fresh bench worker per repetition whose first session is compute.onnx with onnxruntime's
defaults, as served before): first \`InferenceSession.create\` ${iqr(tt.before.session)} ms, first prefill ${iqr(tt.before.prefill)} ms. Now, paired
by repetition: the first create ${x(tt.before.sessionRatio)} of that, the first prefill ${x(tt.before.prefillRatio)}, the two together (the onnxruntime work
left in the first request) ${x(tt.before.firstRequestRatio)}.

`
    : ''
}${
  tt.withoutKernels
    ? `Without the kernels' warm-up (a fresh bench worker per repetition: runtime start, then the first create and prefill): first create
${iqr(tt.withoutKernels.session)} ms, first prefill ${iqr(tt.withoutKernels.prefill)} ms. With it, paired by repetition: the first create
${x(tt.withoutKernels.sessionRatio)} of that, the first prefill ${x(tt.withoutKernels.prefillRatio)}, the two together ${x(tt.withoutKernels.firstRequestRatio)}.

`
    : ''
}${
  tt.sessionVariants
    ? `Ways to ship and load the graph (issue 13, cold start): each a graph-only \`InferenceSession.create\` on the same isolate after its first
session, then a 32-token prefill and 64 decode steps (constant rows), both timed inside the worker, 2 per repetition in a shuffled order;
ratios are paired against the first row (compute.onnx with onnxruntime's defaults); the last column is the largest |logit| difference from it over the
prefill's last position.

${table(
  ['graph and session options', 'graph bytes', 'create ms', 'create vs served', 'decode ms/step', 'step vs served', 'max |Δ logit|'],
  tt.sessionVariants.map((v) => [
    v.name,
    `${mb(v.graphBytes)} MiB`,
    iqr(v.createMs),
    x(v.createRatio),
    iqr(v.stepMs),
    x(v.stepRatio),
    v.maxLogitDiff.toExponential(1),
  ]),
)}

`
    : ''
}${reproduce(T.meta, 'ttft')}
`);
  } else parts.push('## 6. Time to first token on a cold isolate\n\n_Not run yet: `npx tsx bench/run.ts --only ttft`._\n');

  parts.push(loadSection(all.load));
  parts.push(findings(all));
  return parts.join('\n');
}

/** §7: concurrent streams on one isolate, admission control off and on. */
function loadSection(L: Stored<LoadResult> | undefined): string {
  const title = '## 7. Load: concurrent streams on one isolate';
  if (!L) return `${title}\n\n_Not run yet: \`npx tsx bench/run.ts --only load\`._\n`;
  const l = L.result;
  const pair = (a: number, b: number) => `${fmt(a)} / ${fmt(b)}`;
  const label = (id: string) => l.settings.find((s) => s.id === id)?.label ?? id;
  const rows = l.cells.map((c) => [
    c.concurrency,
    label(c.admission),
    c.requests,
    `${c.ok} / ${c.rejected} / ${c.errors}`,
    fmt(c.tokensPerSecond.median),
    pair(c.ttftMs.p50, c.ttftMs.p99),
    pair(c.interTokenMs.p50, c.interTokenMs.p99),
    c.rejected ? `${fmt(c.rejectMs.min)} / ${fmt(c.rejectMs.p50)} / ${fmt(c.rejectMs.max)}` : '—',
    fmt(c.wallMs.median / 1000),
    c.meanDecodeBatch !== undefined && Number.isFinite(c.meanDecodeBatch) ? fmt(c.meanDecodeBatch) : '—',
    mb(c.peakRss),
  ]);
  const on = `the deployed defaults: ${Object.entries(l.onDefaults)
    .map(([k, v]) => `\`${k}=${v.value}\` (${v.from === 'built-in' ? 'built-in default' : 'wrangler.toml'})`)
    .join(', ')}`;
  const off = Object.entries(l.settings.find((s) => s.id === 'off')?.overrides ?? {})
    .map(([k, v]) => `\`${k}=${v}\``)
    .join(', ');
  return `${title}

The edge worker in workerd with the \`wrangler.toml\` defaults, one Miniflare instance (one process, one isolate) per
setting, the demo model loaded by ${l.warmups} warm-up stream(s) first. For each number of streams, that many streaming completions
are sent at once (\`temperature 0\`, \`max_tokens\` ${l.maxTokens}; ${l.prompts} prompts of about ${l.promptTokens} tokens from the validation
text, stream i sends prompt i mod ${l.prompts}), ${l.rounds} round(s)${l.rounds !== l.roundsPlanned ? ` of ${l.roundsPlanned} planned` : ''}, the ${l.settings.length} settings in a shuffled order at each step. Admission
off = \`MAX_ACTIVE_GENERATIONS=1000000\`; on = ${on}. Unbatched = ${off} (every decode step its own \`session.run\`); batched = continuous
batching of decode steps (src/engine/step-batcher.ts) with \`MAX_DECODE_BATCH=${l.decodeBatch?.value ?? '?'}\` (${l.decodeBatch?.from ?? 'n/a'}); mean decode batch =
decode steps per batched \`session.run\`, from the worker's /metrics. Tokens/s = tokens generated by the batch / its wall time (first request sent → last stream
ended), median over rounds. TTFT = request sent → first token, over every stream that received one; inter-token latency = the gaps
between consecutive tokens as they reach the client, pooled over every stream and round (tokens that arrive in one read count as a
0 ms gap); over fewer than 100 values a p99 is close to the largest. Rejected = HTTP 429 or 503, answered by admission control, and not counted as errors; errors = any other status, an error
in the stream, or no end within ${l.streamTimeoutMs / 1000} s. The client and both workerd processes share the machine's cores.

${table(
  [
    'streams',
    'admission',
    'requests',
    'ok / rejected / errors',
    'tokens/s (batch)',
    'TTFT p50 / p99 ms',
    'inter-token p50 / p99 ms',
    'rejected: answered in ms (min / p50 / max)',
    'batch wall s',
    'mean decode batch',
    'workerd RSS peak MiB',
  ],
  rows,
)}

${loadReading(l)}

${reproduce(L.meta, 'load')}
`;
}

/** What the load table shows, each sentence quoting its numbers. */
function loadReading(l: LoadResult): string {
  const out: string[] = [];
  const cell = (c: number, a: string) => l.cells.find((x) => x.concurrency === c && x.admission === a);
  const levels = [...new Set(l.cells.map((c) => c.concurrency))].sort((a, b) => a - b);
  const [lo, hi] = [levels[0], levels[levels.length - 1]];
  for (const s of l.settings) {
    const a = cell(lo, s.id);
    const b = cell(hi, s.id);
    if (!a || !b || lo === hi) continue;
    out.push(
      `- Admission ${s.label}, ${lo} → ${hi} streams: ${fmt(a.tokensPerSecond.median)} → ${fmt(b.tokensPerSecond.median)} tokens/s in total (${x(b.tokensPerSecond.median / a.tokensPerSecond.median)}); TTFT p50 ${ms(a.ttftMs.p50)} → ${ms(b.ttftMs.p50)}, p99 ${ms(a.ttftMs.p99)} → ${ms(b.ttftMs.p99)}; inter-token p50 ${ms(a.interTokenMs.p50)} → ${ms(b.interTokenMs.p50)}, p99 ${ms(a.interTokenMs.p99)} → ${ms(b.interTokenMs.p99)}.`,
    );
  }
  const rejected = l.cells.filter((c) => c.rejected > 0);
  const statuses = (c: LoadCell) =>
    Object.entries(c.statuses)
      .filter(([k]) => k === '429' || k === '503')
      .map(([k, n]) => `HTTP ${k} × ${n}`)
      .join(', ');
  const total = (cells: LoadCell[], k: 'rejected' | 'errors' | 'requests') => cells.reduce((n, c) => n + c[k], 0);
  const refused = (c: LoadCell) =>
    `${c.rejected} of ${c.requests} requests at ${c.concurrency} streams with admission ${c.admission} (${statuses(c)}; answered in ${ms(c.rejectMs.min)} to ${ms(c.rejectMs.max)}, p50 ${ms(c.rejectMs.p50)})`;
  if (rejected.length) out.push(`- Refused (429/503): ${rejected.map(refused).join('; ')}.`);
  else if (Object.values(l.admissionInWorker).some(Boolean))
    out.push(`- No request was refused in either setting: up to ${hi} streams stayed within the default limits.`);
  else {
    const names = Object.keys(l.admissionInWorker).map((k) => `\`${k}\``);
    out.push(
      `- No request was refused in either setting. The worker bundled for this run does not contain ${names.join(', ')}: it had no admission control, so "on" and "off" ran the same worker and their differences are run-to-run variation.`,
    );
  }
  const solo = cell(1, 'off');
  const burst = cell(16, 'off-batched');
  if (solo && burst) {
    const speedup = burst.tokensPerSecond.median / solo.tokensPerSecond.median;
    const latency = burst.interTokenMs.p99 / solo.interTokenMs.p99;
    const met = speedup >= 4 && latency <= 2;
    out.push(
      `- Goal of issue 13 (16 streams, batched, against 1 stream unbatched: ≥ 4× the tokens/s, p99 inter-token ≤ 2×): ${met ? 'met' : 'not met'}: ${fmt(burst.tokensPerSecond.median)} against ${fmt(solo.tokensPerSecond.median)} tokens/s (${x(speedup)}), p99 inter-token ${ms(burst.interTokenMs.p99)} against ${ms(solo.interTokenMs.p99)} (${x(latency)}), ${fmt(burst.meanDecodeBatch ?? NaN)} decode steps per run. Starvation: ${burst.ok} of ${burst.requests} streams completed, ${fmt(burst.tokensPerStream)} tokens each (median), and the longest wait of any stream between two of its tokens was ${ms(Math.max(...burst.batches.flatMap((b) => b.streams.map((s) => s.gapMaxMs))))}.`,
    );
  }
  if (l.floor && solo)
    out.push(floorNote(l.floor, { tokensPerSecond: solo.tokensPerSecond.median, interTokenP50Ms: solo.interTokenMs.p50 }));
  const errors = l.cells.filter((c) => c.errors > 0);
  if (errors.length) {
    out.push(
      `- ${total(errors, 'errors')} of ${total(l.cells, 'requests')} streams ended in an error (${errors.map((c) => `${c.errors} at ${c.concurrency} streams, admission ${c.admission}`).join('; ')}): ${[
        ...new Set(errors.flatMap((c) => c.errorSamples)),
      ]
        .slice(0, 3)
        .map((e) => `\`${e.split('\n')[0]}\``)
        .join('; ')}.`,
    );
  } else out.push(`- No stream ended in an error (${total(l.cells, 'requests')} requests).`);
  if (l.stoppedEarly) out.push(`- The suite stopped early: ${l.stoppedEarly}.`);
  return out.join('\n');
}

function failuresNote(failures: { where: string; message: string }[] | undefined): string {
  if (!failures?.length) return 'No request failed.';
  const list = failures.map((f) => `${f.where}: ${f.message.split('\n')[0]}`);
  return `**${failures.length} request(s) failed and were retried** (each retry succeeded, or the run would have stopped): ${list.map((l) => `\`${l}\``).join('; ')}.`;
}

function scaleNotes(c: ScaleResult): string {
  const colds = c.instances.filter((i) => i.setting === 'cold' && i.heapAfter).sort((a, b) => a.tableBytes - b.tableBytes);
  if (colds.length < 2) return '';
  const [a, b] = [colds[0], colds[colds.length - 1]];
  const heap = (i: ScaleResult['instances'][number]) => i.heapAfter!.usedSize + i.heapAfter!.backingStorageSize;
  return `From ${mb(a.tableBytes)} to ${mb(b.tableBytes)} MiB of tables (cold setting) the isolate heap went ${mb(heap(a))} → ${mb(heap(b))} MiB while the graph weights went ${mb(a.computeBytes)} → ${mb(b.computeBytes)} MiB (embedding and LM head grow with the vocabulary and are part of the compute graph): ${fmt((heap(b) - heap(a)) / (b.computeBytes - a.computeBytes))} MiB of heap per MiB of graph weights, while the tables grew by ${mb(b.tableBytes - a.tableBytes)} MiB. The workerd process RSS (which also holds the runtime, Miniflare's own workers and compiled code) is split by phase in §6.`;
}

const rowsPerPageOf = (h: HotsetResult) => Math.round(h.prompt.pageBytes / h.rowBytes);

/** The build-time optimized graph against the graph as served, from the ttft suite's session variants. */
function coldStartVariants(t: TtftResult): string {
  const served = t.sessionVariants?.[0];
  const best = t.sessionVariants?.at(-1);
  if (!served || !best) return '';
  return ` The graph optimized at build time (served now, its weights beside it) loaded with \`sessionOptionsFor\` takes ${x(best.createRatio)} the graph-only create time of compute.onnx with onnxruntime's defaults (served before it; ${ms(best.createMs.median)} against ${ms(served.createMs.median)}), with decode steps at ${x(best.stepRatio)} and logits within ${best.maxLogitDiff.toExponential(1)}.`;
}

/** What limits the numbers above; every sentence is conditioned on (and quotes) a measured value. */
function findings(all: AllResults): string {
  const out: string[] = [];
  const s = all.steps?.result;
  const l = all.latency?.result;
  const h = all.hotset?.result;
  const t = all.ttft?.result;
  if (s) {
    const step = s.cells.find((c) => c.runtime === 'workerd' && c.config === 'zero')!.summary.median;
    const o = s.micro.overheadUs;
    const large = o?.['sampleToken, temperature 0.8, vocab 131072'] ?? NaN;
    const share = s.micro.overheadVsStep?.['sampleToken, temperature 0.8, vocab 131072'] ?? NaN;
    const straightforward = o?.[SAMPLE_REFERENCE_131072] ?? NaN;
    const onePass = o?.['sampleToken, temperature 0 (argmax: one pass over the logits), vocab 131072'] ?? NaN;
    const atVocab = s.micro.largeVocab;
    if (o && atVocab)
      out.push(
        `- **Sampling at a Llama-3-sized vocabulary: ${pct(atVocab.share)} of a decode step at that vocabulary** (the straightforward sampler: ${pct(atVocab.referenceShare)}; goal of issue 13: under 10%), and ${pct(share)} of the demo model's (vocabulary 4096) decode step in workerd, where \`sampleToken\` with \`temperature\` 0.8 takes ${fmt(large)} µs at vocabulary 131072 (the straightforward sampler ${fmt(straightforward)} µs) and one pass over the logits (argmax) ${fmt(onePass)} µs. Drawing in id order with the same tokens as before needs every token's weight: one exp per logit.`,
      );
    else if (o && share >= 0.1) {
      out.push(
        `- **Sampling at a Llama-3-sized vocabulary is still ${pct(share)} of a decode step** (goal of issue 13: under 10%). \`sampleToken\` with \`temperature\` 0.8 takes ${fmt(large)} µs at vocabulary 131072 (the straightforward sampler ${fmt(straightforward)} µs) against a ${ms(step)} decode step of the demo's compute graph; one pass over the logits (argmax) takes ${fmt(onePass)} µs. Drawing in id order with the same tokens as before needs every token's weight, an exp per logit.`,
      );
    }
    if (s.ratios.workerdVsNode1t <= 2)
      out.push(
        `- onnxruntime-web in workerd runs the compute graph's decode step at ${x(s.ratios.workerdVsNode1t)} the time of single-threaded onnxruntime-node on this machine.`,
      );
  }
  const c0 = variant(l, 'cold-r2');
  const c20 = variant(l, 'cold-r2-20');
  if (l && c0 && c20) {
    const waves = (c20.memoryPrefillMs.median - c0.memoryPrefillMs.median) / 20;
    out.push(
      `- **A cold prefill takes several origin round trips, not one.** ${fmt(c20.prefillOriginRequests)} origin requests for the ${l.promptTokens}-token prompt with at most 6 in flight (\`originConcurrency\`); the prefill's memory wait grows by ${fmt(waves)} × 20 ms when the origin is 20 ms away.${
        h
          ? ` Offline over the validation text (§5): cold, ${fmt(h.prompt.runs)} runs of adjacent pages → ${fmt(h.prompt.waves)} waves${h.prompt.plannedRequests !== undefined ? `, ${fmt(h.prompt.plannedRequests)} requests → ${fmt(h.prompt.plannedWaves)} waves as src plans them` : ''}; ${fmt(h.promptHot.runs)} runs → ${fmt(h.promptHot.waves)} wave once the default hot set is loaded; merging across any gap into 6 reads makes a cold prompt one wave at ${x(h.prompt.mergedBytes / h.prompt.bytes)} the bytes.${h.prompt.readsWithin2x && h.prompt.neededBytes ? ` Against the rows it needs (${kb(h.prompt.neededBytes)} KiB), the best any 6 contiguous reads can do is ${x((h.prompt.optimalPageBytes ?? NaN) / h.prompt.neededBytes)} the bytes with whole pages and ${x((h.prompt.optimalRowBytes ?? NaN) / h.prompt.neededBytes)} reading rows alone (the optimal interval partition, which merging the smallest gaps first already reaches), and staying within 2× takes ${fmt(h.prompt.readsWithin2x.rows)} row reads (${fmt(h.prompt.readsWithin2x.wavesRows)} waves on average): the goal of issue 13 (≤ 1.2 waves at ≤ 2× the rows) cannot be met by planning reads for a cold prompt with no hot set; it is a property of how the prompt's ids spread over the table, at most six single-range reads in flight.` : ''}`
          : ''
      }`,
    );
  }
  if (t) {
    const s0 = t.summary['0'];
    const phase = (k: string) => t.phases[k]?.median ?? NaN;
    const met = s0.ttftCold.median <= 300;
    out.push(
      `- **A cold isolate's first token: ${ms(s0.ttftCold.median)} on a new instance (origin 0 ms); goal of issue 13: within 300 ms, ${met ? 'met' : 'missed'}.** Of it, ${ms(s0.bundleLoad.median)} until the response headers (bundle load) and ${ms(s0.prefillCold.median)} from the role chunk to the first token (rows wave + prefill). The bench worker splits the load: onnxruntime's start takes ${ms(phase('runtime'))} (the edge worker runs it at module scope: here it falls in the instance's start, not in the first request; in production in the isolate's start, which the first request may itself cause), the first \`InferenceSession.create\` of the served graph after it ${ms(phase('session'))} against ${ms(phase('session2'))} for a second one, the first 32-token prefill ${ms(phase('prefill'))} against ${ms(phase('prefill2'))} for the same again, reading every bundle object ${ms(phase('read'))} and hashing them ${ms(phase('hash'))}.${coldStartVariants(t)}${met ? '' : ` What stands in the way is the session create itself (${ms(phase('session2'))} even for a second one; most of it onnxruntime's allocation planner, superlinear in the graph's node count, docs/architecture.md "Cold start") and the first request's rows wave (${ms(s0.memoryWaitCold.median)}; the 8 MiB hot set is read from the moment the manifest is known, beside the session create, docs/architecture.md "Cold start").`}`,
    );
  }
  if (h) {
    const k4 = h.prefetch.find((p) => p.k === 4);
    if (k4)
      out.push(
        `- The default hot set (${h.defaultHotRows} rows, ${mb(h.hotSetBytes)} MiB) serves ${pct(h.curve.find((p) => p.n === h.defaultHotRows)!.coverage)} of the validation text's tokens; a bigram prefetch of 4 successor rows would have fetched ${pct(k4.coveredOfMisses)} of the remaining misses one step early, at ${fmt(k4.extraRowsPerStep)} extra rows per step.`,
      );
  }
  const failed = [...(l?.failures ?? []), ...(all.scale?.result.failures ?? [])];
  if (failed.length) {
    out.push(
      `- ${failed.length} streamed request(s) in §1/§4 ended with the worker's generic \`The server had an error while generating.\` and succeeded when retried by the benchmark (${[...new Set(failed.map((f) => f.where.replace(/ round \d+.*| warm-up/, '')))].join(', ')}).`,
    );
  }
  return `## What limits these numbers\n\n${out.length ? out.join('\n') : '_Run the suites to fill this in._'}\n`;
}

export function renderSvg(all: AllResults): string {
  const panels: Panel[] = [];
  const l = all.latency?.result;
  if (l) {
    panels.push(
      barChart(
        '1. Decode step per token, by tier (client, median)',
        'ms per token',
        ['memory wait (server)', 'rest of the step'],
        l.variants.map((v) => {
          const mw = Math.max(0, v.memoryPerDecodeMs.median);
          return {
            label: v.variant.short ?? v.variant.id,
            values: [Math.min(mw, v.decodeGapMs.median), Math.max(0, v.decodeGapMs.median - mw)],
            note: fmt(v.decodeGapMs.median),
          };
        }),
      ),
    );
    panels.push(
      barChart(
        '1. Prefill of a 64-token prompt, by tier (client, median)',
        'ms (first chunk → first token)',
        ['memory wait (server)', 'rest of the prefill'],
        l.variants.map((v) => {
          const mw = Math.max(0, v.memoryPrefillMs.median);
          return {
            label: v.variant.short ?? v.variant.id,
            values: [Math.min(mw, v.prefillMs.median), Math.max(0, v.prefillMs.median - mw)],
            note: fmt(v.prefillMs.median),
          };
        }),
      ),
    );
  } else panels.push(placeholder('1. Decode by tier', 'latency suite not run'), placeholder('1. Prefill by tier', 'latency suite not run'));
  const s = all.steps?.result;
  if (s) {
    const runtimes = [...new Set(s.cells.map((c) => c.runtime))];
    const configs = [...new Set(s.cells.map((c) => c.config))];
    panels.push(
      barChart(
        '2–3. Decode step by runtime and graph (median)',
        'ms per decode step',
        ['ms'],
        runtimes.flatMap((rt) =>
          configs.map((cfg) => {
            const c = s.cells.find((x) => x.runtime === rt && x.config === cfg)!;
            return { label: `${rt} · ${cfg}`, values: [c.summary.median], note: fmt(c.summary.median) };
          }),
        ),
      ),
    );
  } else panels.push(placeholder('2–3. Decode step by runtime', 'steps suite not run'));
  const h = all.hotset?.result;
  if (h) {
    panels.push(
      lineChart(
        '5. Hot-set hit rate on the validation text',
        'hot-set size N (rows, ids < N; log scale)',
        '% of token occurrences',
        [
          {
            name: 'ids < N (frequency order of the tokenizer)',
            points: h.curve.filter((p) => p.n > 0).map((p) => [p.n, p.coverage * 100]),
          },
          { name: 'best possible N ids', points: h.curve.filter((p) => p.n > 0).map((p) => [p.n, p.ideal * 100]), dashed: true },
        ],
        { logX: true, yMax: 100, marks: [{ x: h.defaultHotRows, label: `default ${mb(h.hotSetBytes)} MiB` }] },
      ),
    );
  } else panels.push(placeholder('5. Hot-set hit rate', 'hotset suite not run'));
  const c = all.scale?.result;
  if (c) {
    panels.push(
      barChart(
        '4. Scale models: isolate heap after serving vs table size',
        'MiB (V8 heap used + ArrayBuffers, without wasm memory)',
        ['isolate heap'],
        c.instances.map((i) => ({
          label: `${mb(i.tableBytes)} MiB tables · ${i.setting}`,
          values: [i.heapAfter ? (i.heapAfter.usedSize + i.heapAfter.backingStorageSize) / 2 ** 20 : NaN],
          note: `${heapMb(i.heapAfter)} MiB; ${fmt(i.memoryPerDecodeMs.median)} ms mem/step`,
        })),
        { limit: { value: 128e6 / 2 ** 20, label: '128 MB' } },
      ),
    );
  } else panels.push(placeholder('4. Scale models', 'scale suite not run'));
  const t = all.ttft?.result;
  if (t) {
    const s0 = t.summary['0'];
    const s20 = t.summary['20'];
    const row = (label: string, s: Record<string, { median: number }>) => ({
      label,
      values: [
        s.bundleLoad.median,
        s.memoryWaitCold.median,
        Math.max(0, s.ttftCold.median - s.bundleLoad.median - s.memoryWaitCold.median),
      ],
      note: `${fmt(s.ttftCold.median)} ms`,
    });
    panels.push(
      barChart(
        '6. TTFT on a cold isolate (client, median)',
        'ms',
        ['bundle load (headers)', 'rows wave', 'prefill + rest'],
        [row('origin 0 ms', s0), row('origin +20 ms', s20)],
      ),
    );
  } else panels.push(placeholder('6. TTFT', 'ttft suite not run'));
  const dates = [all.latency, all.steps, all.scale, all.hotset, all.ttft].filter(Boolean).map((x) => x!.meta.date.slice(0, 10));
  return compose(
    panels,
    2,
    `flexmem benchmarks (docs/BENCHMARKS.md), measured ${[...new Set(dates)].join(', ')} by npm run bench; medians over interleaved rounds.`,
  );
}
