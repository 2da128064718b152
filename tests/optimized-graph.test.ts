/**
 * The compute graph optimized at build time (cli/optimize-graph.ts: compute.optimized.onnx, its
 * weights beside it in compute.weights) is a pair of bundle objects like any other: listed with
 * their sizes and sha256, part of the version id, the same bytes on every build, published with the
 * version and shared by a patch. The worker and the CLI load them (src/serving/model-registry.ts,
 * `optimized`) with the load-time work switched off (src/serving/session-options.ts), and they must
 * compute what compute.onnx computes: within the parity tolerance of tests/parity.test.ts widened to
 * 1e-4 (fused kernels may sum in another order), over a prefill and cached decode steps, in
 * onnxruntime-web's WASM and in onnxruntime-node. Bundles built before the weights were apart (one
 * ORT-format compute.ort) still load.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-common';
import onnxProto from 'onnx-proto';
import * as ortNode from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { localServingCore, openLocalBundle, readLocalManifest, readServedGraph, type LocalBundle } from '../cli/local-bundle.ts';
import { createNodeSession } from '../cli/node-session.ts';
import { optimizeGraph, WEIGHTS_PATH } from '../cli/optimize-graph.ts';
import { publishPatch } from '../cli/patch.ts';
import { publishBundle } from '../cli/publish.ts';
import { writeRandomCheckpoint } from '../cli/random-checkpoint.ts';
import { MANIFEST_FILE, parseManifest, type BundleManifest, type ObjectRef } from '../src/bundle/manifest.ts';
import { Decoder } from '../src/engine/decoder.ts';
import { createServingCore, type GraphChoice } from '../src/serving/serving-core.ts';
import { sessionOptionsFor, type GraphObjects } from '../src/serving/session-options.ts';
import { bundleKey } from '../src/storage/object-store.ts';
import { MemoryStore } from './helpers/memory-store.ts';
import { GraphBuilder } from '../src/onnx/graph-builder.ts';
import { WARM_UP_GRAPH, warmUpRuntime } from '../workers/runtime-warm-up.ts';
import { tempDir } from './helpers/fixtures.ts';

const TOLERANCE = 1e-4;
const dir = tempDir();
afterAll(() => dir.remove());

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function tinyBundle(name: string, seed: number, optimizedGraph = true): Promise<string> {
  const checkpoint = join(dir.path, `${name}-checkpoint`);
  writeRandomCheckpoint(checkpoint, { preset: 'tiny', arch: 'flex', seed, dtype: 'f32' });
  await buildBundle(checkpoint, join(dir.path, name), { dtype: 'f32', reference: false, progress: false, optimizedGraph });
  return join(dir.path, name);
}

/** The first bytes of an ORT-format graph: a flatbuffer whose file identifier is `ORTM`. */
const isOrtFormat = (graph: Uint8Array) => new TextDecoder().decode(graph.subarray(4, 8)) === 'ORTM';

interface OpenedGraph {
  sha256: string;
  optimized: boolean;
  weights?: string;
}

/** onnxruntime-node as the CLI opens graphs, recording what it is given; optionally refusing optimized graphs. */
function recordingSessions(refuseOptimized = false) {
  const graphs: OpenedGraph[] = [];
  const createSession = (graph: GraphObjects): Promise<InferenceSession> => {
    graphs.push({
      sha256: sha256(graph.graph),
      optimized: graph.optimized,
      ...(graph.weights ? { weights: sha256(graph.weights.data) } : {}),
    });
    if (refuseOptimized && graph.optimized) return Promise.reject(new Error('this runtime has no kernel for a fused operator'));
    return createNodeSession(graph);
  };
  return { graphs, createSession };
}

/** What `optimized` should open for a bundle built with the optimized graph. */
const optimizedPair = (m: BundleManifest): OpenedGraph => ({
  sha256: m.objects.computeOptimized!.sha256,
  optimized: true,
  weights: m.objects.computeWeights!.sha256,
});

/** The initializers of an ONNX graph whose bytes are outside it, by the file it names. */
function externalInitializers(graph: Uint8Array): Map<string, number> {
  const files = new Map<string, number>();
  for (const tensor of onnxProto.onnx.ModelProto.decode(graph).graph?.initializer ?? []) {
    if (tensor.dataLocation !== onnxProto.onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const location = tensor.externalData?.find((entry) => entry.key === 'location')?.value ?? '';
    files.set(location, (files.get(location) ?? 0) + 1);
  }
  return files;
}

describe('a bundle built with the optimized graph', () => {
  let path: string;
  let plainPath: string;
  let manifest: BundleManifest;
  let plain: BundleManifest;

  beforeAll(async () => {
    path = await tinyBundle('flex', 1);
    plainPath = await tinyBundle('flex-plain', 1, false);
    manifest = readLocalManifest(path);
    plain = readLocalManifest(plainPath);
  });

  it('lists the optimized graph and its weights with their sizes and sha256; both are part of the version id', () => {
    const graphRef = manifest.objects.computeOptimized!;
    const weightsRef = manifest.objects.computeWeights!;
    expect([graphRef.path, weightsRef.path]).toEqual(['compute.optimized.onnx', WEIGHTS_PATH]);
    for (const ref of [graphRef, weightsRef]) {
      const bytes = readFileSync(join(path, ref.path));
      expect(bytes.byteLength).toBe(ref.bytes);
      expect(sha256(bytes)).toBe(ref.sha256);
    }
    // The graph keeps its structure and names its weights by the object's path; they are nearly all of compute.onnx.
    const graph = new Uint8Array(readFileSync(join(path, graphRef.path)));
    expect(isOrtFormat(graph)).toBe(false);
    expect([...externalInitializers(graph).keys()]).toEqual([WEIGHTS_PATH]);
    expect(graphRef.bytes).toBeLessThan(manifest.objects.compute.bytes / 10);
    expect(weightsRef.bytes).toBeGreaterThan(manifest.objects.compute.bytes * 0.85);
    // The same checkpoint without them: the same compute.onnx, no optimized objects, another version.
    expect(plain.objects.computeOptimized).toBeUndefined();
    expect(plain.objects.computeWeights).toBeUndefined();
    expect(plain.objects.compute).toEqual(manifest.objects.compute);
    expect(plain.version).not.toBe(manifest.version);
  });

  it('writes its outputs from the nodes that make them: no Identity copies one, where compute.onnx has one per output', () => {
    const outputCopies = (bytes: Uint8Array) => {
      const graph = onnxProto.onnx.ModelProto.decode(bytes).graph!;
      const outputs = new Set(graph.output!.map((o) => o.name));
      return graph.node!.filter((n) => n.opType === 'Identity' && outputs.has(n.output![0])).length;
    };
    const optimized = new Uint8Array(readFileSync(join(path, manifest.objects.computeOptimized!.path)));
    const built = new Uint8Array(readFileSync(join(path, manifest.objects.compute.path)));
    expect(outputCopies(optimized)).toBe(0);
    // The present KV of every layer, at least: the copies the optimized graph no longer makes.
    expect(outputCopies(built)).toBeGreaterThanOrEqual(2 * manifest.config.num_hidden_layers);
  });

  it('has each RMSNorm as one fused node: two per layer and the final norm, no Pow, Sqrt or ReduceMean left', () => {
    // src/model/model.ts writes rmsNorm in the pattern onnxruntime fuses; a change that breaks it
    // leaves six nodes per norm, and the cold create grows with the node count (docs/architecture.md, "Cold start").
    const opTypes = onnxProto.onnx.ModelProto.decode(readFileSync(join(path, manifest.objects.computeOptimized!.path))).graph!.node!.map(
      (n) => n.opType,
    );
    const count = (op: string) => opTypes.filter((t) => t === op).length;
    expect(count('SimplifiedLayerNormalization')).toBe(2 * manifest.config.num_hidden_layers + 1);
    expect([count('Pow'), count('Sqrt'), count('ReduceMean')]).toEqual([0, 0, 0]);
  });

  it('optimizes to the same bytes every time', async () => {
    const graph = new Uint8Array(readFileSync(join(path, manifest.objects.compute.path)));
    const hashes = new Set<string>([`${manifest.objects.computeOptimized!.sha256} ${manifest.objects.computeWeights!.sha256}`]);
    for (let i = 0; i < 3; i++) {
      const optimized = await optimizeGraph(graph);
      hashes.add(`${sha256(optimized.graph)} ${sha256(optimized.weights)}`);
    }
    expect(hashes.size).toBe(1);
  });

  it('refuses a manifest whose weights belong to no optimized graph', () => {
    const raw = JSON.parse(readFileSync(join(path, MANIFEST_FILE), 'utf8')) as { objects: Record<string, unknown> };
    delete raw.objects.computeOptimized;
    expect(() => parseManifest(raw)).toThrow(/objects\.computeWeights: the weights of no computeOptimized graph/);
  });

  it('is what `optimized` loads; `compute` and a bundle built without it load compute.onnx', async () => {
    const opened = async (bundleDir: string, m: BundleManifest, graph: GraphChoice) => {
      const sessions = recordingSessions();
      const core = localServingCore(bundleDir, m, { createSession: sessions.createSession, settings: { graph } });
      await core.bundle(m.version);
      await core.close();
      return sessions.graphs;
    };
    expect(await opened(path, manifest, 'optimized')).toEqual([optimizedPair(manifest)]);
    expect(await opened(path, manifest, 'compute')).toEqual([{ sha256: manifest.objects.compute.sha256, optimized: false }]);
    expect(await opened(plainPath, plain, 'optimized')).toEqual([{ sha256: plain.objects.compute.sha256, optimized: false }]);
  });

  it('falls back to compute.onnx, with a warning, in a runtime that cannot load it', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const sessions = recordingSessions(true);
      const core = localServingCore(path, manifest, { createSession: sessions.createSession, settings: { graph: 'optimized' } });
      const bundle = await core.bundle(manifest.version);
      expect(sessions.graphs.map((g) => g.optimized)).toEqual([true, false]);
      const decoder = core.decoder(bundle, core.rows(bundle));
      const logits = await decoder.step(decoder.start(), [1, 2, 3]);
      expect(logits.length % manifest.config.vocab_size === 0 && logits.length > 0 && logits.every(Number.isFinite)).toBe(true);
      await core.close();
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(/compute\.optimized\.onnx does not load here .*; loading compute\.onnx instead/),
      );
    } finally {
      warn.mockRestore();
    }
  });

  it('serves what compute.onnx serves (onnxruntime-node, through the serving core)', async () => {
    const logitsOf = async (local: LocalBundle) => {
      try {
        const V = manifest.config.vocab_size;
        const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % V);
        const state = local.decoder.start();
        const out: number[] = [...(await local.decoder.step(state, ids.slice(0, 16)))];
        for (const id of ids.slice(16)) out.push(...(await local.decoder.step(state, [id])));
        return Float32Array.from(out);
      } finally {
        await local.core.close();
      }
    };
    const optimized = await logitsOf(await openLocalBundle(path));
    const asBuilt = await logitsOf(await openLocalBundle(path, 'compute'));
    const diff = optimized.reduce((m, v, i) => Math.max(m, Math.abs(v - asBuilt[i])), 0);
    console.log(`onnxruntime-node, optimized graph vs compute.onnx: max |Δ logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(TOLERANCE);
    // Control: the logits are not all alike, so the comparison could fail.
    expect(optimized.reduce((m, v) => Math.max(m, Math.abs(v - optimized[0])), 0)).toBeGreaterThan(TOLERANCE);
  });

  it('is uploaded by a publish and shared by a patch, which serves the base’s optimized graph', async () => {
    const store = new MemoryStore();
    const published = await publishBundle(store, path, { model: 'flex' });
    const refs = [manifest.objects.computeOptimized!, manifest.objects.computeWeights!];
    for (const ref of refs) expect(sha256(store.objects.get(bundleKey(published.version, ref.path))!)).toBe(ref.sha256);

    const edits = join(dir.path, 'edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ op: 'scale', token: 7, factor: -1 }] }));
    const patched = await publishPatch(store, published.version, edits, 'flex');
    const patch = JSON.parse(new TextDecoder().decode(store.objects.get(bundleKey(patched.version, 'manifest.json'))!)) as BundleManifest;
    expect([patch.objects.computeOptimized, patch.objects.computeWeights]).toEqual(
      refs.map((ref) => ({ ...ref, from: published.version })),
    );
    for (const ref of refs) expect(store.objects.has(bundleKey(patched.version, ref.path))).toBe(false);

    const sessions = recordingSessions();
    const core = createServingCore({
      origin: store,
      createSession: sessions.createSession,
      Tensor: ortNode.Tensor,
      settings: { graph: 'optimized' },
    });
    expect((await core.current('flex')).version).toBe(patched.version);
    expect(sessions.graphs).toEqual([optimizedPair(manifest)]);
    await core.close();
  });

  it('still serves a bundle built before the weights were apart: one ORT-format graph, loaded without weights', async () => {
    // Such a bundle's computeOptimized is compute.ort, the graph and its weights in one ORT-format file.
    const older = mkdtempSync(join(dir.path, 'ort-format-'));
    cpSync(path, older, { recursive: true });
    const session = await ortNode.InferenceSession.create(join(path, manifest.objects.compute.path), {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: join(older, 'compute.ort'),
      extra: { session: { save_model_format: 'ORT' } },
    });
    await session.release();
    const ort = new Uint8Array(readFileSync(join(older, 'compute.ort')));
    expect(isOrtFormat(ort)).toBe(true);
    const ortRef: ObjectRef = { path: 'compute.ort', bytes: ort.byteLength, sha256: sha256(ort) };
    const { compute, tokenizer } = manifest.objects;
    const olderManifest: BundleManifest = { ...manifest, objects: { compute, computeOptimized: ortRef, tokenizer } };
    writeFileSync(join(older, MANIFEST_FILE), JSON.stringify(olderManifest));
    const sessions = recordingSessions();
    const core = localServingCore(older, olderManifest, { createSession: sessions.createSession, settings: { graph: 'optimized' } });
    const bundle = await core.bundle(olderManifest.version);
    expect(sessions.graphs).toEqual([{ sha256: ortRef.sha256, optimized: true }]);
    const decoder = core.decoder(bundle, core.rows(bundle));
    expect((await decoder.step(decoder.start(), [1, 2, 3])).every(Number.isFinite)).toBe(true);
    await core.close();
  });
});

describe('a graph optimized at build time, in onnxruntime-web (WASM)', () => {
  let local: LocalBundle;
  let ortWeb: typeof import('onnxruntime-web');
  let built: GraphObjects;
  let optimized: GraphObjects;
  let otherOptimized: GraphObjects;

  beforeAll(async () => {
    ortWeb = (await import('onnxruntime-web/wasm')) as unknown as typeof import('onnxruntime-web');
    ortWeb.env.wasm.numThreads = 1;
    ortWeb.env.wasm.proxy = false;
    const path = await tinyBundle('flex-web', 1);
    local = await openLocalBundle(path);
    built = { graph: new Uint8Array(readFileSync(join(path, local.manifest.objects.compute.path))), optimized: false };
    optimized = readServedGraph(path, local.manifest);
    const other = await tinyBundle('flex-seed2', 2);
    otherOptimized = readServedGraph(other, readLocalManifest(other));
  });
  afterAll(() => local?.core.close());

  /** Logits of a 16-token prefill then 8 cached steps in onnxruntime-web, rows from the bundle. */
  async function logits(graph: GraphObjects): Promise<Float32Array> {
    const session = await ortWeb.InferenceSession.create(graph.graph, sessionOptionsFor(graph));
    try {
      const decoder = new Decoder({ session, Tensor: ortWeb.Tensor, config: local.manifest.config, rows: local.rows });
      const V = local.manifest.config.vocab_size;
      const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % V);
      const state = decoder.start();
      const out: number[] = [...(await decoder.step(state, ids.slice(0, 16)))];
      for (const id of ids.slice(16)) out.push(...(await decoder.step(state, [id])));
      return Float32Array.from(out);
    } finally {
      await session.release();
    }
  }

  const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

  it('starts with the edge worker’s warm-up graph: y = x + 1, as GraphBuilder writes it', async () => {
    const g = new GraphBuilder('flexmem_warm_up');
    g.output(g.node('Add', [g.input('x', 'float', [1]), g.constFloat([1], [1])]), 'y', 'float', [1]);
    expect([...WARM_UP_GRAPH]).toEqual([...g.toModel()]);
    await expect(warmUpRuntime(ortWeb)).resolves.toBeUndefined();
  });

  it('gets the load-time work switched off and its weights as external data; the graph as built keeps the defaults', () => {
    expect(optimized.weights?.path).toBe(WEIGHTS_PATH);
    expect(sessionOptionsFor(optimized)).toEqual({ graphOptimizationLevel: 'disabled', externalData: [optimized.weights] });
    expect(sessionOptionsFor(built)).toEqual({});
  });

  it(`computes the logits of the graph as built within ${TOLERANCE}, and another checkpoint's does not`, async () => {
    const reference = await logits(built);
    const diff = maxAbsDiff(await logits(optimized), reference);
    console.log(`onnxruntime-web, optimized graph vs compute.onnx: max |Δ logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(TOLERANCE);
    expect(maxAbsDiff(await logits(otherOptimized), reference)).toBeGreaterThan(TOLERANCE);
  });

  it('does not load without its weights', async () => {
    await expect(ortWeb.InferenceSession.create(optimized.graph, { graphOptimizationLevel: 'disabled' })).rejects.toThrow();
  });
});
