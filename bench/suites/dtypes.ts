/**
 * Issue 13: what `flexmem build --compute-dtype` costs and buys on the trained demo models
 * (docs/quantization.md). Per model and compute dtype: the bytes of the graph the worker loads; the
 * decode time per token in onnxruntime-web inside workerd (the bench worker's /steps: the loop of
 * bench/lib/steps.ts, rows from the isolate's hot set, (prefill + N steps − prefill alone) / N, as
 * bench/suites/steps.ts measures it); its ratio to f32, paired per round of this run (all dtypes
 * are measured interleaved in one worker); and perplexity on the first windows of
 * training/data/valid.txt, as `flexmem eval` computes it (src/engine/perplexity.ts over the bundle
 * as cli/local-bundle.ts opens it).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildBundle } from '../../cli/build-bundle.ts';
import { openLocalBundle } from '../../cli/local-bundle.ts';
import { servedGraphObjects } from '../../src/bundle/manifest.ts';
import { perplexity } from '../../src/engine/perplexity.ts';
import { COMPUTE_DTYPES, type ComputeDtype } from '../../src/model/quantize.ts';
import { readManifest, type BuiltBundle } from '../lib/bundles.ts';
import { requestJson } from '../lib/client.ts';
import type { Context } from '../lib/context.ts';
import { ROOT, WORK } from '../lib/paths.ts';
import { median, shuffled, summarize, type Summary } from '../lib/stats.ts';
import type { StepPlan } from '../lib/steps.ts';
import { launchWorker, seedR2 } from '../lib/worker.ts';

export const DTYPE_MODELS = ['flex', 'meki'] as const;

export interface DtypeCell {
  model: (typeof DTYPE_MODELS)[number];
  dtype: ComputeDtype;
  /** The object the worker loads: compute.ort, or compute.onnx when the bundle has no optimized graph (f16). */
  servedGraph: string;
  graphBytes: number;
  onnxBytes: number;
  perStepMs: number[];
  summary: Summary;
  /** Median over rounds of this cell's step time / the f32 cell's of the same model and round. */
  ratioToF32: number;
  perplexity: number;
  /** perplexity / perplexity(f32) − 1. */
  perplexityChange: number;
}

export interface DtypesResult {
  suite: 'dtypes';
  rounds: number;
  plan: { prefill: number; steps: number };
  pairs: number;
  /** Perplexity windows of valid.txt and the tokens they predict. */
  windows: number;
  predictedTokens: number;
  cells: DtypeCell[];
}

/** Each dtype of each demo model, built by `flexmem build` (f16 tables, as `npm start` builds them) into bench/.work/dtypes. */
async function buildAll(ctx: Context): Promise<Map<string, BuiltBundle>> {
  const built = new Map<string, BuiltBundle>();
  for (const model of DTYPE_MODELS) {
    for (const dtype of COMPUTE_DTYPES) {
      const dir = join(WORK, 'dtypes', `${model}-${dtype}`);
      rmSync(dir, { recursive: true, force: true });
      const t = performance.now();
      await buildBundle(join(ROOT, 'models', model), dir, {
        dtype: 'f16',
        computeDtype: dtype,
        reference: false,
        progress: false,
        lensK: 0,
      });
      const buildSeconds = (performance.now() - t) / 1000;
      ctx.buildSeconds[`dtypes ${model} ${dtype}`] = buildSeconds;
      built.set(`${model}-${dtype}`, { dir, manifest: readManifest(dir), buildSeconds });
    }
  }
  return built;
}

/**
 * The first `windows` context windows of valid.txt: the text is cut just after an <|endoftext|>
 * (split out before anything else is tokenized), so its ids are the first ids of the whole file.
 */
function validationIds(tokenize: (text: string) => number[], windows: number, context: number): number[] {
  const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8');
  const separator = '<|endoftext|>';
  for (let from = 5000 * windows; from < text.length; from *= 2) {
    const ids = tokenize(text.slice(0, text.indexOf(separator, from) + separator.length));
    if (ids.length > windows * context) return ids;
  }
  throw new Error(`valid.txt has fewer than ${windows} windows`);
}

export async function runDtypes(ctx: Context): Promise<DtypesResult> {
  const rounds = ctx.rounds(5, 2);
  const plan = { prefill: 32, steps: ctx.options.quick ? 32 : 64 };
  const pairs = ctx.options.quick ? 1 : 3;
  const windows = ctx.options.quick ? 8 : 16;
  ctx.log('dtypes: building 8 bundles ...');
  const built = await buildAll(ctx);

  // Perplexity first (Node, before the worker takes the CPU).
  const perplexities = new Map<string, number>();
  let predictedTokens = 0;
  for (const [key, b] of built) {
    const local = await openLocalBundle(b.dir);
    try {
      const ids = validationIds((t) => local.tokenizer.encode(t), windows, local.manifest.config.max_position_embeddings);
      const result = await perplexity(local.decoder, ids, { maxWindows: windows });
      perplexities.set(key, result.perplexity);
      predictedTokens = result.predictedTokens;
      ctx.log(`dtypes: ${key} perplexity ${result.perplexity.toFixed(4)} over ${result.predictedTokens} tokens`);
    } finally {
      await local.core.close();
    }
  }

  const ids = await ctx.validationIds(plan.prefill + plan.steps);
  const script = ctx.benchScript();
  const seed = await seedR2(
    script,
    [...built].map(([key, b]) => ({ dir: b.dir, model: key, version: b.manifest.version })),
  );
  const worker = await launchWorker({ scriptDir: script, seed });
  const perStep = new Map<string, number[]>([...built.keys()].map((k) => [k, []]));
  try {
    const timeOnce = async (model: string, p: StepPlan): Promise<number> => {
      const r = await requestJson(worker.url, '/steps', { model, rows: 'hot', ...p });
      if (r.status !== 200) throw new Error(`bench worker /steps: ${JSON.stringify(r.json)}`);
      return r.ms;
    };
    const full: StepPlan = { ids, ...plan };
    const none: StepPlan = { ids, prefill: plan.prefill, steps: 0 };
    for (const key of built.keys()) await timeOnce(key, { ids, prefill: plan.prefill, steps: 8 }); // load and warm
    for (let round = 0; round < rounds; round++) {
      for (const key of shuffled([...built.keys()], round + 303)) {
        const a: number[] = [];
        const b: number[] = [];
        for (let p = 0; p < pairs; p++) {
          a.push(await timeOnce(key, full));
          b.push(await timeOnce(key, none));
        }
        perStep.get(key)!.push((median(a) - median(b)) / plan.steps);
      }
      ctx.log(`dtypes: round ${round + 1}/${rounds} done`);
    }
  } finally {
    await worker.dispose().catch(() => {});
  }

  const cells: DtypeCell[] = [];
  for (const model of DTYPE_MODELS) {
    const f32Steps = perStep.get(`${model}-f32`)!;
    const f32Perplexity = perplexities.get(`${model}-f32`)!;
    for (const dtype of COMPUTE_DTYPES) {
      const key = `${model}-${dtype}`;
      const { manifest } = built.get(key)!;
      const served = servedGraphObjects(manifest);
      const steps = perStep.get(key)!;
      cells.push({
        model,
        dtype,
        servedGraph: served.map((ref) => ref.path).join(' + '),
        graphBytes: served.reduce((n, ref) => n + ref.bytes, 0),
        onnxBytes: manifest.objects.compute.bytes,
        perStepMs: steps,
        summary: summarize(steps),
        ratioToF32: median(steps.map((ms, round) => ms / f32Steps[round])),
        perplexity: perplexities.get(key)!,
        perplexityChange: perplexities.get(key)! / f32Perplexity - 1,
      });
    }
  }
  return { suite: 'dtypes', rounds, plan, pairs, windows, predictedTokens, cells };
}
