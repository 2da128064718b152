/**
 * Where onnxruntime-web's wasm memory goes for one bundle's served graph: its size after
 * `InferenceSession.create`, after a 32-token prefill and after 4 decode steps, measured in Node
 * with the wasm build workerd runs (onnxruntime-web/wasm, one thread). Each measurement runs in a
 * fresh child process, because a wasm memory never shrinks and onnxruntime-web keeps one instance
 * per process.
 *
 * Two ways to hand onnxruntime the same graph optimized at build time: 'served', as the worker
 * loads it, its weights beside it as ONNX external data (cli/optimize-graph.ts), and 'inline', the
 * weights inside one ORT-format file, as bundles built before that served it (compute.ort):
 * onnxruntime-web copies that whole file into its wasm heap, deserializes the weights out of it and
 * frees the copy, but a wasm memory never shrinks.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TensorConstructor } from 'onnxruntime-common';
import * as ortNode from 'onnxruntime-node';
import { readServedGraph } from '../../cli/local-bundle.ts';
import { Decoder } from '../../src/engine/decoder.ts';
import { sessionOptionsFor, type GraphObjects } from '../../src/serving/session-options.ts';
import { largeOverrides, readManifest, type LargeShape } from './bundles.ts';
import { optimizeGraph, WEIGHTS_PATH } from '../../cli/optimize-graph.ts';
import { parseConfig, rowWidth, type ModelConfig } from '../../src/model/config.ts';
import { initialValues } from '../../src/model/init.ts';
import { buildDecoderGraph } from '../../src/model/model.ts';
import { planServing } from '../../src/model/plan.ts';
import { presetConfig } from '../../src/model/presets.ts';
import { COMPUTE_DTYPES, type ComputeDtype } from '../../src/model/quantize.ts';
import { checkpointTensors } from '../../src/model/tensors.ts';
import { ROOT, WORK } from './paths.ts';
import { runSteps, zeroRows } from './steps.ts';

export const ORT_OPTION_SETS = ['served', 'inline'] as const;
export type OrtOptionSet = (typeof ORT_OPTION_SETS)[number];

export interface OrtMemory {
  options: OrtOptionSet;
  graphBytes: number;
  /** Bytes of the wasm memory after create, after the prefill, after the decode steps. */
  afterCreate: number;
  afterPrefill: number;
  afterSteps: number;
  createMs: number;
  /**
   * Served only: the wasm memory as one sequence grows, fed in runs of CONTEXT_RUN tokens (as
   * MAX_RUN_TOKENS runs a prompt), at each of CONTEXTS tokens. A run holds the sequence's KV cache
   * twice in the wasm heap (its past copied in, its present copied out), and the heap keeps its peak.
   */
  byContext?: { tokens: number; wasm: number }[];
}

const CONTEXTS = [64, 128, 256, 512];
const CONTEXT_RUN = 8;

/** Measures one bundle folder (or a JSON {shape, computeDtype}) under one option set, in a child process. */
export function ortMemory(bundleDir: string, options: OrtOptionSet): Promise<OrtMemory> {
  return new Promise((resolve, reject) => {
    execFile(
      'npx',
      ['tsx', fileURLToPath(import.meta.url), bundleDir, options],
      { cwd: ROOT, maxBuffer: 1 << 20, timeout: 600_000 },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`${error.message} ${stderr.slice(-300)}`));
        const line = stdout.trim().split('\n').pop() ?? '';
        try {
          resolve(JSON.parse(line) as OrtMemory);
        } catch {
          reject(new Error(`ort-memory printed ${line.slice(0, 200)}`));
        }
      },
    );
  });
}

/** The graph in ORT format with its weights inside, optimized as cli/optimize-graph.ts optimizes (the served graph before external weights). */
export async function inlineOrtGraph(onnx: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const dir = mkdtempSync(join(tmpdir(), 'flexmem-ort-'));
  try {
    writeFileSync(join(dir, 'graph.onnx'), onnx);
    const session = await ortNode.InferenceSession.create(join(dir, 'graph.onnx'), {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: join(dir, 'graph.ort'),
      extra: { session: { save_model_format: 'ORT' } },
    });
    await session.release();
    return new Uint8Array(readFileSync(join(dir, 'graph.ort')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A graph as `options` hands it over, and what running it needs: from a bundle folder, or built here from a shape (no tables). */
async function graphOf(source: string, options: OrtOptionSet): Promise<{ graph: GraphObjects; config: ModelConfig; rowValues: number }> {
  let onnx: Uint8Array;
  let config: ModelConfig;
  let computeDtype: ComputeDtype;
  if (!source.startsWith('{')) {
    const manifest = readManifest(source);
    ({ config } = manifest);
    computeDtype = manifest.computeDtype ?? 'f32';
    onnx = new Uint8Array(readFileSync(join(source, manifest.objects.compute.path)));
    if (options === 'served') return { graph: readServedGraph(source, manifest), config, rowValues: rowWidth(config) };
  } else {
    // As `flexmem build` makes compute.onnx (cli/build-bundle.ts), from random weights.
    const parsed = JSON.parse(source) as { shape: LargeShape; computeDtype: ComputeDtype };
    computeDtype = parsed.computeDtype;
    const raw = { ...presetConfig('tiny', 'flex'), ...largeOverrides(parsed.shape) };
    config = parseConfig({ ...raw, bos_token_id: parsed.shape.vocab - 1, eos_token_id: parsed.shape.vocab - 1 });
    const specs = new Map(checkpointTensors(config).map((spec) => [spec.name, spec]));
    onnx = buildDecoderGraph(config, { tensor: (name) => initialValues(specs.get(name)!, 1) }, 'rows-input', { computeDtype });
  }
  const rowValues = rowWidth(config);
  // f16 is served as built (cli/build-bundle.ts writeComputeObjects).
  if (computeDtype === 'f16') return { graph: { graph: onnx, optimized: false }, config, rowValues };
  if (options === 'inline') return { graph: { graph: await inlineOrtGraph(onnx), optimized: true }, config, rowValues };
  const { graph, weights } = await optimizeGraph(onnx);
  return { graph: { graph, optimized: true, weights: { path: WEIGHTS_PATH, data: weights } }, config, rowValues };
}

async function measure(source: string, options: OrtOptionSet): Promise<OrtMemory> {
  // onnxruntime-web does not expose its module: the memory is caught as it is instantiated.
  const memories: WebAssembly.Memory[] = [];
  const instantiate = WebAssembly.instantiate.bind(WebAssembly);
  const hooked = async (source: BufferSource | WebAssembly.Module, imports?: WebAssembly.Imports) => {
    const result = (await instantiate(source as BufferSource, imports)) as WebAssembly.WebAssemblyInstantiatedSource;
    for (const v of Object.values(result.instance.exports)) if (v instanceof WebAssembly.Memory) memories.push(v);
    for (const ns of Object.values(imports ?? {})) for (const v of Object.values(ns)) if (v instanceof WebAssembly.Memory) memories.push(v);
    return result;
  };
  WebAssembly.instantiate = hooked as typeof WebAssembly.instantiate;
  const ort = await import('onnxruntime-web/wasm');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  const { graph, config, rowValues } = await graphOf(source, options);
  const wasm = () => memories.reduce((n, m) => n + m.buffer.byteLength, 0);
  const t = performance.now();
  const created = await ort.InferenceSession.create(graph.graph, sessionOptionsFor(graph));
  const createMs = performance.now() - t;
  const afterCreate = wasm();
  const decoder = new Decoder({
    session: created,
    Tensor: ort.Tensor as unknown as TensorConstructor,
    config,
    rows: zeroRows(rowValues),
  });
  const ids = Array.from({ length: 40 }, (_, i) => (i * 7919) % config.vocab_size);
  await runSteps(decoder, { ids, prefill: 32, steps: 0 });
  const afterPrefill = wasm();
  await runSteps(decoder, { ids, prefill: 1, steps: 4 });
  const afterSteps = wasm();
  const graphBytes = graph.graph.byteLength + (graph.weights?.data.byteLength ?? 0);
  const byContext = options === 'served' ? await contextSweep(decoder, wasm) : undefined;
  return { options, graphBytes, afterCreate, afterPrefill, afterSteps, createMs, byContext };
}

async function contextSweep(decoder: Decoder, wasm: () => number): Promise<{ tokens: number; wasm: number }[]> {
  const state = decoder.start();
  const V = decoder.config.vocab_size;
  const points: { tokens: number; wasm: number }[] = [];
  for (let length = 0; length < CONTEXTS.at(-1)!; length += CONTEXT_RUN) {
    const ids = Array.from({ length: CONTEXT_RUN }, (_, i) => ((length + i) * 7919) % V);
    await decoder.step(state, ids, 'last');
    if (CONTEXTS.includes(length + CONTEXT_RUN)) points.push({ tokens: length + CONTEXT_RUN, wasm: wasm() });
  }
  decoder.finish(state);
  return points;
}

export interface OrtMemoryEntry {
  name: string;
  computeDtype: string;
  results: OrtMemory[];
  error?: string;
}

/** Every option set for one bundle (one child process each); an error is recorded, not thrown. */
export async function ortMemoryEntry(name: string, computeDtype: string, bundleDir: string): Promise<OrtMemoryEntry> {
  const results: OrtMemory[] = [];
  try {
    for (const options of ORT_OPTION_SETS) results.push(await ortMemory(bundleDir, options));
    return { name, computeDtype, results };
  } catch (error) {
    return { name, computeDtype, results, error: String((error as Error).message ?? error).slice(0, 300) };
  }
}

const RESULT_PATH = join(WORK, 'results', 'largest.json');
const ORT_PATH = join(WORK, 'results', 'largest-ort.json');

/**
 * `npx tsx bench/lib/ort-memory.ts --ort`: measures every model of the stored `largest` result whose
 * bundle is still in bench/.work, into results/largest-ort.json (beside the suite's result, which a
 * running suite rewrites); `--merge` then copies it and largest-fit.json into the stored result, and
 * `npx tsx bench/run.ts --report-only` renders them. The suite does it itself with LARGEST_ORT_MEMORY=1.
 */
async function ortForResults(): Promise<void> {
  const stored = JSON.parse(readFileSync(RESULT_PATH, 'utf8')) as {
    result: { instances: { name: string; computeDtype: string; error?: string }[] };
  };
  const entries: OrtMemoryEntry[] = existsSync(ORT_PATH) ? (JSON.parse(readFileSync(ORT_PATH, 'utf8')) as OrtMemoryEntry[]) : [];
  for (const i of stored.result.instances) {
    const dir = join(WORK, 'bundles', `largest-${i.name}-${i.computeDtype}`);
    if (i.error || !existsSync(join(dir, 'manifest.json'))) continue;
    if (entries.some((e) => e.name === i.name && e.computeDtype === i.computeDtype && !e.error)) continue;
    const entry = await ortMemoryEntry(i.name, i.computeDtype, dir);
    console.log(JSON.stringify(entry));
    const k = entries.findIndex((e) => e.name === i.name && e.computeDtype === i.computeDtype);
    if (k === -1) entries.push(entry);
    else entries[k] = entry;
    writeFileSync(ORT_PATH, JSON.stringify(entries, null, 1));
  }
}

/** Copies largest-ort.json and largest-fit.json into the stored `largest` result. */
export function mergeIntoResult(result: { ortMemory?: OrtMemoryEntry[]; fit?: FitEntry[] }): void {
  if (existsSync(ORT_PATH)) result.ortMemory = JSON.parse(readFileSync(ORT_PATH, 'utf8')) as OrtMemoryEntry[];
  if (existsSync(FIT_PATH)) result.fit = JSON.parse(readFileSync(FIT_PATH, 'utf8')) as FitEntry[];
}

function merge(): void {
  const stored = JSON.parse(readFileSync(RESULT_PATH, 'utf8')) as { result: { ortMemory?: OrtMemoryEntry[]; fit?: FitEntry[] } };
  mergeIntoResult(stored.result);
  writeFileSync(RESULT_PATH, JSON.stringify(stored, null, 1));
}

export interface FitEntry {
  shape: LargeShape;
  computeDtype: ComputeDtype;
  computeParams: number;
  memory?: OrtMemory;
  error?: string;
}

/** Smaller shapes than the suite serves, graph only (no tables, not in workerd): where the 128 MB line falls. */
export const FIT_SHAPES: LargeShape[] = [256, 384, 512].map((hidden) => ({
  vocab: 32768,
  layers: 12,
  hidden,
  heads: 1,
  kvHeads: 1,
  headDim: 64,
  ffnC: 64,
}));

/**
 * `npx tsx bench/lib/ort-memory.ts --fit`: the served options' wasm memory for FIT_SHAPES in every
 * compute dtype, stored in the `largest` result as `fit`.
 */
async function fitShapes(): Promise<void> {
  const entries: FitEntry[] = [];
  for (const shape of FIT_SHAPES)
    for (const computeDtype of COMPUTE_DTYPES) {
      const raw = { ...presetConfig('tiny', 'flex'), ...largeOverrides(shape) };
      const config = parseConfig({ ...raw, bos_token_id: shape.vocab - 1, eos_token_id: shape.vocab - 1 });
      const entry: FitEntry = { shape, computeDtype, computeParams: planServing(config).activeParams };
      try {
        entry.memory = await ortMemory(JSON.stringify({ shape, computeDtype }), 'served');
      } catch (error) {
        entry.error = String((error as Error).message ?? error).slice(0, 300);
      }
      console.log(JSON.stringify(entry));
      entries.push(entry);
    }
  // Beside the suite's result (which a running suite rewrites); --merge copies it in.
  writeFileSync(FIT_PATH, JSON.stringify(entries, null, 1));
}

const FIT_PATH = join(WORK, 'results', 'largest-fit.json');

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [dir, options] = process.argv.slice(2);
  const commands: Record<string, () => Promise<OrtMemory | null>> = {
    '--ort': () => ortForResults().then(() => null),
    '--fit': () => fitShapes().then(() => null),
    '--merge': async () => {
      merge();
      return null;
    },
  };
  (commands[dir] ?? (() => measure(dir, options as OrtOptionSet)))().then(
    (r) => {
      if (r) console.log(JSON.stringify(r));
      process.exit(0);
    },
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
