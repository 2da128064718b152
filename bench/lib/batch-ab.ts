/**
 * Paired A/B of two step batchers on the same session, in Node (onnxruntime-web's wasm, one
 * thread): the committed one (`git show HEAD:src/engine/step-batcher.ts` and its kv-rows.ts,
 * copied into bench/.work/head-engine/ with their imports pointed at src/) against the working
 * tree's. 16 generations of 64 tokens after 64-token prompts (src/engine/generation.ts), started
 * STAGGER_MS apart so that streams join and leave the batch one by one, as HTTP arrivals make them
 * do in workerd; rounds alternate A and B. Reports wall time, tokens/s, gaps between a stream's
 * tokens, and the batchers' runs, rebuilds and compactions.
 *
 *   mkdir -p bench/.work/head-engine
 *   git show HEAD:src/engine/step-batcher.ts | sed "s#'../model/#'../../../src/model/#; s#'./decoder.ts'#'../../../src/engine/decoder.ts'#; s#'./logits-from.ts'#'../../../src/engine/logits-from.ts'#" > bench/.work/head-engine/step-batcher.ts
 *   git show HEAD:src/engine/kv-rows.ts > bench/.work/head-engine/kv-rows.ts
 *   npx tsx bench/lib/batch-ab.ts [--rounds 5] [--stagger 15]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Decoder } from '../../src/engine/decoder.ts';
import { generate } from '../../src/engine/generation.ts';
import { type BatcherParts, StepBatcher } from '../../src/engine/step-batcher.ts';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { demoBundle } from './bundles.ts';
import { Tensor, wasmServingCore } from './wasm-core.ts';
import { ROOT, WORK } from './paths.ts';
import { scriptArgs } from './script-args.ts';

const args = scriptArgs({ rounds: '5', stagger: '15' });
const ROUNDS = args.number('rounds');
const STAGGER_MS = args.number('stagger');
const STREAMS = 16;

type Batcher = Pick<StepBatcher, 'stats'>;
type BatcherClass = new (parts: BatcherParts) => StepBatcher;
const head = (await import(join(WORK, 'head-engine', 'step-batcher.ts'))) as { StepBatcher: BatcherClass };

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1)))];
};
const median = (xs: number[]) => quantile(xs, 0.5);

const demo = await demoBundle('flex', 'f16');
const tokenizer = new TextTokenizer(JSON.parse(readFileSync(join(demo.dir, demo.manifest.objects.tokenizer.path), 'utf8')));
const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8');
const prompts = Array.from({ length: 8 }, (_, i) => {
  const passage = text.slice(20_000 + i * 2_500, 20_000 + i * 2_500 + 640);
  return tokenizer.encode(passage.slice(passage.indexOf('. ') + 2)).slice(0, 64);
});
const core = wasmServingCore(demo, 1);
const bundle = await core.bundle(demo.manifest.version);
const rows = core.rows(bundle);
await core.hotSetReady(bundle);
const { session } = bundle;
const { config } = demo.manifest;

interface Burst {
  ms: number;
  tokens: number;
  gaps: number[];
  texts: string[];
  stats: Batcher['stats'];
}

async function burst(Batcher: BatcherClass): Promise<Burst> {
  const batcher = new Batcher({ session, Tensor, config, maxBatch: 16 });
  const gaps: number[] = [];
  const texts: string[] = [];
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, i) => {
      await new Promise((resolve) => setTimeout(resolve, i * STAGGER_MS));
      const decoder = new Decoder({ session, Tensor, config, rows, batcher });
      const request = {
        promptIds: prompts[i % 8],
        maxTokens: 64,
        sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 },
        stop: [],
        logprobs: null,
      };
      let last = Number.NaN;
      let out = '';
      for await (const d of generate({ decoder, decode: (ids) => tokenizer.decode(ids) }, request)) {
        out += d.text;
        if (!d.ids.length) continue;
        const now = performance.now();
        if (!Number.isNaN(last)) gaps.push(now - last);
        last = now;
        tokens += d.ids.length;
      }
      texts[i] = out;
    }),
  );
  return { ms: performance.now() - t0, tokens, gaps, texts, stats: { ...batcher.stats } };
}

const variants: [string, BatcherClass][] = [
  ['HEAD', head.StepBatcher],
  ['working tree', StepBatcher],
];
for (const [, B] of variants) await burst(B);
const results = new Map<string, Burst[]>(variants.map(([name]) => [name, []]));
for (let r = 0; r < ROUNDS; r++)
  for (const [name, B] of r % 2 ? [...variants].reverse() : variants) results.get(name)!.push(await burst(B));
const [a, b] = variants.map(([name]) => results.get(name)!);
console.log(`${STREAMS} streams started ${STAGGER_MS} ms apart, 64 tokens each, ${ROUNDS} rounds alternating`);
console.log('batcher | wall ms (median) | tok/s | gap p50 / p99 ms | runs | rebuilds | compactions (per burst, last round)');
for (const [name] of variants) {
  const list = results.get(name)!;
  const gaps = list.flatMap((x) => x.gaps);
  const last = list.at(-1)!.stats as Batcher['stats'] & { compactions?: number };
  console.log(
    `${name} | ${median(list.map((x) => x.ms)).toFixed(0)} | ${median(list.map((x) => (x.tokens / x.ms) * 1000)).toFixed(0)} | ${quantile(gaps, 0.5).toFixed(1)} / ${quantile(gaps, 0.99).toFixed(1)} | ${last.runs} | ${last.rebuilds} | ${last.compactions ?? '-'}`,
  );
}
const ratios = a.map((x, i) => b[i].ms / x.ms);
console.log(
  `wall time, working tree / HEAD, paired per round: median ${median(ratios).toFixed(3)} (${ratios.map((r) => r.toFixed(3)).join(', ')})`,
);
const same = a.every((x, i) => x.texts.every((t, k) => t === b[i].texts[k]));
console.log(`same text from both batchers in every round: ${same}`);
await core.close();
