/**
 * Issue 13 (cold start): where a cold isolate's first completion spends the isolate's time, from
 * V8's sampling profiler through workerd's inspector. A new Miniflare instance of an edge worker
 * build (`wrangler deploy --dry-run --outdir`, e.g. bench/.work/edge-worker), `GET /health`, then
 * the ttft suite's request (bench/suites/ttft.ts) under the profiler.
 *
 *   npx tsx scripts/cold-cpu-profile.ts <script dir> [--top N] [--save profile.cpuprofile]
 *
 * Prints the sampled time by kind (idle: the isolate waits for I/O, or for other isolates of the
 * process, such as Miniflare's R2; wasm; garbage collection; JS by source file) and the top
 * functions by self time. The profiler slows what it samples: read shares, not absolute times.
 */
import { writeFileSync } from 'node:fs';
import { streamCompletion, requestJson } from '../bench/lib/client.ts';
import { Context } from '../bench/lib/context.ts';
import { IsolateInspector } from '../bench/lib/inspector.ts';
import { scriptArgs } from '../bench/lib/script-args.ts';
import { launchWorker, seedR2 } from '../bench/lib/worker.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = scriptArgs({ top: '25', save: undefined });
const top = args.number('top');
const save = args.optional('save');
const [scriptDir] = args.positionals;
if (!scriptDir) throw new Error('usage: cold-cpu-profile.ts <script dir> [--top N] [--save file]');

const ctx = new Context({ quick: false, verbose: false });
const demo = await ctx.demoBundle();
const prompt = await ctx.prompt(64);
const seed = await seedR2(scriptDir, [{ dir: demo.dir, model: 'flex', version: demo.manifest.version }]);
const w = await launchWorker({ scriptDir, seed, vars: ctx.vars, inspect: true });
let profile: Profile;
let timing: Record<string, unknown> | null;
try {
  const inspector = await IsolateInspector.connect(w.inspectorPort!);
  await requestJson(w.url, '/health');
  await inspector.call('Profiler.enable');
  await inspector.call('Profiler.setSamplingInterval', { interval: 100 });
  await inspector.call('Profiler.start');
  const cold = await streamCompletion(w.url, { model: 'flex', prompt, max_tokens: 1, temperature: 0.8, seed: 11 });
  profile = (await inspector.call('Profiler.stop')).profile as Profile;
  timing = cold.timing;
  console.log(`headers ${cold.headersMs.toFixed(0)} ms, first token ${cold.deltas[0]?.toFixed(0)} ms (under the profiler)`);
  inspector.close();
} finally {
  await w.dispose();
}
if (save) writeFileSync(save, JSON.stringify(profile));
console.log(`server timing: ${JSON.stringify(timing)}`);

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfMs = new Map<number, number>();
profile.samples.forEach((id, i) => {
  selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
});
const total = [...selfMs.values()].reduce((a, b) => a + b, 0);

const fileOf = (url: string) => url.replace(/^.*\//, '') || '(no url)';
const kindOf = (node: ProfileNode): string => {
  const { functionName, url } = node.callFrame;
  if (functionName === '(idle)' || functionName === '(program)' || functionName === '(garbage collector)') return functionName;
  if (url.startsWith('wasm://') || /^(\$|wasm-function)/.test(functionName)) return 'wasm';
  return `js ${fileOf(url)}`;
};
const add = (map: Map<string, number>, key: string, ms: number) => map.set(key, (map.get(key) ?? 0) + ms);
const kinds = new Map<string, number>();
const functions = new Map<string, number>();
for (const [id, ms] of selfMs) {
  const node = byId.get(id)!;
  add(kinds, kindOf(node), ms);
  add(functions, `${node.callFrame.functionName || '(anonymous)'} ${fileOf(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`, ms);
}
const print = (title: string, map: Map<string, number>, n: number) => {
  console.log(`\n${title}`);
  for (const [key, ms] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n))
    console.log(`${ms.toFixed(1).padStart(8)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${key}`);
};
console.log(`sampled ${total.toFixed(0)} ms`);
print('by kind', kinds, 20);
print('top functions by self time', functions, top);
