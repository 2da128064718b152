/**
 * `npm run bench`: the benchmarks of issue 6, written to docs/BENCHMARKS.md and docs/benchmarks.svg.
 *
 *   npx tsx bench/run.ts                      every suite (about 33 minutes here, 22 of them the largest models; bundles are cached in bench/.work)
 *   npx tsx bench/run.ts --quick              fewer rounds and tokens (about 2-3 minutes)
 *   npx tsx bench/run.ts --only latency,ttft  chosen suites; the report keeps the others' last results
 *   npx tsx bench/run.ts --rounds 3           override every suite's rounds
 *   npx tsx bench/run.ts --no-write           print, do not touch docs/
 *   npx tsx bench/run.ts --report-only        re-render docs/ from the stored results
 *
 * Suites: hotset (item 5), steps (items 2, 3, hot-path cost), latency (items 1, 2, 5),
 * ttft (item 6), scale (item 4), load (concurrent streams, admission control on and off), dtypes
 * (issue 13: compute dtypes of the demo models, docs/quantization.md). Build products
 * and raw results live in bench/.work (gitignored).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Context, type Options } from './lib/context.ts';
import { runEnv } from './lib/env.ts';
import { PLOT, REPORT, WORK } from './lib/paths.ts';
import { renderMarkdown, renderSvg, type AllResults, type Meta } from './lib/report.ts';
import { runHotset } from './suites/hotset.ts';
import { runDtypes } from './suites/dtypes.ts';
import { runLargest } from './suites/largest.ts';
import { runLatency } from './suites/latency.ts';
import { runLoad } from './suites/load.ts';
import { runScale } from './suites/scale.ts';
import { runSteps } from './suites/steps.ts';
import { runTtft } from './suites/ttft.ts';

const SUITES = {
  hotset: runHotset,
  steps: runSteps,
  latency: runLatency,
  ttft: runTtft,
  scale: runScale,
  load: runLoad,
  largest: runLargest,
  dtypes: runDtypes,
} as const;
type SuiteName = keyof typeof SUITES;

function parseArgs(argv: string[]): { options: Options; only: SuiteName[]; write: boolean; reportOnly: boolean } {
  const options: Options = { quick: false, verbose: false };
  let only: SuiteName[] = Object.keys(SUITES) as SuiteName[];
  let write = true;
  let reportOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const eq = arg.indexOf('=');
      if (eq !== -1) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--quick') options.quick = true;
    else if (arg === '--verbose') options.verbose = true;
    else if (arg === '--no-write') write = false;
    else if (arg === '--report-only') reportOnly = true;
    else if (arg.startsWith('--rounds')) options.rounds = Math.max(1, Number(value()));
    else if (arg.startsWith('--only')) {
      only = value()
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean) as SuiteName[];
      for (const s of only) if (!(s in SUITES)) throw new Error(`unknown suite ${s} (expected ${Object.keys(SUITES).join(', ')})`);
    } else if (arg === '--help' || arg === '-h') {
      console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]);
      process.exit(0);
    } else throw new Error(`unknown option ${arg} (see --help)`);
  }
  return { options, only, write, reportOnly };
}

const resultsDir = join(WORK, 'results');

function loadAll(): AllResults {
  const all: AllResults = {};
  for (const name of Object.keys(SUITES) as SuiteName[]) {
    const path = join(resultsDir, `${name}.json`);
    if (existsSync(path)) (all as Record<string, unknown>)[name] = JSON.parse(readFileSync(path, 'utf8'));
  }
  const runs = join(resultsDir, 'runs.json');
  if (existsSync(runs)) all.runs = JSON.parse(readFileSync(runs, 'utf8'));
  return all;
}

function writeReport(): void {
  const all = loadAll();
  writeFileSync(REPORT, renderMarkdown(all));
  writeFileSync(PLOT, renderSvg(all));
  console.log(`wrote ${REPORT} and ${PLOT}`);
}

async function main(): Promise<void> {
  const { options, only, write, reportOnly } = parseArgs(process.argv.slice(2));
  if (reportOnly) return writeReport();
  mkdirSync(resultsDir, { recursive: true });
  const ctx = new Context(options);
  const command = `npx tsx bench/run.ts ${process.argv.slice(2).join(' ')}`.trim();
  const started = performance.now();
  for (const name of Object.keys(SUITES) as SuiteName[]) {
    if (!only.includes(name)) continue;
    ctx.log(`=== ${name}`);
    const env = runEnv();
    const t = performance.now();
    const result = await SUITES[name](ctx);
    env.loadEnd = loadavg().map((x) => Math.round(x * 100) / 100);
    const meta: Meta = { command, date: new Date().toISOString(), quick: options.quick, seconds: (performance.now() - t) / 1000, env };
    const stored = { meta, result };
    if (write) writeFileSync(join(resultsDir, `${name}.json`), JSON.stringify(stored, null, 1));
    else console.log(JSON.stringify(stored.result, null, 1).slice(0, 4000));
    ctx.log(`=== ${name} done in ${meta.seconds.toFixed(0)} s`);
  }
  if (Object.keys(ctx.buildSeconds).length) ctx.log('built:', JSON.stringify(ctx.buildSeconds));
  const seconds = (performance.now() - started) / 1000;
  ctx.log(`all done in ${seconds.toFixed(0)} s`);
  if (write) {
    const runsPath = join(resultsDir, 'runs.json');
    const runs = existsSync(runsPath) ? JSON.parse(readFileSync(runsPath, 'utf8')) : [];
    runs.push({
      command,
      suites: only,
      quick: options.quick,
      rounds: options.rounds ?? null,
      seconds,
      date: new Date().toISOString(),
      built: ctx.buildSeconds,
    });
    writeFileSync(runsPath, JSON.stringify(runs, null, 1));
    writeReport();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
