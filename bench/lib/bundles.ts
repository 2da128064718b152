/**
 * The bundles the benchmarks serve, built with the project's own `buildBundle` into bench/.work
 * and reused while their inputs (checkpoint files, builder source) are unchanged.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildBundle } from '../../cli/build-bundle.ts';
import { writeRandomCheckpoint } from '../../cli/random-checkpoint.ts';
import { MANIFEST_FILE, parseManifest, versionId, type BundleManifest } from '../../src/bundle/manifest.ts';
import type { TableDtype } from '../../src/bundle/row-codec.ts';
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

/** The source files a bundle's bytes depend on. */
function builderSources(): string[] {
  const dirs = ['src/model', 'src/onnx', 'src/bundle', 'src/tensor', 'src/tokenizer'];
  const files: string[] = ['cli/build-bundle.ts', 'cli/checkpoint.ts', 'cli/random-checkpoint.ts']
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
