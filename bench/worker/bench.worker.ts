/**
 * A benchmark-only worker (never deployed): the project's own Decoder, MemoryHierarchy and
 * onnxruntime-web setup, driven in loops so that a whole request can be timed from the client.
 * workerd's clocks only advance across I/O, so nothing here times itself: the client sends the
 * same loop with N and with 0 steps and takes the difference.
 *
 *   GET  /clock?spin=N   how far Date.now()/performance.now() move during N busy iterations
 *   POST /steps          {model, rows: 'hot'|'zero'|'none', ids, prefill, steps}
 *   POST /lookups        {model, ids, n}: n single-row lookups from the hot set (L0)
 *   POST /decode         {model, n}: n f16 row decodes with src decodeRow
 *   POST /overhead       {model, what, n, vocab?}: per-token work outside session.run, n times:
 *                        'sample' (sampleToken, temperature 0.8, over `vocab` logits), 'greedy'
 *                        (temperature 0), 'stream' (TextStreamer.push over n validation ids),
 *                        'yield' (await setTimeout(0), as the generation loop does once per token)
 *   POST /phase          {model, phase}: one phase of loading a bundle on a fresh isolate, so a
 *                        cold start can be split from the client: 'read' (pointer, manifest,
 *                        graph, tokenizer; the graph the edge worker loads: compute.ort when the
 *                        bundle has it), 'hash' (sha256 of graph + tokenizer), 'tokenizer'
 *                        (parse tokenizer.json), 'runtime' (onnxruntime's start: one session over
 *                        the warm-up graph, workers/runtime-warm-up.ts, which the edge worker runs
 *                        at module scope), 'kernels' (the tiny model graph the edge worker runs
 *                        after it at module scope, workers/runtime-warm-up.ts warmUpKernels),
 *                        'session' (the first InferenceSession of the graph, with
 *                        sessionOptionsFor), 'session2' (a second one), 'prefill' (a 32-token
 *                        prefill on the first session: its kernels' first run), 'prefill2' (the
 *                        same again), 'steps' (prefill 32 + the rest of `ids` as decode steps on the
 *                        first session).
 *                        These are the serving core's loading steps taken apart on purpose, to
 *                        time each; every other route serves through the core itself.
 */
import type { InferenceSession } from 'onnxruntime-common';
import { parseManifest, servedGraphObjects, type BundleManifest } from '../../src/bundle/manifest.ts';
import type { RowSource } from '../../src/bundle/row-source.ts';
import { decodeRow } from '../../src/bundle/row-codec.ts';
import { Decoder } from '../../src/engine/decoder.ts';
import { sampleToken } from '../../src/engine/sampler.ts';
import { referenceSample } from '../../src/engine/sampler-reference.ts';
import { TextStreamer } from '../../src/engine/text-streamer.ts';
import { createServingCore, type LoadedBundle, type ServingCore } from '../../src/serving/serving-core.ts';
import { bundleKey, pointerKey } from '../../src/storage/object-store.ts';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { Random } from '../../src/util/random.ts';
import { sha256Hex } from '../../src/util/sha256.ts';
import { servedGraph, sessionOptionsFor, type GraphObjects } from '../../src/serving/session-options.ts';
import { onnxRuntime } from '../../workers/onnx-runtime.ts';
import { warmUpKernels, warmUpRuntime } from '../../workers/runtime-warm-up.ts';
import { R2Store } from '../../workers/r2-store.ts';
import { runLookups, runSteps, zeroRows } from '../lib/steps.ts';

interface Env {
  BUNDLES: R2Bucket;
}

interface Loaded {
  bundle: LoadedBundle;
  /** Every row of the table in the isolate's hot set (L0). */
  hot: RowSource | null;
}

/** The serving core, as the edge worker builds it, with an L0 large enough to hold whole tables. */
let core: ServingCore | null = null;
function servingCore(env: Env): ServingCore {
  const ort = onnxRuntime();
  core ??= createServingCore({
    origin: new R2Store(env.BUNDLES, ''),
    createSession: (graph) => ort.InferenceSession.create(graph.graph, sessionOptionsFor(graph)),
    Tensor: ort.Tensor,
    settings: {
      graph: 'optimized',
      hierarchy: { isolateBytes: 2 ** 31, hotSetBytes: 2 ** 31, pageBytes: 32 << 10, originConcurrency: 6, coalesceGapBytes: 0 },
    },
  });
  return core;
}

const loaded = new Map<string, Promise<Loaded>>();
const phases = new Map<string, { manifest: BundleManifest; graph: GraphObjects; tokenizer: Uint8Array; sessions: InferenceSession[] }>();

async function getBytes(env: Env, key: string): Promise<Uint8Array> {
  const object = await env.BUNDLES.get(key);
  if (!object) throw new Error(`missing object ${key}`);
  return new Uint8Array(await object.arrayBuffer());
}

async function load(env: Env, name: string): Promise<Loaded> {
  const serving = servingCore(env);
  const bundle = await serving.current(name);
  const hot = serving.rows(bundle);
  await serving.hotSetReady(bundle);
  return { bundle, hot };
}

function model(env: Env, name: string): Promise<Loaded> {
  let entry = loaded.get(name);
  if (!entry) {
    entry = load(env, name);
    loaded.set(name, entry);
    entry.catch(() => loaded.delete(name));
  }
  return entry;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    try {
      if (url.pathname === '/clock') {
        const spin = Number(url.searchParams.get('spin') ?? 1e7);
        const d0 = Date.now();
        const p0 = performance.now();
        let x = 0;
        for (let i = 0; i < spin; i++) x = (x + Math.sqrt(i)) % 1e9;
        return Response.json({ dateDelta: Date.now() - d0, perfDelta: performance.now() - p0, x });
      }
      if (url.pathname === '/steps') {
        const body = (await request.json()) as {
          model: string;
          rows: 'hot' | 'zero' | 'none';
          ids: number[];
          prefill: number;
          steps: number;
        };
        const { bundle, hot } = await model(env, body.model);
        const rows = body.rows === 'none' ? null : body.rows === 'zero' ? zeroRows(bundle.manifest.tables!.layout.rowValues) : hot;
        const checksum = await runSteps(servingCore(env).decoder(bundle, rows), body);
        return Response.json({ checksum });
      }
      if (url.pathname === '/lookups') {
        const body = (await request.json()) as { model: string; ids: number[]; n: number };
        const m = await model(env, body.model);
        return Response.json({ checksum: await runLookups(m.hot!, body.ids, body.n) });
      }
      if (url.pathname === '/decode') {
        const body = (await request.json()) as { model: string; n: number };
        const m = await model(env, body.model);
        const layout = m.bundle.manifest.tables!.layout;
        const row = new Uint8Array(layout.rowBytes);
        for (let i = 0; i < row.length; i += 2) row[i + 1] = 0x3c; // 1.0 in f16
        const out = new Float32Array(layout.rowValues);
        for (let i = 0; i < body.n; i++) decodeRow(row, layout, out, 0);
        return Response.json({ checksum: out[0] });
      }
      if (url.pathname === '/overhead') {
        const body = (await request.json()) as {
          model: string;
          what: 'sample' | 'sample-reference' | 'greedy' | 'stream' | 'yield';
          n: number;
          vocab?: number;
          sampling?: { topK?: number; topP?: number; minP?: number };
          ids?: number[];
        };
        let checksum = 0;
        if (body.what === 'sample' || body.what === 'sample-reference' || body.what === 'greedy') {
          const rng = new Random(1);
          const logits = Float32Array.from({ length: body.vocab ?? 4096 }, () => rng.normal() * 3);
          const options = { temperature: body.what === 'greedy' ? 0 : 0.8, topK: 0, topP: 1, ...body.sampling };
          for (let i = 0; i < body.n; i++)
            checksum += body.what === 'sample-reference' ? referenceSample(logits, options, rng.next()) : sampleToken(logits, options, rng);
        } else if (body.what === 'stream') {
          const { tokenizer } = (await model(env, body.model)).bundle;
          const streamer = new TextStreamer((ids) => tokenizer.decode(ids));
          const ids = body.ids ?? [];
          for (let i = 0; i < body.n; i++) checksum += streamer.push(ids[i % ids.length]).length;
        } else {
          for (let i = 0; i < body.n; i++) await new Promise((resolve) => setTimeout(resolve, 0));
        }
        return Response.json({ checksum });
      }
      if (url.pathname === '/session-variant') {
        // A graph loaded with the named options (after the isolate's first session): the create time
        // and a decode loop (32-token prefill + steps, constant rows), timed in the worker. `graph`:
        // 'served' (what `read` read), 'compute' (compute.onnx), 'ort' (an optimized graph posted as the body).
        const state = phases.get(url.searchParams.get('model') ?? 'flex');
        if (!state) throw new Error('phase read first');
        const which = url.searchParams.get('graph');
        const graph: GraphObjects =
          which === 'served'
            ? state.graph
            : which === 'ort'
              ? { graph: new Uint8Array(await request.arrayBuffer()), optimized: true }
              : { graph: await getBytes(env, bundleKey(state.manifest.version, state.manifest.objects.compute.path)), optimized: false };
        const variant = url.searchParams.get('options') ?? 'default';
        const options: InferenceSession.SessionOptions =
          variant === 'served'
            ? sessionOptionsFor(graph)
            : variant === 'no-prepacking'
              ? { ...sessionOptionsFor(graph), extra: { session: { disable_prepacking: '1' } } }
              : variant === 'disabled'
                ? { graphOptimizationLevel: 'disabled' }
                : {};
        const t0 = performance.now();
        const session = await onnxRuntime().InferenceSession.create(graph.graph, options);
        const createMs = performance.now() - t0;
        const { config } = state.manifest;
        const ids = Array.from({ length: 96 }, (_, i) => (i * 37) % config.vocab_size);
        const rows = state.manifest.tables ? zeroRows(state.manifest.tables.layout.rowValues) : null;
        const decoder = new Decoder({ session, Tensor: onnxRuntime().Tensor, config, rows });
        await runSteps(decoder, { ids, prefill: 32, steps: 8 });
        const t1 = performance.now();
        await runSteps(decoder, { ids, prefill: 32, steps: 0 });
        const t2 = performance.now();
        await runSteps(decoder, { ids, prefill: 32, steps: 64 });
        const stepMs = (performance.now() - t2 - (t2 - t1)) / 64;
        const last = await decoder.step(decoder.start(), ids.slice(0, 40));
        await session.release();
        return Response.json({ createMs, stepMs, logits: Array.from(last.subarray(last.length - config.vocab_size)) });
      }
      if (url.pathname === '/phase') {
        const body = (await request.json()) as {
          model: string;
          phase: 'read' | 'hash' | 'tokenizer' | 'runtime' | 'kernels' | 'session' | 'session2' | 'prefill' | 'prefill2' | 'steps';
          ids?: number[];
          /** 'compute': read compute.onnx even when the bundle has an optimized graph (the graph served before it). */
          graph?: 'compute';
        };
        if (body.phase === 'read') {
          const pointer = JSON.parse(new TextDecoder().decode(await getBytes(env, pointerKey(body.model)))) as { version: string };
          const manifest = parseManifest(
            JSON.parse(new TextDecoder().decode(await getBytes(env, bundleKey(pointer.version, 'manifest.json')))),
          );
          const read = (path: string) => getBytes(env, bundleKey(pointer.version, path));
          const [graphBytes, tokenizer] = await Promise.all([
            Promise.all(
              (body.graph === 'compute' ? [manifest.objects.compute] : servedGraphObjects(manifest)).map((ref) => read(ref.path)),
            ),
            read(manifest.objects.tokenizer.path),
          ]);
          const graph: GraphObjects =
            body.graph === 'compute' ? { graph: graphBytes[0], optimized: false } : servedGraph(manifest, graphBytes);
          phases.set(body.model, { manifest, graph, tokenizer, sessions: [] });
          return Response.json({ bytes: [...graphBytes, tokenizer].reduce((n, b) => n + b.byteLength, 0) });
        }
        const state = phases.get(body.model);
        if (!state) throw new Error('phase read first');
        if (body.phase === 'tokenizer')
          return Response.json({ vocab: new TextTokenizer(JSON.parse(new TextDecoder().decode(state.tokenizer))).vocabSize });
        if (body.phase === 'steps') {
          const ids = body.ids ?? [];
          const rows = state.manifest.tables ? zeroRows(state.manifest.tables.layout.rowValues) : null;
          const decoder = new Decoder({ session: state.sessions[0], Tensor: onnxRuntime().Tensor, config: state.manifest.config, rows });
          return Response.json({ checksum: await runSteps(decoder, { ids, prefill: 32, steps: ids.length - 32 }) });
        }
        if (body.phase === 'hash') {
          const { graph, weights } = state.graph;
          const objects = [graph, ...(weights ? [weights.data] : []), state.tokenizer];
          return Response.json({ hashes: await Promise.all(objects.map((bytes) => sha256Hex(bytes))) });
        }
        if (body.phase === 'runtime') {
          await warmUpRuntime(onnxRuntime());
          return Response.json({ runtime: 'started' });
        }
        if (body.phase === 'kernels') {
          await warmUpKernels(onnxRuntime());
          return Response.json({ kernels: 'run' });
        }
        if (body.phase === 'prefill' || body.phase === 'prefill2') {
          const rows = state.manifest.tables ? zeroRows(state.manifest.tables.layout.rowValues) : null;
          const decoder = new Decoder({ session: state.sessions[0], Tensor: onnxRuntime().Tensor, config: state.manifest.config, rows });
          const ids = Array.from({ length: 32 }, (_, i) => (i * 37 + 5) % state.manifest.config.vocab_size);
          return Response.json({ logits: (await decoder.step(decoder.start(), ids)).length });
        }
        state.sessions.push(await onnxRuntime().InferenceSession.create(state.graph.graph, sessionOptionsFor(state.graph)));
        return Response.json({ sessions: state.sessions.length });
      }
      return new Response('not found', { status: 404 });
    } catch (error) {
      return Response.json({ error: String((error as Error)?.stack ?? error) }, { status: 500 });
    }
  },
};
