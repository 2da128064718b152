/**
 * The compute graph optimized at build time (cli/optimize-graph.ts: ORT format, compute.ort) is a
 * bundle object like any other: listed with its size and sha256, part of the version id, the same
 * bytes on every build, published with the version and shared by a patch. The worker and the CLI
 * load it (src/serving/model-registry.ts, `optimized`) with the load-time work switched off
 * (src/serving/session-options.ts), and it must compute what compute.onnx computes: within the
 * parity tolerance of tests/parity.test.ts widened to 1e-4 (fused kernels may sum in another
 * order), over a prefill and cached decode steps, in onnxruntime-web's WASM and in onnxruntime-node.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-common';
import * as ortNode from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { localServingCore, openLocalBundle, readLocalManifest, type LocalBundle } from '../cli/local-bundle.ts';
import { optimizeGraph } from '../cli/optimize-graph.ts';
import { publishPatch } from '../cli/patch.ts';
import { publishBundle } from '../cli/publish.ts';
import { writeRandomCheckpoint } from '../cli/random-checkpoint.ts';
import type { BundleManifest } from '../src/bundle/manifest.ts';
import { Decoder } from '../src/engine/decoder.ts';
import { createServingCore, type GraphChoice } from '../src/serving/serving-core.ts';
import { isOrtFormat, sessionOptionsFor } from '../src/serving/session-options.ts';
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

/** onnxruntime-node as the CLI opens graphs, recording the sha256 and format of each graph it is given. */
function recordingSessions(refuseOrtFormat = false) {
  const graphs: { sha256: string; ort: boolean }[] = [];
  const createSession = (graph: Uint8Array): Promise<InferenceSession> => {
    graphs.push({ sha256: sha256(graph), ort: isOrtFormat(graph) });
    if (refuseOrtFormat && isOrtFormat(graph)) return Promise.reject(new Error('this runtime cannot read the ORT format version'));
    return ortNode.InferenceSession.create(graph, sessionOptionsFor(graph));
  };
  return { graphs, createSession };
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

  it('lists compute.ort with its size and sha256; it is in ORT format and part of the version id', () => {
    const ref = manifest.objects.computeOptimized!;
    expect(ref.path).toBe('compute.ort');
    const bytes = readFileSync(join(path, ref.path));
    expect(bytes.byteLength).toBe(ref.bytes);
    expect(sha256(bytes)).toBe(ref.sha256);
    expect(isOrtFormat(bytes)).toBe(true);
    expect(isOrtFormat(readFileSync(join(path, manifest.objects.compute.path)))).toBe(false);
    // The same checkpoint without it: the same compute.onnx, no compute.ort, another version.
    expect(plain.objects.computeOptimized).toBeUndefined();
    expect(plain.objects.compute).toEqual(manifest.objects.compute);
    expect(plain.version).not.toBe(manifest.version);
  });

  it('optimizes to the same bytes every time (onnxruntime writes its kernel type map in hash order)', async () => {
    const graph = new Uint8Array(readFileSync(join(path, manifest.objects.compute.path)));
    const hashes = new Set<string>([manifest.objects.computeOptimized!.sha256]);
    for (let i = 0; i < 3; i++) hashes.add(sha256(await optimizeGraph(graph)));
    expect([...hashes]).toEqual([manifest.objects.computeOptimized!.sha256]);
  });

  it('is what `optimized` loads; `compute` and a bundle built without it load compute.onnx', async () => {
    const opened = async (bundleDir: string, m: BundleManifest, graph: GraphChoice) => {
      const sessions = recordingSessions();
      const core = localServingCore(bundleDir, m, { createSession: sessions.createSession, settings: { graph } });
      await core.bundle(m.version);
      await core.close();
      return sessions.graphs;
    };
    expect(await opened(path, manifest, 'optimized')).toEqual([{ sha256: manifest.objects.computeOptimized!.sha256, ort: true }]);
    expect(await opened(path, manifest, 'compute')).toEqual([{ sha256: manifest.objects.compute.sha256, ort: false }]);
    expect(await opened(plainPath, plain, 'optimized')).toEqual([{ sha256: plain.objects.compute.sha256, ort: false }]);
  });

  it('falls back to compute.onnx, with a warning, in a runtime that cannot load it', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const sessions = recordingSessions(true);
      const core = localServingCore(path, manifest, { createSession: sessions.createSession, settings: { graph: 'optimized' } });
      const bundle = await core.bundle(manifest.version);
      expect(sessions.graphs.map((g) => g.ort)).toEqual([true, false]);
      const decoder = core.decoder(bundle, core.rows(bundle));
      const logits = await decoder.step(decoder.start(), [1, 2, 3]);
      expect(logits.length % manifest.config.vocab_size === 0 && logits.length > 0 && logits.every(Number.isFinite)).toBe(true);
      await core.close();
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/compute\.ort does not load here .*; loading compute\.onnx instead/));
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
    console.log(`onnxruntime-node, compute.ort vs compute.onnx: max |Δ logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(TOLERANCE);
    // Control: the logits are not all alike, so the comparison could fail.
    expect(optimized.reduce((m, v) => Math.max(m, Math.abs(v - optimized[0])), 0)).toBeGreaterThan(TOLERANCE);
  });

  it('is uploaded by a publish and shared by a patch, which serves the base’s compute.ort', async () => {
    const store = new MemoryStore();
    const published = await publishBundle(store, path, { model: 'flex' });
    const ref = manifest.objects.computeOptimized!;
    expect(sha256(store.objects.get(bundleKey(published.version, ref.path))!)).toBe(ref.sha256);

    const edits = join(dir.path, 'edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ op: 'scale', token: 7, factor: -1 }] }));
    const patched = await publishPatch(store, published.version, edits, 'flex');
    const patch = JSON.parse(new TextDecoder().decode(store.objects.get(bundleKey(patched.version, 'manifest.json'))!)) as BundleManifest;
    expect(patch.objects.computeOptimized).toEqual({ ...ref, from: published.version });
    expect(store.objects.has(bundleKey(patched.version, ref.path))).toBe(false);

    const sessions = recordingSessions();
    const core = createServingCore({
      origin: store,
      createSession: sessions.createSession,
      Tensor: ortNode.Tensor,
      settings: { graph: 'optimized' },
    });
    expect((await core.current('flex')).version).toBe(patched.version);
    expect(sessions.graphs).toEqual([{ sha256: ref.sha256, ort: true }]);
    await core.close();
  });
});

describe('a graph optimized at build time, in onnxruntime-web (WASM)', () => {
  let local: LocalBundle;
  let ortWeb: typeof import('onnxruntime-web');
  let built: Uint8Array;
  let optimized: Uint8Array;
  let otherOptimized: Uint8Array;

  beforeAll(async () => {
    ortWeb = (await import('onnxruntime-web/wasm')) as unknown as typeof import('onnxruntime-web');
    ortWeb.env.wasm.numThreads = 1;
    ortWeb.env.wasm.proxy = false;
    const path = await tinyBundle('flex-web', 1);
    local = await openLocalBundle(path);
    built = new Uint8Array(readFileSync(join(path, local.manifest.objects.compute.path)));
    optimized = new Uint8Array(readFileSync(join(path, local.manifest.objects.computeOptimized!.path)));
    const other = await tinyBundle('flex-seed2', 2);
    otherOptimized = new Uint8Array(readFileSync(join(other, readLocalManifest(other).objects.computeOptimized!.path)));
  });
  afterAll(() => local?.core.close());

  /** Logits of a 16-token prefill then 8 cached steps in onnxruntime-web, rows from the bundle. */
  async function logits(graph: Uint8Array, options: InferenceSession.SessionOptions): Promise<Float32Array> {
    const session = await ortWeb.InferenceSession.create(graph, options);
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

  it('gets the load-time work switched off; the graph as built keeps the defaults', () => {
    expect(isOrtFormat(optimized)).toBe(true);
    expect(isOrtFormat(built)).toBe(false);
    expect(sessionOptionsFor(optimized).graphOptimizationLevel).toBe('disabled');
    expect(sessionOptionsFor(built)).toEqual({});
  });

  it(`computes the logits of the graph as built within ${TOLERANCE}, and another checkpoint's does not`, async () => {
    const reference = await logits(built, {});
    const diff = maxAbsDiff(await logits(optimized, sessionOptionsFor(optimized)), reference);
    console.log(`onnxruntime-web, compute.ort vs compute.onnx: max |Δ logit| = ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(TOLERANCE);
    expect(maxAbsDiff(await logits(otherOptimized, sessionOptionsFor(otherOptimized)), reference)).toBeGreaterThan(TOLERANCE);
  });
});
