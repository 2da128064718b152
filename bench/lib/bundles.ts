/**
 * The bundles the benchmarks serve, built with the project's own `buildBundle` into bench/.work
 * and reused while their inputs (checkpoint files, builder source) are unchanged.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildBundle, writeComputeObjects, writeStagedObject } from '../../cli/build-bundle.ts';
import { readCheckpoint } from '../../cli/checkpoint.ts';
import { writeRandomCheckpoint } from '../../cli/random-checkpoint.ts';
import { BUNDLE_FORMAT, MANIFEST_FILE, parseManifest, versionId, type BundleManifest } from '../../src/bundle/manifest.ts';
import { rowLayout } from '../../src/bundle/row-codec.ts';
import type { TableDtype } from '../../src/bundle/row-codec.ts';
import type { ComputeDtype } from '../../src/model/quantize.ts';
import { ROOT, WORK } from './paths.ts';

export interface BuiltBundle {
  dir: string;
  manifest: BundleManifest;
  /** Seconds the build took (0 when reused from an earlier run). */
  buildSeconds: number;
}

function hashFiles(paths: string[]): string {
  const hash = createHash('sha256');
  for (const path of paths.sort()) {
    hash.update(path);
    hash.update(readFileSync(path));
  }
  return hash.digest('hex').slice(0, 16);
}

/** The build-time optimization of the served graph: part of both keys below. */
const GRAPH_OPTIMIZATION_SOURCES = ['cli/optimize-graph.ts', 'cli/output-identities.ts'];

/** The source files a bundle's bytes depend on. */
function builderSources(): string[] {
  const dirs = ['src/model', 'src/onnx', 'src/bundle', 'src/tensor', 'src/tokenizer'];
  const files: string[] = ['cli/build-bundle.ts', 'cli/checkpoint.ts', 'cli/random-checkpoint.ts', ...GRAPH_OPTIMIZATION_SOURCES]
    .map((f) => join(ROOT, f))
    .filter((f) => existsSync(f));
  for (const dir of dirs) {
    const abs = join(ROOT, dir);
    if (!existsSync(abs)) continue;
    for (const f of readdirSync(abs)) if (f.endsWith('.ts') && !f.endsWith('.test.ts')) files.push(join(abs, f));
  }
  return files;
}

export function readManifest(dir: string): BundleManifest {
  return parseManifest(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
}

async function cached(name: string, inputs: string, build: (dir: string) => Promise<void>): Promise<BuiltBundle> {
  const root = join(WORK, 'bundles');
  mkdirSync(root, { recursive: true });
  const dir = join(root, name);
  const stamp = join(root, `${name}.inputs`);
  if (existsSync(join(dir, MANIFEST_FILE)) && existsSync(stamp) && readFileSync(stamp, 'utf8') === inputs) {
    return { dir, manifest: readManifest(dir), buildSeconds: 0 };
  }
  rmSync(dir, { recursive: true, force: true });
  const started = performance.now();
  await build(dir);
  writeFileSync(stamp, inputs);
  return { dir, manifest: readManifest(dir), buildSeconds: (performance.now() - started) / 1000 };
}

/** The trained demo model (models/<name>), f16 tables as `npm start` builds them, plus reference.onnx. */
export function demoBundle(name = 'flex', dtype: TableDtype = 'f16'): Promise<BuiltBundle> {
  const checkpoint = join(ROOT, 'models', name);
  if (!existsSync(join(checkpoint, 'config.json'))) throw new Error(`no trained checkpoint at models/${name}`);
  const files = readdirSync(checkpoint)
    .map((f) => join(checkpoint, f))
    .filter((f) => statSync(f).isFile());
  const inputs = JSON.stringify({ checkpoint: hashFiles(files), code: hashFiles(builderSources()), dtype });
  return cached(`${name}-${dtype}`, inputs, async (dir) => {
    await buildBundle(checkpoint, dir, { dtype, reference: true, progress: false });
  });
}

/**
 * The dense-equivalent of a bundle: the same model served with reference.onnx as its compute
 * graph (memory path computed in the graph from the embeddings) and no tables. Its manifest is a
 * valid bundle manifest (version recomputed from content), so the unmodified worker serves it.
 */
export async function denseEquivalent(source: BuiltBundle): Promise<BuiltBundle> {
  const ref = source.manifest.objects.reference;
  if (!ref) throw new Error(`${source.dir} has no reference.onnx`);
  const dir = `${source.dir}-dense`;
  const partial = {
    format: source.manifest.format,
    config: source.manifest.config,
    objects: { compute: ref, tokenizer: source.manifest.objects.tokenizer },
    tables: null,
    builtFrom: { tool: `flexmem bench (dense-equivalent of ${source.manifest.version})` },
  } as const;
  const manifest: BundleManifest = { ...partial, version: await versionId(partial) };
  if (existsSync(join(dir, MANIFEST_FILE)) && readManifest(dir).version === manifest.version) return { dir, manifest, buildSeconds: 0 };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(source.dir, ref.path), join(dir, ref.path));
  copyFileSync(join(source.dir, source.manifest.objects.tokenizer.path), join(dir, source.manifest.objects.tokenizer.path));
  writeFileSync(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir, manifest, buildSeconds: 0 };
}

/** Shape of the scale models: big tables (vocab x layers x d), small compute path. */
export interface ScaleShape {
  vocab: number;
  layers: number;
  hidden: number;
}

export const scaleOverrides = (s: ScaleShape) => ({
  vocab_size: s.vocab,
  hidden_size: s.hidden,
  num_hidden_layers: s.layers,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 64,
  ffn_c_intermediate_size: 64,
  memory_intermediate_size: 64,
  max_position_embeddings: 256,
});

/**
 * A random-weight flex model (writeRandomCheckpoint with overrides) with f32 tables: f32 because
 * the builder's f16 encoding runs at about 2 M values/s, too slow for several hundred MB.
 */
export function scaleBundle(shape: ScaleShape): Promise<BuiltBundle> {
  const name = `scale-v${shape.vocab}-l${shape.layers}-d${shape.hidden}`;
  const inputs = JSON.stringify({ shape, code: hashFiles(builderSources()) });
  return cached(name, inputs, async (dir) => {
    const checkpoint = join(WORK, 'checkpoints', name);
    rmSync(checkpoint, { recursive: true, force: true });
    writeRandomCheckpoint(checkpoint, { preset: 'tiny', arch: 'flex', seed: 1, dtype: 'f16', overrides: scaleOverrides(shape) });
    await buildBundle(checkpoint, dir, { dtype: 'f32', reference: false, progress: false });
    rmSync(checkpoint, { recursive: true, force: true });
  });
}

export const tableBytes = (m: BundleManifest) => (m.tables?.shards ?? []).reduce((n, s) => n + s.bytes, 0);

/**
 * Issue 13: a realistic shape for "the biggest model one Worker serves". The tables depend only on
 * (vocab, layers, hidden, memory FFN width, seed), because every tensor's random values depend
 * only on its name and the seed (src/model/init.ts); the compute path (heads, head size, FFN-C
 * width, compute dtype) can change around the same tables.
 */
export interface LargeShape {
  vocab: number;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** FFN-C width (the compute path's small FFN). */
  ffnC: number;
}

export type { ComputeDtype };

/** FFN-M width: the table row is `hidden` values per layer whatever it is, so it stays small (cheap table builds). */
const LARGE_MEMORY_FFN = 64;
const LARGE_TABLE_DTYPE: TableDtype = 'f32';

export const largeOverrides = (s: LargeShape) => ({
  vocab_size: s.vocab,
  hidden_size: s.hidden,
  num_hidden_layers: s.layers,
  num_attention_heads: s.heads,
  num_key_value_heads: s.kvHeads,
  head_dim: s.headDim,
  intermediate_size: s.ffnC,
  ffn_c_intermediate_size: s.ffnC,
  memory_intermediate_size: LARGE_MEMORY_FFN,
  max_position_embeddings: 512,
});

export const largeName = (s: LargeShape) => `v${s.vocab}-l${s.layers}-d${s.hidden}-h${s.heads}x${s.headDim}kv${s.kvHeads}-f${s.ffnC}`;
export const tableSetName = (s: LargeShape) => `largest-tables-v${s.vocab}-l${s.layers}-d${s.hidden}`;

/** `flexmem build` of a large random model: f32 rows, no lens (its build pass is vocabulary² per layer). */
async function buildWith(checkpoint: string, dir: string, computeDtype: ComputeDtype): Promise<void> {
  await buildBundle(checkpoint, dir, { dtype: LARGE_TABLE_DTYPE, reference: false, progress: false, lensK: 0, computeDtype });
}

/**
 * The tables of a (vocab, layers, hidden) family, built once by a full `flexmem build` of the
 * family's smallest compute path, f32 rows (the builder's f16/int8 row encoding is per value in
 * JS, several times slower than f32).
 */
export function largeTableSet(shape: LargeShape): Promise<BuiltBundle> {
  const base: LargeShape = { ...shape, heads: 1, kvHeads: 1, headDim: 64, ffnC: 64 };
  const name = tableSetName(shape);
  // Keyed on the row format, not on all of the builder's code (which changes often and would
  // rebuild gigabytes): a variant built later checks its tables byte-identical to these anyway.
  const format = ['src/bundle/row-codec.ts', 'src/bundle/row-checksums.ts', 'src/bundle/manifest.ts'].map((f) => join(ROOT, f));
  const inputs = JSON.stringify({ base, memoryFfn: LARGE_MEMORY_FFN, dtype: LARGE_TABLE_DTYPE, format: hashFiles(format) });
  return cached(name, inputs, async (dir) => {
    const checkpoint = join(WORK, 'checkpoints', name);
    rmSync(checkpoint, { recursive: true, force: true });
    writeRandomCheckpoint(checkpoint, { preset: 'tiny', arch: 'flex', seed: 1, dtype: 'f16', overrides: largeOverrides(base) });
    await buildWith(checkpoint, dir, 'f32');
    rmSync(checkpoint, { recursive: true, force: true });
  });
}

/**
 * One compute path over a family's tables. Its compute objects are made exactly as `flexmem build`
 * makes them (cli/build-bundle.ts writeComputeObjects), but the table pass is skipped: its tables are the family's,
 * referenced by version (`from`, as a patch shares its base's objects), so they are published
 * once and a variant costs seconds instead of a pass over gigabytes. They are the tables this
 * checkpoint would get: the memory path's tensors have the same names and shapes in every member
 * of a family, and random values depend only on (seed, name) (src/model/init.ts).
 */
export function largeVariant(shape: LargeShape, computeDtype: ComputeDtype, tables: BuiltBundle): Promise<BuiltBundle> {
  const name = `largest-${largeName(shape)}-${computeDtype}`;
  // Keyed on the graph's code, not on all of the builder's: a variant is rebuilt when the model's
  // graph (model.ts), its inputs and outputs (graph-io.ts), the quantized weights or the build-time
  // optimization change, not when the tokenizer's or the tables' code does.
  const graphCode = hashFiles(
    [
      'src/model/model.ts',
      'src/model/graph-io.ts',
      'src/model/quantize.ts',
      'src/model/compute-weights.ts',
      ...GRAPH_OPTIMIZATION_SOURCES,
    ].map((f) => join(ROOT, f)),
  );
  const inputs = JSON.stringify({ shape, computeDtype, tables: tables.manifest.version, graphCode });
  return cached(name, inputs, async (dir) => {
    const checkpointDir = join(WORK, 'checkpoints', name);
    rmSync(checkpointDir, { recursive: true, force: true });
    const staging = `${dir}.partial`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    try {
      writeRandomCheckpoint(checkpointDir, { preset: 'tiny', arch: 'flex', seed: 1, dtype: 'f16', overrides: largeOverrides(shape) });
      const checkpoint = readCheckpoint(checkpointDir);
      const base = tables.manifest;
      if (JSON.stringify(rowLayout(checkpoint.config, LARGE_TABLE_DTYPE)) !== JSON.stringify(base.tables!.layout))
        throw new Error(`${name}: its row layout differs from ${tables.dir}'s`);
      const computeObjects = await writeComputeObjects(staging, checkpoint, computeDtype, true);
      const tokenizer = writeStagedObject(staging, 'tokenizer.json', readFileSync(join(checkpointDir, 'tokenizer.json')));
      const from = base.version;
      const partial: Omit<BundleManifest, 'version'> = {
        format: BUNDLE_FORMAT,
        config: checkpoint.config,
        computeDtype,
        objects: { ...computeObjects, tokenizer },
        tables: {
          layout: base.tables!.layout,
          shards: base.tables!.shards.map((s) => ({ ...s, from })),
          checksums: { ...base.tables!.checksums, from },
        },
        builtFrom: { tool: `flexmem bench (compute path of ${name} over the tables of ${from})` },
      };
      const manifest: BundleManifest = { ...partial, version: await versionId(partial) };
      writeFileSync(join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      renameSync(staging, dir);
    } finally {
      rmSync(staging, { recursive: true, force: true });
      rmSync(checkpointDir, { recursive: true, force: true });
    }
  });
}
