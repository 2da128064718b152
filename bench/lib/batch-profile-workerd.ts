/**
 * The check of bench/lib/batch-profile.ts against workerd: session.run chained at B = 1 and
 * B = 16 on the demo graph inside workerd (bench/batch-probe/batch-probe.worker.ts), timed from the
 * client as (request with N steps − request with 0 steps) / N, B = 1 and B = 16 alternating; then
 * the whole decode loop in workerd (16 concurrent generations through a StepBatcher, and one
 * without), per decode round = (64 tokens − 1 token) / 63, against session.run alone.
 *
 *   npx tsx bench/lib/batch-profile-workerd.ts [--reps 7] [--s0 64] [--steps 64]
 */
import { join } from 'node:path';
import { readServedGraph } from '../../cli/local-bundle.ts';
import { demoBundle } from './bundles.ts';
import { ROOT, WORK } from './paths.ts';
import { scriptArgs } from './script-args.ts';
import { median } from './stats.ts';
import { buildWorkerScript, launchWorker } from './worker.ts';

const args = scriptArgs({ reps: '7', s0: '64', steps: '64' });
const REPS = args.number('reps');
const S0 = args.number('s0');
const STEPS = args.number('steps');

const demo = await demoBundle('flex', 'f16');
const { config } = demo.manifest;
const graph = readServedGraph(demo.dir, demo.manifest);
const script = buildWorkerScript(join(ROOT, 'bench', 'batch-probe', 'wrangler.toml'), join(WORK, 'batch-probe'));
const w = await launchWorker({ scriptDir: script });
try {
  const q = `layers=${config.num_hidden_layers}&kv=${config.num_key_value_heads}&hd=${config.head_dim}&rowValues=${demo.manifest.tables!.layout.rowValues}`;
  const served = `graphBytes=${graph.graph.byteLength}&optimized=${graph.optimized ? 1 : 0}${graph.weights ? `&weightsPath=${graph.weights.path}` : ''}`;
  const body = Buffer.concat([graph.graph, graph.weights?.data ?? new Uint8Array(0)]);
  const loaded = await fetch(`${w.url}/load?${q}&${served}`, { method: 'POST', body });
  if (!loaded.ok) throw new Error(`load: ${await loaded.text()}`);
  const chain = async (batch: number, s0: number, steps: number) => {
    const t0 = performance.now();
    const r = await fetch(`${w.url}/chain`, { method: 'POST', body: JSON.stringify({ batch, s0, steps }) });
    if (!r.ok) throw new Error(`chain: ${await r.text()}`);
    await r.json();
    return performance.now() - t0;
  };
  for (const b of [1, 16]) {
    await chain(b, S0, STEPS);
    await chain(b, 1, 32);
  }
  const t: Record<string, number[]> = {};
  const add = (k: string, v: number) => {
    t[k] = [...(t[k] ?? []), v];
  };
  for (let r = 0; r < REPS; r++) {
    for (const b of [1, 16]) {
      add(`${b}/full`, await chain(b, S0, STEPS));
      add(`${b}/none`, await chain(b, S0, 0));
      add(`${b}/short`, await chain(b, 1, 32));
      add(`${b}/shortnone`, await chain(b, 1, 0));
    }
  }
  const per = (b: number) => (median(t[`${b}/full`]) - median(t[`${b}/none`])) / STEPS;
  const perShort = (b: number) => (median(t[`${b}/short`]) - median(t[`${b}/shortnone`])) / 32;
  console.log(`workerd, session.run chained, ${REPS} reps, client-timed`);
  console.log(
    `  past S ${S0}..${S0 + STEPS - 1}: B=1 ${per(1).toFixed(3)} ms, B=16 ${per(16).toFixed(3)} ms per step (${(per(16) / per(1)).toFixed(2)}x)`,
  );
  console.log(
    `  past S 1..32: B=1 ${perShort(1).toFixed(3)} ms, B=16 ${perShort(16).toFixed(3)} ms per step (${(perShort(16) / perShort(1)).toFixed(2)}x)`,
  );
  const generate = async (streams: number, maxTokens: number) => {
    const t0 = performance.now();
    const r = await fetch(`${w.url}/generate`, { method: 'POST', body: JSON.stringify({ streams, prompt: S0, maxTokens }) });
    if (!r.ok) throw new Error(`generate: ${await r.text()}`);
    await r.json();
    return performance.now() - t0;
  };
  for (const c of [1, 16]) await generate(c, 8);
  const g: Record<string, number[]> = {};
  const note = (k: string, v: number) => {
    g[k] = [...(g[k] ?? []), v];
  };
  for (let r = 0; r < REPS; r++)
    for (const c of [1, 16]) {
      note(`${c}/full`, await generate(c, STEPS + 1));
      note(`${c}/first`, await generate(c, 1));
    }
  const round = (c: number) => (median(g[`${c}/full`]) - median(g[`${c}/first`])) / STEPS;
  console.log(
    `  whole loop (generation + batcher + sampling, prompt ${S0}, ${STEPS} decode rounds): 1 stream ${round(1).toFixed(3)} ms per round, 16 streams ${round(16).toFixed(3)} ms per round; prompts + first tokens: 1 stream ${median(g['1/first']).toFixed(1)} ms, 16 streams ${median(g['16/first']).toFixed(1)} ms (client-timed, with HTTP)`,
  );
  console.log(
    `  outside session.run per decode round: 1 stream ${(round(1) - per(1)).toFixed(3)} ms, 16 streams ${(round(16) - per(16)).toFixed(3)} ms`,
  );
} finally {
  await w.dispose();
}
