/**
 * Issue 13 (cold start): compares edge worker builds on cold isolates, interleaved, so each
 * repetition's load hits every build alike. Each build is a `wrangler deploy --dry-run --outdir`
 * folder (one of them usually `bench/.work/edge-worker`, the tree as it is); per repetition every
 * build gets a new Miniflare instance (a new workerd process), `GET /health`, then the ttft suite's
 * request (bench/suites/ttft.ts: a 64-token prompt, max_tokens 1) twice.
 *
 *   npx tsx scripts/cold-ttft-ab.ts [--reps N] [--latency MS] [--origin r2|s3] <name>=<script dir> ...
 *
 * `--origin s3` serves the bundle from s3rver in this process (bench/lib/s3.ts) instead of
 * Miniflare's local R2, which runs on the workerd thread that runs the isolate: with s3rver the
 * origin's work runs beside the isolate's, as a remote origin's does.
 *
 * Prints per build the medians (25th-75th percentile) of instance start, workerd's CPU during the
 * start and the first completion (isolate thread / all threads, 10 ms ticks), response headers,
 * memory wait, role chunk to first token and TTFT, and each build's paired ratio against the first.
 */
import { rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { requestJson, streamCompletion } from '../bench/lib/client.ts';
import { Context } from '../bench/lib/context.ts';
import { fmt, pairedRatio, shuffled, summarize } from '../bench/lib/stats.ts';
import { cpuSpent, threadCpu } from '../bench/lib/thread-cpu.ts';
import { WORK } from '../bench/lib/paths.ts';
import { startS3 } from '../bench/lib/s3.ts';
import { scriptArgs } from '../bench/lib/script-args.ts';
import { launchWorker, publish, seedR2 } from '../bench/lib/worker.ts';

const args = scriptArgs({ reps: '6', latency: '0', origin: 'r2' });
const reps = args.number('reps');
const latencyMs = args.number('latency');
const originName = args.string('origin');
if (originName !== 'r2' && originName !== 's3') throw new Error(`--origin r2 or s3, got ${originName}`);
const builds = args.positionals.map((arg) => {
  const eq = arg.indexOf('=');
  if (eq < 1) throw new Error(`expected <name>=<script dir>, got ${arg}`);
  return { name: arg.slice(0, eq), dir: arg.slice(eq + 1) };
});
if (builds.length === 0) throw new Error('name at least one build: <name>=<script dir>');

const METRICS = [
  'start',
  'startCpu',
  'startCpuAll',
  'headers',
  'memoryWait',
  'roleToToken',
  'ttft',
  'firstCpu',
  'firstCpuAll',
  'ttft2',
] as const;
type Metric = (typeof METRICS)[number];

const ctx = new Context({ quick: false, verbose: false });
const demo = await ctx.demoBundle();
const prompt = await ctx.prompt(64);
const body = { model: 'flex', prompt, max_tokens: 1, temperature: 0.8, seed: 11 };
const seed = await seedR2(builds[0].dir, [{ dir: demo.dir, model: 'flex', version: demo.manifest.version }]);
const s3Dir = join(WORK, 'cold-ab-s3');
rmSync(s3Dir, { recursive: true, force: true });
const s3 = originName === 's3' ? await startS3(s3Dir) : null;
if (s3) await publish(s3.store, demo.dir, 'flex');
const results = builds.map(() => Object.fromEntries(METRICS.map((m) => [m, [] as number[]])) as Record<Metric, number[]>);
const loadAtStart = loadavg()[0];

for (let rep = 0; rep < reps; rep++) {
  for (const b of shuffled(
    builds.map((_, i) => i),
    rep + 1,
  )) {
    const cpuAtSpawn = new Map<number, number>();
    const w = await launchWorker({
      scriptDir: builds[b].dir,
      seed,
      vars: { ...ctx.vars, ...s3?.vars, ...(latencyMs ? { ORIGIN_LATENCY_MS: String(latencyMs) } : {}) },
    });
    try {
      const afterStart = w.pid ? threadCpu(w.pid) : null;
      const r = results[b];
      r.start.push(w.startMs);
      if (afterStart) {
        const spent = cpuSpent(cpuAtSpawn, afterStart);
        r.startCpu.push(spent.busiest);
        r.startCpuAll.push(spent.total);
      }
      await requestJson(w.url, '/health');
      const before = w.pid ? threadCpu(w.pid) : null;
      const cold = await streamCompletion(w.url, body);
      if (before && w.pid) {
        const spent = cpuSpent(before, threadCpu(w.pid));
        r.firstCpu.push(spent.busiest);
        r.firstCpuAll.push(spent.total);
      }
      const warm = await streamCompletion(w.url, body);
      r.headers.push(cold.headersMs);
      r.memoryWait.push(cold.timing?.memory_wait_ms ?? NaN);
      r.roleToToken.push((cold.deltas[0] ?? NaN) - (cold.events[0]?.at ?? NaN));
      r.ttft.push(cold.deltas[0] ?? NaN);
      r.ttft2.push(warm.deltas[0] ?? NaN);
    } finally {
      await w.dispose();
    }
  }
  console.error(`rep ${rep + 1}/${reps} done (load ${loadavg()[0].toFixed(2)})`);
}

await s3?.close();
console.log(
  `reps ${reps}, origin ${originName} +${latencyMs} ms, 1-min load average ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end`,
);
for (const metric of METRICS) {
  const cells = builds.map((build, i) => {
    const s = summarize(results[i][metric]);
    const ratio = i === 0 ? '' : ` ${pairedRatio(results[i][metric], results[0][metric]).toFixed(2)}x`;
    return `${build.name} ${fmt(s.median)} (${fmt(s.p25)}-${fmt(s.p75)})${ratio}`;
  });
  console.log(`${metric.padEnd(12)} ${cells.join(' | ')}`);
}
console.log(JSON.stringify({ builds: builds.map((b) => b.name), results }));
