/**
 * The docs/BENCHMARKS.md section of the `largest` suite (bench/suites/largest.ts): kept apart from
 * report.ts, which renders the other suites, so the two can change independently.
 */
import { ISOLATE_LIMIT_BYTES, jsBytes, type LargestInstance, type LargestResult } from '../suites/largest.ts';
import { fmt, markdownTable, mibOrNa } from './stats.ts';
import { contextRows, kvBytesPerToken, longestContext } from './largest-context-report.ts';

interface StoredLargest {
  meta: { command: string; date: string; quick: boolean; seconds: number; env: { loadStart: number[]; loadEnd?: number[]; cores: number } };
  result: LargestResult;
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const mib = mibOrNa;
const gib = (b: number) => (Number.isFinite(b) ? (b / GiB).toFixed(2) : 'n/a');
const millions = (n: number) => `${(n / 1e6).toFixed(1)}M`;
const num = (x: number | undefined | null, digits?: number) =>
  x !== undefined && x !== null && Number.isFinite(x) ? fmt(x, digits) : 'n/a';
const table = markdownTable;

/** What the isolate holds after a full GC: V8 heap used + ArrayBuffers + wasm memory. */
export const afterGc = (i: LargestInstance) => jsBytes(i.heapAfter) + i.wasmAfter;

/**
 * The peak estimate: the largest JS sample during the cold load (the graph's bytes are still
 * referenced while the session is created) plus the wasm memory (which only grows), or the
 * after-GC values if larger.
 */
export function isolatePeak(i: LargestInstance): number {
  const values = [
    jsBytes(i.heapLoaded) + i.wasmLoaded,
    afterGc(i),
    (i.heapPeakSampled ?? NaN) + Math.max(i.wasmLoaded, i.wasmAfter),
  ].filter(Number.isFinite);
  return values.length ? Math.max(...values) : NaN;
}

export const fits = (i: LargestInstance) => !i.error && isolatePeak(i) <= ISOLATE_LIMIT_BYTES;

/** Least-squares slope of y on x. */
function slope(points: [number, number][]): number {
  const p = points.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
  if (p.length < 2) return NaN;
  const mx = p.reduce((s, [a]) => s + a, 0) / p.length;
  const my = p.reduce((s, [, b]) => s + b, 0) / p.length;
  const sxx = p.reduce((s, [a]) => s + (a - mx) ** 2, 0);
  return sxx === 0 ? NaN : p.reduce((s, [a, b]) => s + (a - mx) * (b - my), 0) / sxx;
}

function modelRows(instances: LargestInstance[]): string {
  const rows = instances.map((i) => [
    i.label,
    i.computeDtype,
    `${millions(i.computeParams)} (${millions(i.embeddingParams)})`,
    `${mib(i.graphBytes)} ${servedFormat(i.servedGraph)}`,
    `${gib(i.tableBytes)} (${num(i.tableBytes / i.graphBytes, 0)}×)`,
    num(i.promptTokensServed, 0),
    mib(jsBytes(i.heapAfter)),
    mib(i.wasmAfter),
    `**${mib(afterGc(i))}**`,
    mib(i.heapPeakSampled ?? NaN),
    mib(isolatePeak(i)),
    i.error
      ? `failed: ${i.error.split('\n')[0].slice(0, 120)}`
      : fits(i)
        ? '**fits**'
        : `over (${num(isolatePeak(i) / ISOLATE_LIMIT_BYTES, 2)}×)`,
    `${mib(i.rssAfter)} (${mib(i.hwm)})`,
    num(i.decodePerTokenMs?.median),
    num(i.coldFinishMs, 0),
    num(i.warmTtftMs?.median, 0),
  ]);
  return table(
    [
      'compute path',
      'compute dtype',
      'compute params (embedding)',
      'graph MiB served',
      'tables GiB at origin (× graph)',
      'prompt tokens served',
      'V8 heap + ArrayBuffers MiB after GC',
      'wasm memory MiB',
      'isolate MiB after GC (sum)',
      'V8 heap + ArrayBuffers MiB, max sampled during cold load',
      'peak estimate MiB',
      'peak against 128 MiB',
      'workerd RSS MiB (peak)',
      'decode ms/token',
      'cold TTFT ms',
      'warm TTFT ms',
    ],
    rows,
  );
}

function coldRows(instances: LargestInstance[]): string {
  const rows = instances
    .filter((i) => !i.error)
    .map((i) => [
      i.label,
      i.computeDtype,
      mib(i.graphBytes),
      num(i.instanceStartMs, 0),
      num(i.firstRequestMs, 0),
      num(i.coldHeadersMs, 0),
      num(i.graphReadMs, 0),
      num(i.coldFinishMs - i.coldHeadersMs, 0),
      num(i.coldMemoryWaitMs, 0),
      num(i.coldFinishMs, 0),
      num(i.warmTtftMs?.median, 0),
    ]);
  return table(
    [
      'compute path',
      'dtype',
      'graph MiB',
      'instance start ms',
      'first request (/health) ms',
      'bundle load ms (cold response headers)',
      'of which graph GET from origin ms (Node alone)',
      'first token ms (headers → finish)',
      'of which memory wait ms',
      'cold TTFT ms',
      'warm TTFT ms',
    ],
    rows,
  );
}

function largestPerDtype(r: LargestResult): string {
  const dtypes = [...new Set(r.instances.map((i) => i.computeDtype))];
  const rows = dtypes.map((d) => {
    const all = r.instances.filter((i) => i.computeDtype === d);
    const fitting = all.filter(fits).sort((a, b) => b.computeParams - a.computeParams);
    const best = fitting[0];
    const smallestOver = all.filter((i) => !fits(i)).sort((a, b) => a.computeParams - b.computeParams)[0];
    // Of equal compute paths, the one that stays within the limit to the longest context.
    const afterGcBest = all
      .filter((i) => !i.error && afterGc(i) <= ISOLATE_LIMIT_BYTES)
      .sort((a, b) => b.computeParams - a.computeParams || (longestContext(r, b) ?? 0) - (longestContext(r, a) ?? 0))[0];
    const context = afterGcBest && longestContext(r, afterGcBest);
    const byAfterGc = afterGcBest
      ? `${afterGcBest.label}: ${millions(afterGcBest.computeParams)}, ${mib(afterGc(afterGcBest))} MiB${context ? ` (within 128 MiB to a context of ${context} tokens, "A longer context")` : ''}`
      : 'none';
    if (!best)
      return [
        d,
        byAfterGc,
        '**none of the measured shapes**',
        smallestOver
          ? `smallest measured (${smallestOver.label}, ${millions(smallestOver.computeParams)}) holds ${mib(afterGc(smallestOver))} MiB after GC, peak ${mib(isolatePeak(smallestOver))} MiB`
          : '',
        '',
        '',
        '',
        '',
        '',
        '',
      ];
    return [
      d,
      byAfterGc,
      `${best.label}: ${millions(best.computeParams)}`,
      mib(best.graphBytes),
      gib(best.tableBytes),
      `${mib(afterGc(best))} / ${mib(isolatePeak(best))}`,
      num(best.decodePerTokenMs?.median),
      num(best.coldFinishMs, 0),
      num(best.warmTtftMs?.median, 0),
      smallestOver
        ? `${smallestOver.label} (${millions(smallestOver.computeParams)}): ${mib(isolatePeak(smallestOver))} MiB`
        : 'none measured',
    ];
  });
  return table(
    [
      'compute dtype',
      'largest that fits after GC (the measure of issue 13)',
      'largest that also fits at its peak estimate',
      'graph MiB',
      'tables GiB at origin',
      'isolate MiB after GC / peak estimate',
      'decode ms/token',
      'cold TTFT ms',
      'warm TTFT ms',
      'next larger measured (over)',
    ],
    rows,
  );
}

function growth(r: LargestResult): string {
  const lines: string[] = [];
  for (const d of [...new Set(r.instances.map((i) => i.computeDtype))]) {
    const ok = r.instances.filter((i) => i.computeDtype === d && !i.error);
    if (ok.length < 2) continue;
    const heapPerGraph = slope(ok.map((i) => [i.graphBytes, afterGc(i)]));
    const wasmPerGraph = slope(ok.map((i) => [i.graphBytes, i.wasmAfter]));
    const msPerM = slope(ok.map((i) => [i.computeParams / 1e6, i.decodePerTokenMs?.median ?? NaN]));
    const coldPerMiB = slope(ok.map((i) => [i.graphBytes / MiB, i.coldHeadersMs]));
    lines.push(
      `- **${d}** (${ok.length} models, ${millions(Math.min(...ok.map((i) => i.computeParams)))}–${millions(Math.max(...ok.map((i) => i.computeParams)))} compute params): isolate memory after GC grows ${num(heapPerGraph, 2)} bytes per graph byte (wasm memory ${num(wasmPerGraph, 2)}); decode ${num(msPerM, 3)} ms/token per million compute parameters; bundle load (cold headers) ${num(coldPerMiB, 1)} ms per graph MiB (least-squares slopes over the models above).`,
    );
  }
  return lines.join('\n');
}

/** How the measured graph was shipped: 'ort' one ORT-format file (bundles before external weights), 'onnx + weights' beside it, 'onnx' as built. */
function servedFormat(served: string | undefined): string {
  if (served?.endsWith('.ort')) return 'ort';
  return served?.includes('+') ? 'onnx + weights' : 'onnx';
}

function ortRows(r: LargestResult): string {
  const rows: (string | number)[][] = [];
  for (const e of r.ortMemory ?? []) {
    const i = r.instances.find((x) => x.name === e.name && x.computeDtype === e.computeDtype);
    const served = e.results.find((x) => x.options === 'served');
    const inline = e.results.find((x) => x.options === 'inline');
    const phases = (m: typeof served) => (m ? `${mib(m.afterCreate)} / ${mib(m.afterPrefill)} / ${mib(m.afterSteps)}` : 'n/a');
    rows.push([
      i?.label ?? e.name,
      e.computeDtype,
      served ? mib(served.graphBytes) : 'n/a',
      phases(served),
      served ? num(served.afterCreate / served.graphBytes, 2) : 'n/a',
      served ? mib(served.afterPrefill - served.afterCreate) : 'n/a',
      i ? mib(i.shape.vocab * i.shape.hidden * 4) : 'n/a',
      phases(inline),
      inline ? num(inline.afterCreate / inline.graphBytes, 2) : 'n/a',
      e.error ? `error: ${e.error.split('\n')[0].slice(0, 80)}` : '',
    ]);
  }
  return table(
    [
      'compute path',
      'dtype',
      'graph MiB',
      'served (weights beside the graph): wasm MiB after create / after 32-token prefill / after 4 steps',
      'create ÷ graph',
      'growth at the first run MiB',
      'vocab × d × 4 bytes (the LM head as f32) MiB',
      'weights inside one ORT-format file (served before): after create / prefill / steps',
      'create ÷ graph',
      '',
    ],
    rows,
  );
}

function fitRows(r: LargestResult): string {
  const js = median(r.instances.filter((i) => !i.error && i.heapAfter).map((i) => jsBytes(i.heapAfter)));
  const rows = (r.fit ?? []).map((f) => {
    const m = f.memory;
    const total = m ? m.afterSteps + js : NaN;
    return [
      `vocab ${f.shape.vocab}, d${f.shape.hidden} L${f.shape.layers}, 1 head, FFN-C ${f.shape.ffnC}`,
      f.computeDtype,
      millions(f.computeParams),
      m ? mib(m.graphBytes) : 'n/a',
      m ? `${mib(m.afterCreate)} / ${mib(m.afterPrefill)}` : `error: ${f.error?.slice(0, 80)}`,
      mib(total),
      Number.isFinite(total) ? (total <= ISOLATE_LIMIT_BYTES ? '**fits**' : `over (${num(total / ISOLATE_LIMIT_BYTES, 2)}×)`) : 'n/a',
    ];
  });
  return `Graph only, in Node (no tables, not served by workerd; \`npx tsx bench/lib/ort-memory.ts --fit\`), the worker's session options,
plus the V8 heap the served models above hold after GC (${mib(js)} MiB, median; mostly the 32,768-token tokenizer):

${table(['shape', 'compute dtype', 'compute params', 'graph MiB', 'wasm MiB after create / after first run', 'estimated isolate MiB', 'against 128 MiB'], rows)}`;
}

const median = (values: number[]) => {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : NaN;
};

/** What the measurements say stands between these models and 128 MiB, computed from them. */
function blockers(r: LargestResult): string {
  const entries = r.ortMemory ?? [];
  const ratio = (dtypes: string[], set: 'served' | 'inline') => {
    const v = entries
      .filter((e) => dtypes.includes(e.computeDtype))
      .map((e) => e.results.find((x) => x.options === set))
      .filter((m) => !!m)
      .map((m) => m.afterCreate / m.graphBytes);
    return v.length ? `${num(Math.min(...v), 2)}–${num(Math.max(...v), 2)}×` : 'n/a';
  };
  const head = entries
    .filter((e) => e.computeDtype === 'int8' || e.computeDtype === 'int4')
    .map((e) => {
      const i = r.instances.find((x) => x.name === e.name && x.computeDtype === e.computeDtype);
      const m = e.results.find((x) => x.options === 'served');
      return i && m ? `${mib(m.afterPrefill - m.afterCreate)} of ${mib(i.shape.vocab * i.shape.hidden * 4)}` : null;
    })
    .filter((x) => x !== null);
  const js = median(r.instances.filter((i) => !i.error && i.heapAfter).map((i) => jsBytes(i.heapAfter)));
  if (!entries.length) return '';
  const ladder = [...new Set(r.instances.filter((i) => !i.error && i.wasmAfter).map((i) => mib(i.wasmAfter)))].sort(
    (a, b) => Number(a) - Number(b),
  );
  const kvPerToken = kvBytesPerToken;
  const widest = [...r.instances].filter((i) => !i.error).sort((a, b) => kvPerToken(b.shape) - kvPerToken(a.shape))[0];
  return `What stands in the way, from the measurements above:

- **onnxruntime-web keeps the weights in a wasm heap that never shrinks.** After \`InferenceSession.create\` the wasm memory is
  ${ratio(['f32'], 'served')} the f32 graph and ${ratio(['int8', 'int4'], 'served')} the int8/int4 graph with the weights beside it (served now), against
  ${ratio(['f32'], 'inline')} and ${ratio(['int8', 'int4'], 'inline')} with them inside one ORT-format file (served before: the whole file is copied in first).
  What is left above 1× is onnxruntime's own start (about 16 MiB) and, for f32, the GEMM weights prepacked beside the originals.
- **The wasm memory grows in steps of about 20%** (emscripten's geometric growth), so what a model holds after GC lands on a ladder:
  ${ladder.join(', ')} MiB here. A model whose run needs a little more than one step holds the whole next one.
- **int8/int4: \`MatMulNBits\` dequantizes its whole weight to f32 on every run in this wasm build**, and the heap keeps the largest
  such buffer. A quantized LM head therefore runs in slices of at most 4,096 rows and 4 MiB of f32 (\`headSliceRows\`,
  src/model/compute-weights.ts; 2,048 rows at d 512, 1,024 at d 768 and 1,024), and the embedding gathers from the same slices, so the table is stored
  once. In graphs measured before the head was split, the first run grew the wasm memory by ${head.length ? head.join(', ') : 'n/a'} MiB (vocab × d × 4
  bytes: the whole head as f32). A full dequantization per run is also consistent with int8/int4 decoding slower than f32 here.
- **f16 is f32 at load**: f16 holds as much wasm memory as f32, as expected if each weight's \`Cast\` is folded into an f32 copy
  (cli/build-bundle.ts says so of build-time optimization).
- **The embedding/LM head is part of the compute path**: vocab × d values, ${millions(32768 * 768)} at d 768 and ${millions(32768 * 1024)} at d 1024 with a
  32,768 vocabulary, before any layer.
- **The V8 heap holds ${mib(js)} MiB** after GC (median), no request in flight: mostly the tokenizer of a 32,768 vocabulary. A request
  adds its KV cache, which grows with the context (${widest ? `${(kvPerToken(widest.shape) / 1024).toFixed(0)} KiB per token for ${widest.label}` : 'n/a'}): in JS, and twice in the
  wasm heap while a run lasts ("A longer context"). The graph's bytes are referenced while the session is created (the "sampled during cold load" column).
`;
}

export function renderLargest(stored: StoredLargest | undefined): string {
  if (!stored) return '## 4b. The largest model one Worker serves\n\n_Not run yet: `npx tsx bench/run.ts --only largest`._\n';
  const r = stored.result;
  const m = stored.meta;
  const builds = r.tableBuilds.map(
    (b) =>
      `${b.name}: ${gib(b.tableBytes)} GiB of f32 tables, whole \`flexmem build\` ${b.seconds.toFixed(0)} s (${b.measuredAt.slice(0, 16).replace('T', ' ')} UTC)`,
  );
  const dates = [...new Set(r.instances.map((i) => i.measuredAt.slice(0, 16).replace('T', ' ')))];
  return `## 4b. The largest model one Worker serves

Random-weight Flex models built by \`flexmem build\` (\`writeRandomCheckpoint\`, memory in every layer, FFN-M width 64 — the table
row is d values per layer whatever its width, so the build stays cheap — f32 tables, no lens), served by the edge worker in workerd
(Miniflare) from s3rver, one model per fresh workerd process, one at a time, with \`ISOLATE_CACHE_BYTES\` and \`HOT_SET_BYTES\` at 0
(both are budgets out of the same 128 MB; wrangler.toml's defaults would add up to 8 + 32 MiB) and the Cache API on. The models of one
(vocab, layers, d) family share one table set: the tables depend only on the memory path, so each compute path is built over the
same tables (the memory-path weights have the same names and seed in every model of a family; this run did not re-check the
tables' bytes per model) and the tables are published once.

Compute params are the compute graph's (attention, FFN-C, norms, and the tied embedding/LM head, in brackets), as \`flexmem plan\`
counts them; "graph MiB served" is what the worker loads: "onnx + weights" the graph optimized at build time with its weights beside it
as ONNX external data (served now), "ort" the same graph as one ORT-format file with the weights inside (served before; rows
measured then are kept and marked so), "onnx" compute.onnx as built (f16, whose build keeps it). Isolate memory is read through workerd's inspector after a full GC, once the cold request has loaded the bundle and
again after serving: V8 heap used + ArrayBuffers (\`Runtime.getHeapUsage\`) **plus the WebAssembly memories** (found with
\`Runtime.queryObjects\` on \`WebAssembly.Memory.prototype\`), which \`getHeapUsage\` does not count (its ArrayBuffers stayed under
1 MiB with a 365 MiB wasm heap), though the platform's 128 MB limit does (Cloudflare's limits page: "JavaScript heap, and memory
explicitly allocated in WebAssembly"). A wasm memory never shrinks, so its size after GC is onnxruntime's peak during session
creation. The peak estimate adds the largest V8 sample read without GC every 25 ms during the cold load (the graph's bytes are still
referenced while the session is created; the isolate answers only between tasks, so samples can miss a shorter peak). 128 MiB is the
limit counted here. **workerd does not enforce it locally** (it has no isolate limit enforcer, cloudflare/workerd#49, and the models
marked "over" below were served without error): an "over" model would be killed in production.

Decode ms/token = (finish of a ${r.maxTokens}-token stream − finish of a 1-token stream) / ${r.maxTokens - 1}, ${r.rounds} round(s), a ${r.promptTokens}-token prompt in each model's tokenizer${
    r.instances.some((i) => !i.error && !i.promptTokensServed)
      ? " (rows without 'prompt tokens served' were measured before the prompt was cut per tokenizer: the demo model's 32 tokens, 64 of these models')"
      : ''
  }, on ${m.env.cores}
cores shared with other work (1-min load average ${m.env.loadStart[0]} at the start, ${m.env.loadEnd?.[0] ?? 'n/a'} at the end). Cold TTFT = a 1-token completion on the fresh isolate
(after one \`/health\`), client-timed.

### Largest compute path per compute dtype

${largestPerDtype(r)}

### Every model measured

${modelRows(r.instances)}

### Cold start, split

${coldRows(r.instances)}

### Where onnxruntime-web's wasm memory goes

Measured in Node with the wasm build workerd runs (onnxruntime-web/wasm, one thread; \`bench/lib/ort-memory.ts\`, a fresh process per
cell), the same optimized graph handed over two ways with the worker's session options: served (its weights beside it as ONNX
external data, which onnxruntime-web copies one initializer at a time into the buffer it keeps) and inline (one ORT-format file with
the weights inside, as served before: onnxruntime-web copies the whole file into its heap, deserializes the weights out of it and
frees the copy). One 32-token prefill in one run, then 4 decode steps. Rows without an inline measurement predate that comparison.

${r.ortMemory?.length ? ortRows(r) : '_Not measured (`npx tsx bench/lib/ort-memory.ts --ort`, then `--merge`, adds it)._'}

${blockers(r)}
### A longer context

${contextRows(r)}

### Where the line falls: smaller shapes

${r.fit?.length ? fitRows(r) : '_Not measured (`npx tsx bench/lib/ort-memory.ts --fit`, then `--merge`)._'}

### Growth

${growth(r) || '_Fewer than two models of one dtype measured._'}

Table builds: ${builds.length ? builds.join('; ') : 'all cached'}.

${r.failures.length ? `**${r.failures.length} request(s) failed and were retried**: ${r.failures.map((f) => `\`${f.where}: ${f.message.split('\n')[0]}\``).join('; ')}.` : 'No request was retried.'}

_Measured ${dates.join(', ')} UTC (last run: \`${m.command}\`, ${m.seconds.toFixed(0)} s${m.quick ? ', quick mode' : ''}). Reproduce: \`npx tsx bench/run.ts --only largest\` (\`--quick\`: two models in f32 and int4, one round; \`LARGEST_DTYPES=f32,int8\` chooses compute dtypes; \`LARGEST_ORT_MEMORY=1\` adds the wasm-memory breakdown, or \`npx tsx bench/lib/ort-memory.ts --ort\` then \`--merge\` to a stored result; \`--fit\` the smaller shapes; \`LARGEST_MODELS=3,4\` chooses models)._
`;
}
