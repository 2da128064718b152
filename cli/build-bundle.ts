/**
 * `flexmem build`: checkpoint folder -> bundle folder. Everything is written into a temporary
 * sibling folder, manifest.json last, and the folder is renamed into place only when complete,
 * so a crashed build never leaves a bundle that looks complete.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import cliProgress from 'cli-progress';
import * as ort from 'onnxruntime-node';
import { BUNDLE_FORMAT, MANIFEST_FILE, versionId, type BundleManifest, type ObjectRef, type TableShard } from '../src/bundle/manifest.ts';
import { encodeRowChecksums, ROW_CHECKSUM_ALGORITHM, ROW_CHECKSUM_BYTES, ROW_CHECKSUMS_PATH } from '../src/bundle/row-checksums.ts';
import { encodeRows, rowLayout, type TableDtype } from '../src/bundle/row-codec.ts';
import { InputError } from '../src/errors.ts';
import { GRAPH_IO } from '../src/model/graph-io.ts';
import { buildDecoderGraph, buildMemoryGraph } from '../src/model/model.ts';
import type { ComputeDtype } from '../src/model/quantize.ts';
import { readCheckpoint, readJsonFile, type Checkpoint } from './checkpoint.ts';
import { writeLens } from './build-lens.ts';
import { optimizeGraph, WEIGHTS_PATH } from './optimize-graph.ts';

export interface BuildOptions {
  dtype: TableDtype;
  reference: boolean;
  /** The dtype of compute.onnx's matrix weights (docs/quantization.md); default f32. reference.onnx stays f32: it is the oracle. */
  computeDtype?: ComputeDtype;
  /** Show a progress bar on stderr while the tables are computed. */
  progress: boolean;
  /** Upper bound of one table object, so huge tables upload and verify in parts. */
  shardBytes?: number;
  /** Entries per list of the inspector's lens (src/inspect/lens-format.ts); 0 builds no lens. */
  lensK?: number;
  /** Also write the compute graph optimized for onnxruntime's CPU kernels, its weights beside it (cli/optimize-graph.ts); default true. */
  optimizedGraph?: boolean;
}

const DEFAULT_SHARD_BYTES = 512 * 1024 * 1024;
/** Rows computed per session.run of the memory path: large enough to amortize, small enough for RAM. */
const BATCH_VALUES = 4 * 1024 * 1024;

export async function buildBundle(checkpointDir: string, bundleDir: string, options: BuildOptions): Promise<BundleManifest> {
  if (existsSync(bundleDir))
    throw new InputError(
      `output folder already exists: ${bundleDir} (flexmem never overwrites a bundle; remove it or choose another path)`,
    );
  const checkpoint = readCheckpoint(checkpointDir);
  const staging = join(dirname(bundleDir), `.${basename(bundleDir)}.partial-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    const writeObject = (path: string, bytes: Uint8Array): ObjectRef => writeStagedObject(staging, path, bytes);
    const computeDtype = options.computeDtype ?? 'f32';
    const computeObjects = await writeComputeObjects(staging, checkpoint, computeDtype, options.optimizedGraph !== false);
    const tokenizer = writeObject('tokenizer.json', readFileSync(join(checkpointDir, 'tokenizer.json')));
    const reference = options.reference
      ? writeObject('reference.onnx', buildDecoderGraph(checkpoint.config, checkpoint.weights, 'computed-in-graph'))
      : undefined;
    const tables = checkpoint.config.memory_layers.length ? await writeTables(checkpoint, staging, options) : null;
    const chatTemplate = readChatTemplate(checkpointDir);
    const lens = tables && options.lensK !== 0 ? await writeLens(checkpoint, staging, tables, options) : undefined;
    const partial = {
      format: BUNDLE_FORMAT,
      config: checkpoint.config,
      computeDtype,
      objects: { ...computeObjects, tokenizer, reference },
      tables,
      chatTemplate,
      lens,
      builtFrom: { tool: 'flexmem 0.1.0' },
    } as const;
    const manifest: BundleManifest = { ...partial, version: await versionId(partial) };
    writeFileSync(join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    if (existsSync(bundleDir)) throw new InputError(`output folder appeared during the build: ${bundleDir}`);
    renameSync(staging, bundleDir);
    return manifest;
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * compute.onnx as built, and what the worker and the CLI load instead: the graph optimized at build
 * time (no graph optimization on a cold isolate) with its weights beside it (cli/optimize-graph.ts).
 * Not for f16: optimizing folds each weight's Cast into an f32 copy, undoing what f16 is for, an
 * object half the size (docs/quantization.md).
 */
export async function writeComputeObjects(
  staging: string,
  checkpoint: Checkpoint,
  computeDtype: ComputeDtype,
  optimize: boolean,
): Promise<Pick<BundleManifest['objects'], 'compute' | 'computeOptimized' | 'computeWeights'>> {
  const graph = buildDecoderGraph(checkpoint.config, checkpoint.weights, 'rows-input', { computeDtype });
  const compute = writeStagedObject(staging, 'compute.onnx', graph);
  if (!optimize || computeDtype === 'f16') return { compute };
  const optimized = await optimizeGraph(graph);
  return {
    compute,
    computeOptimized: writeStagedObject(staging, 'compute.optimized.onnx', optimized.graph),
    computeWeights: writeStagedObject(staging, WEIGHTS_PATH, optimized.weights),
  };
}

export function writeStagedObject(staging: string, path: string, bytes: Uint8Array): ObjectRef {
  writeFileSync(join(staging, path), bytes);
  return { path, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** The chat template of tokenizer_config.json, when the checkpoint has one. */
function readChatTemplate(checkpointDir: string): string | undefined {
  const path = join(checkpointDir, 'tokenizer_config.json');
  if (!existsSync(path)) return undefined;
  const template = (readJsonFile(path, 'tokenizer_config.json') as { chat_template?: unknown }).chat_template;
  return typeof template === 'string' ? template : undefined;
}

/**
 * Runs the memory path over the whole vocabulary in batches and streams the rows to shards, and
 * the checksum of every row to one object beside them.
 */
async function writeTables(checkpoint: Checkpoint, staging: string, options: BuildOptions): Promise<NonNullable<BundleManifest['tables']>> {
  const { config } = checkpoint;
  const layout = rowLayout(config, options.dtype);
  const session = await ort.InferenceSession.create(buildMemoryGraph(config, checkpoint.weights));
  const V = config.vocab_size;
  const tokensPerShard = Math.max(1, Math.floor((options.shardBytes ?? DEFAULT_SHARD_BYTES) / layout.rowBytes));
  const batch = Math.max(1, Math.min(tokensPerShard, Math.floor(BATCH_VALUES / layout.rowValues)));
  mkdirSync(join(staging, 'tables'));
  const bar = new cliProgress.SingleBar(
    { format: 'tables {bar} {value}/{total} tokens | {eta_formatted} left', stream: process.stderr, noTTYOutput: false },
    cliProgress.Presets.shades_classic,
  );
  if (options.progress) bar.start(V, 0);
  const shards: TableShard[] = [];
  const checksums = new Uint8Array(V * ROW_CHECKSUM_BYTES);
  try {
    for (let firstToken = 0; firstToken < V; firstToken += tokensPerShard) {
      const tokenCount = Math.min(tokensPerShard, V - firstToken);
      const path = `tables/rows-${String(shards.length).padStart(5, '0')}.bin`;
      const fd = openSync(join(staging, path), 'w');
      const hash = createHash('sha256');
      try {
        for (let start = firstToken; start < firstToken + tokenCount; start += batch) {
          const count = Math.min(batch, firstToken + tokenCount - start);
          const ids = BigInt64Array.from({ length: count }, (_, i) => BigInt(start + i));
          const out = await session.run({ [GRAPH_IO.tokenIds]: new ort.Tensor('int64', ids, [count]) });
          const bytes = encodeRows(out[GRAPH_IO.memoryRows].data as Float32Array, count, layout);
          writeSync(fd, bytes);
          hash.update(bytes);
          checksums.set(encodeRowChecksums(bytes, layout.rowBytes), start * ROW_CHECKSUM_BYTES);
          if (options.progress) bar.update(start + count);
        }
      } finally {
        closeSync(fd);
      }
      shards.push({ path, bytes: tokenCount * layout.rowBytes, sha256: hash.digest('hex'), firstToken, tokenCount });
    }
  } finally {
    if (options.progress) bar.stop();
    await session.release();
  }
  const checksumsRef = { ...writeStagedObject(staging, ROW_CHECKSUMS_PATH, checksums), algorithm: ROW_CHECKSUM_ALGORITHM };
  return { layout, shards, checksums: checksumsRef };
}
