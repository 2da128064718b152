/**
 * The memory inspector against independent computations: the build-time lens (promoted,
 * suppressed, neighbours) against a direct TypeScript matmul over the checkpoint, the prompt
 * view's ablations against unbatched forward passes, batch > 1 against batch 1, and a patch's
 * diff and recomputed lens against what the edit must do. Tiny random flex and meki bundles.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { readCheckpoint } from '../cli/checkpoint.ts';
import { localServingCore, readLocalManifest } from '../cli/local-bundle.ts';
import { createNodeSession } from '../cli/node-session.ts';
import { publishPatch } from '../cli/patch.ts';
import { publishBundle } from '../cli/publish.ts';
import { InputError } from '../src/errors.ts';
import { diffVersions, inspectPrompt, inspectToken } from '../src/inspect/index.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { unpaddedMask } from '../src/engine/attention-mask.ts';
import { logitsFromFeed } from '../src/engine/logits-from.ts';
import { GRAPH_IO } from '../src/model/graph-io.ts';
import type { WeightSource } from '../src/model/model.ts';
import { createServingCore, type LoadedBundle, type ServingCore } from '../src/serving/serving-core.ts';
import { MemoryStore } from './helpers/memory-store.ts';
import { flexmem } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';

const dir = tempDir();

interface Opened {
  path: string;
  core: ServingCore;
  bundle: LoadedBundle;
  config: ModelConfig;
  weights: WeightSource;
}
const opened = {} as Record<'flex' | 'meki', Opened>;

beforeAll(async () => {
  for (const arch of ['flex', 'meki'] as const) {
    const path = await buildTinyBundle(dir.path, arch, { reference: false });
    const manifest = readLocalManifest(path);
    const core = localServingCore(path, manifest);
    const { config, weights } = readCheckpoint(join(dir.path, `${arch}-checkpoint`));
    opened[arch] = { path, core, bundle: await core.bundle(manifest.version), config, weights };
  }
}, 240_000);
afterAll(async () => {
  for (const o of Object.values(opened)) await o.core.close();
  dir.remove();
});

// ---- an independent reference: the lens by direct matmul over the checkpoint -------------------

function rmsNorm(x: Float64Array, gamma: Float32Array, eps: number): Float64Array {
  const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
  return x.map((v, i) => (v / Math.sqrt(ms + eps)) * gamma[i]);
}

/** The direct logit effect of one layer's slice `m` over the whole vocabulary (docs/inspector.md). */
function directEffect(o: Opened, layer: number, m: Float32Array): Float64Array {
  const { config: c, weights: w } = o;
  const d = c.hidden_size;
  let contribution = Float64Array.from(m);
  if (c.architecture === 'meki') {
    const W = w.tensor(`model.layers.${layer}.memory.out_proj.weight`); // [d, d_mem]
    const post = w.tensor(`model.layers.${layer}.memory.post_norm.weight`);
    const y = (mm: Float32Array) => {
      const z = new Float64Array(d);
      for (let o2 = 0; o2 < d; o2++) for (let i = 0; i < mm.length; i++) z[o2] += W[o2 * mm.length + i] * (mm[i] + 0.5);
      return rmsNorm(z, post, c.rms_norm_eps);
    };
    const withRow = y(m);
    const zero = y(new Float32Array(m.length));
    contribution = withRow.map((v, i) => v - zero[i]);
  }
  const head = w.tensor(c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  const gamma = w.tensor('model.norm.weight');
  const out = new Float64Array(c.vocab_size);
  for (let v = 0; v < c.vocab_size; v++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += head[v * d + i] * gamma[i] * contribution[i];
    out[v] = s;
  }
  return out;
}

async function allRows(o: Opened): Promise<Float32Array> {
  const ids = Array.from({ length: o.config.vocab_size }, (_, i) => i);
  return o.core.rows(o.bundle)!.rows(ids);
}

const sliceOf = (o: Opened, row: Float32Array, index: number) => {
  const s = o.bundle.manifest.tables!.layout.slices[index];
  return row.subarray(s.valueOffset, s.valueOffset + s.width);
};

describe.each(['flex', 'meki'] as const)('token view of %s', (arch) => {
  it('promoted and suppressed tokens and scores match a direct matmul over the checkpoint', async () => {
    const o = opened[arch];
    const R = o.bundle.manifest.tables!.layout.rowValues;
    const rows = await allRows(o);
    for (const id of [0, 7, 200, 511]) {
      const view = await inspectToken(o.core, o.bundle, { id, top: 5 });
      expect(view.layers).toHaveLength(o.bundle.manifest.tables!.layout.slices.length);
      for (const [index, layerView] of view.layers.entries()) {
        const m = sliceOf(o, rows.subarray(id * R, (id + 1) * R), index);
        const effect = directEffect(o, layerView.layer, m);
        const ranked = [...effect.keys()].sort((a, b) => effect[b] - effect[a]);
        const scale = Math.max(...effect.map(Math.abs));
        expect(layerView.promoted).toHaveLength(5);
        // Each rank's score is the reference's at that rank (robust to ties), and each id's score is its own.
        layerView.promoted.forEach((t, r) => {
          expect(Math.abs(t.logit - effect[ranked[r]])).toBeLessThan(1e-4 * scale);
          expect(Math.abs(t.logit - effect[t.id])).toBeLessThan(1e-4 * scale);
        });
        layerView.suppressed.forEach((t, r) => {
          expect(Math.abs(t.logit - effect[ranked[ranked.length - 1 - r]])).toBeLessThan(1e-4 * scale);
          expect(Math.abs(t.logit - effect[t.id])).toBeLessThan(1e-4 * scale);
        });
        expect(layerView.norm).toBeCloseTo(Math.hypot(...m), 4);
      }
      expect(view.approximation === null).toBe(arch === 'flex');
    }
  });

  it('neighbours are the nearest other rows by cosine in the layer (brute force)', async () => {
    const o = opened[arch];
    const R = o.bundle.manifest.tables!.layout.rowValues;
    const V = o.config.vocab_size;
    const rows = await allRows(o);
    const id = 42;
    const view = await inspectToken(o.core, o.bundle, { id, top: 4, layers: [1] });
    const index = o.bundle.manifest.tables!.layout.slices.findIndex((s) => s.layer === 1);
    const me = sliceOf(o, rows.subarray(id * R, (id + 1) * R), index);
    const cos = (v: number) => {
      const other = sliceOf(o, rows.subarray(v * R, (v + 1) * R), index);
      let dot = 0;
      for (let i = 0; i < me.length; i++) dot += me[i] * other[i];
      return dot / (Math.hypot(...me) * Math.hypot(...other));
    };
    const cosines = Array.from({ length: V }, (_, v) => (v === id ? Number.NEGATIVE_INFINITY : cos(v)));
    const best = [...cosines.keys()].sort((a, b) => cosines[b] - cosines[a]).slice(0, 4);
    const got = view.layers[0].neighbours;
    expect(got).toHaveLength(4);
    expect(got.map((n) => n.id)).not.toContain(id);
    got.forEach((n, r) => {
      expect(n.cosine).toBeCloseTo(cosines[best[r]], 4);
      expect(n.cosine).toBeCloseTo(cosines[n.id], 4);
    });
  });
});

describe.each(['flex', 'meki'] as const)('token view of the trained demo model %s (f16 tables, as shipped)', (arch) => {
  let o: Opened;
  beforeAll(async () => {
    const path = join(dir.path, `demo-${arch}`);
    await buildBundle(join('models', arch), path, { dtype: 'f16', reference: false, progress: false });
    const manifest = readLocalManifest(path);
    const core = localServingCore(path, manifest);
    const { config, weights } = readCheckpoint(join('models', arch));
    o = { path, core, bundle: await core.bundle(manifest.version), config, weights };
  }, 300_000);
  afterAll(() => o?.core.close());

  it('promoted and suppressed tokens match a direct matmul over the checkpoint', async () => {
    // The final norm's weight is far from 1 in a trained model: leaving it out would be caught.
    const gamma = o.weights.tensor('model.norm.weight');
    expect(Math.max(...gamma) - Math.min(...gamma)).toBeGreaterThan(0.1);
    const R = o.bundle.manifest.tables!.layout.rowValues;
    const ids = [0, 93, 1000, 4000];
    const rows = await o.core.rows(o.bundle)!.rows(ids);
    for (const [n, id] of ids.entries()) {
      const view = await inspectToken(o.core, o.bundle, { id, top: 10 });
      for (const [index, layerView] of view.layers.entries()) {
        const effect = directEffect(o, layerView.layer, sliceOf(o, rows.subarray(n * R, (n + 1) * R), index));
        const ranked = [...effect.keys()].sort((a, b) => effect[b] - effect[a]);
        const scale = Math.max(...effect.map(Math.abs));
        layerView.promoted.forEach((t, r) => {
          expect(Math.abs(t.logit - effect[ranked[r]])).toBeLessThan(1e-4 * scale);
          expect(Math.abs(t.logit - effect[t.id])).toBeLessThan(1e-4 * scale);
        });
        layerView.suppressed.forEach((t, r) => {
          expect(Math.abs(t.logit - effect[ranked[ranked.length - 1 - r]])).toBeLessThan(1e-4 * scale);
        });
      }
    }
  }, 120_000);
});

describe('token view input errors', () => {
  it('names what is wrong', async () => {
    const o = opened.flex;
    const fails = (options: Parameters<typeof inspectToken>[2]) => inspectToken(o.core, o.bundle, options);
    await expect(fails({ id: 512 })).rejects.toThrow(/unknown token id 512 \(the vocabulary is 0-511\)/);
    await expect(fails({ token: ' the President' })).rejects.toThrow(/is \d+ tokens, not one: \[/);
    await expect(fails({ id: 1, layers: [99] })).rejects.toThrow(/layer 99 is out of range/);
    await expect(fails({ id: 1, top: 11 })).rejects.toThrow(/top 11 is out of range \(1-10/);
    await expect(fails({ id: 1, top: 11 })).rejects.toBeInstanceOf(InputError);
  });
});

// ---- the prompt view against direct unbatched forward passes ------------------------------------

async function directLogprob(o: Opened, ids: number[], zero: { position: number; slices: number[] } | null, next: number): Promise<number> {
  const layout = o.bundle.manifest.tables!.layout;
  const rows = (await o.core.rows(o.bundle)!.rows(ids)).slice();
  const R = layout.rowValues;
  for (const i of zero?.slices ?? []) {
    const s = layout.slices[i];
    rows.fill(0, zero!.position * R + s.valueOffset, zero!.position * R + s.valueOffset + s.width);
  }
  const T = ids.length;
  const c = o.config;
  const feeds: Record<string, ort.Tensor> = {
    [GRAPH_IO.inputIds]: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, T]),
    [GRAPH_IO.positionIds]: new ort.Tensor(
      'int64',
      BigInt64Array.from(ids, (_, i) => BigInt(i)),
      [1, T],
    ),
    [GRAPH_IO.memoryRows]: new ort.Tensor('float32', rows, [1, T, R]),
    ...unpaddedMask(o.bundle.session.inputNames, ort.Tensor, 1, T),
    ...logitsFromFeed(o.bundle.session.inputNames, ort.Tensor, 0),
  };
  for (let l = 0; l < c.num_hidden_layers; l++) {
    feeds[GRAPH_IO.pastKey(l)] = new ort.Tensor('float32', new Float32Array(0), [1, c.num_key_value_heads, 0, c.head_dim]);
    feeds[GRAPH_IO.pastValue(l)] = new ort.Tensor('float32', new Float32Array(0), [1, c.num_key_value_heads, 0, c.head_dim]);
  }
  const logits = (await o.bundle.session.run(feeds))[GRAPH_IO.logits].data as Float32Array;
  const last = Array.from(logits.subarray((T - 1) * c.vocab_size, T * c.vocab_size));
  const max = Math.max(...last);
  return last[next] - max - Math.log(last.reduce((s, v) => s + Math.exp(v - max), 0));
}

describe.each(['flex', 'meki'] as const)('prompt view of %s', (arch) => {
  const prompt = 'The President said that the Congress';

  it("ablating all of a position's memory changes log p(next) exactly as a direct unbatched pass does", async () => {
    const o = opened[arch];
    const view = await inspectPrompt(o.core, o.bundle, { prompt, ablate: 'all' });
    const ids = view.positions.map((p) => p.token.id);
    const every = o.bundle.manifest.tables!.layout.slices.map((_, i) => i);
    const next = view.next_token.id;
    const base = await directLogprob(o, ids, null, next);
    expect(view.next_token.logprob).toBeCloseTo(base, 5);
    const direct: number[] = [];
    for (let t = 0; t < ids.length; t++) direct.push((await directLogprob(o, ids, { position: t, slices: every }, next)) - base);
    view.positions.forEach((p, t) => {
      expect(Math.abs(p.delta_logprob_all! - direct[t])).toBeLessThan(1e-4);
    });
    // Negative control: the comparison tells positions apart (it would catch an off-by-one).
    expect(direct.some((d, t) => Math.abs(d - direct[(t + 1) % direct.length]) > 1e-3)).toBe(true);
    expect(view.forward_passes).toBe(ids.length + 1);
  });

  it('batched and one-at-a-time ablations give the same numbers', async () => {
    const o = opened[arch];
    const one = await inspectPrompt(o.core, o.bundle, { prompt, ablate: 'each-layer' }, { maxBatch: 1 });
    const many = await inspectPrompt(o.core, o.bundle, { prompt, ablate: 'each-layer' }, { maxBatch: 7 });
    expect(many.forward_passes).toBe(one.forward_passes);
    // A bound that must hold: the last layer's memory at an earlier position cannot reach the last
    // position's logits (that layer's keys and values are computed before its memory is added).
    const lastLayer = many.positions[0].layers.length - 1;
    expect(many.positions[0].layers[lastLayer].layer).toBe(o.config.num_hidden_layers - 1);
    for (const p of many.positions.slice(0, -1)) expect(Math.abs(p.layers[lastLayer].delta_logprob!)).toBeLessThan(1e-5);
    // ... and the check is not vacuous: some earlier layer does move it.
    expect(Math.max(...many.positions.flatMap((p) => p.layers.slice(0, -1).map((l) => Math.abs(l.delta_logprob!))))).toBeGreaterThan(1e-3);
    many.positions.forEach((p, t) => {
      expect(Math.abs(p.delta_logprob_all! - one.positions[t].delta_logprob_all!)).toBeLessThan(1e-5);
      p.layers.forEach((l, i) => {
        expect(l.delta_logprob).not.toBeNull();
        expect(Math.abs(l.delta_logprob! - one.positions[t].layers[i].delta_logprob!)).toBeLessThan(1e-5);
      });
    });
  });

  it('reports memory norms (additive: the row itself) and gates where they apply', async () => {
    const o = opened[arch];
    const view = await inspectPrompt(o.core, o.bundle, { prompt, ablate: 'none' });
    const ids = view.positions.map((p) => p.token.id);
    const rows = await o.core.rows(o.bundle)!.rows(ids);
    const R = o.bundle.manifest.tables!.layout.rowValues;
    for (const p of view.positions) {
      expect(p.delta_logprob_all).toBeNull();
      p.layers.forEach((l, i) => {
        expect(l.ratio).toBeCloseTo(l.memory_norm / l.residual_norm, 5);
        if (arch === 'flex') {
          expect(l.gate).toBeNull();
          expect(l.memory_norm).toBeCloseTo(Math.hypot(...sliceOf(o, rows.subarray(p.index * R, (p.index + 1) * R), i)), 3);
        } else {
          expect(l.gate).toBeGreaterThan(0);
          expect(l.gate).toBeLessThan(1);
        }
      });
    }
  });

  it('refuses a prompt longer than the context and a layer without memory', async () => {
    const o = opened[arch];
    const long = ' the'.repeat(o.config.max_position_embeddings + 1);
    await expect(inspectPrompt(o.core, o.bundle, { prompt: long })).rejects.toThrow(/the prompt is \d+ tokens; the model's context is/);
    await expect(inspectPrompt(o.core, o.bundle, { prompt, ablate: { layer: 40 } })).rejects.toThrow(/layer 40 is out of range/);
  });
});

// ---- a patch: its diff, and its edited token's recomputed lens -----------------------------------

describe('a patch and its base', () => {
  it('differ in exactly the edited token, whose lens is recomputed (scale by -1 swaps promoted and suppressed)', async () => {
    const o = opened.flex;
    const store = new MemoryStore();
    const { version: baseVersion } = await publishBundle(store, o.path);
    const edited = 77;
    const edits = join(dir.path, 'edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ token: edited, op: 'scale', factor: -1, layers: [0, 2] }] }));
    const { version: patchVersion } = await publishPatch(store, baseVersion, edits, undefined);
    const core = createServingCore({ origin: store, createSession: (g) => createNodeSession(g), Tensor: ort.Tensor });
    try {
      const [base, patch] = await Promise.all([core.bundle(baseVersion), core.bundle(patchVersion)]);
      const diff = await diffVersions(core, base, patch, { top: 3 });
      expect(diff.changed_count).toBe(1);
      expect(diff.changed.map((c) => c.token.id)).toEqual([edited]);
      expect(diff.changed[0].layers.map((l) => l.layer)).toEqual([0, 2]);
      for (const l of diff.changed[0].layers) {
        expect(l.after.norm).toBeCloseTo(l.before.norm, 5);
        expect(l.after.promoted).not.toEqual(l.before.promoted);
      }
      const before = await inspectToken(core, base, { id: edited, top: 5 });
      const after = await inspectToken(core, patch, { id: edited, top: 5 });
      for (const [i, l] of after.layers.entries()) {
        const b = before.layers[i];
        if ([0, 2].includes(l.layer)) {
          l.promoted.forEach((t, r) => {
            expect(t.logit).toBeCloseTo(-b.suppressed[r].logit, 5);
          });
          l.suppressed.forEach((t, r) => {
            expect(t.logit).toBeCloseTo(-b.promoted[r].logit, 5);
          });
          // Against the layer, the negated row's neighbours are the old row's farthest: the cosines change.
          expect(l.neighbours.map((n) => n.cosine)).not.toEqual(b.neighbours.map((n) => n.cosine));
        } else {
          // Recomputed from the same row: the same lists (cosines up to float rounding of another chunking).
          expect({ ...l, neighbours: [] }).toEqual({ ...b, neighbours: [] });
          expect(l.neighbours.map((n) => n.id)).toEqual(b.neighbours.map((n) => n.id));
          l.neighbours.forEach((n, r) => {
            expect(n.cosine).toBeCloseTo(b.neighbours[r].cosine, 5);
          });
        }
      }
      // An unedited token reads the base's lens, unchanged.
      const other = await inspectToken(core, patch, { id: 5 });
      expect({ ...other, version: '', note: null }).toEqual({ ...(await inspectToken(core, base, { id: 5 })), version: '' });
      // Negative control: a version against itself differs nowhere.
      expect((await diffVersions(core, patch, patch)).changed_count).toBe(0);
    } finally {
      await core.close();
    }
  }, 120_000);
});

// ---- the CLI prints the same JSON the engine returns ---------------------------------------------

describe('flexmem inspect', () => {
  it('--json is the engine view, field for field; bad input is one line', async () => {
    const o = opened.meki;
    const result = flexmem('inspect', o.path, '--id', '9', '--layers', '0,2', '--top', '3', '--json');
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual(await inspectToken(o.core, o.bundle, { id: 9, layers: [0, 2], top: 3 }));
    const text = flexmem('inspect', o.path, '--token', ' the');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/promotes/);
    const bad = flexmem('inspect', o.path, '--token', ' the President');
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^flexmem: " the President" is \d+ tokens, not one/);
    const diff = flexmem('inspect', '--diff', o.path, o.path, '--json');
    expect(JSON.parse(diff.stdout)).toMatchObject({ object: 'flexmem.memory.diff', changed_count: 0 });
  }, 120_000);
});
