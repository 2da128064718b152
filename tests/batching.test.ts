/**
 * Continuous batching (src/engine/step-batcher.ts) on the demo model (models/flex):
 *
 * - against onnxruntime-node directly, with a composition the test controls (the batcher's `wait`
 *   is the test's: a run starts when the test says so): sequences of different lengths join at
 *   different steps (rebuilds), one misses steps (rides along padded), one leaves (compaction).
 *   Every row must give the tokens of the same sequence decoded alone, and logits within a
 *   measured bound: batched logits are NOT bit-identical to unbatched ones (onnxruntime's GEMM sums
 *   in another order for another batch size, even without padding; measured max |Δ| 4.8e-6).
 *   A control swaps two rows of each batched output and must be caught.
 * - in real workerd: a burst of 16 concurrent streaming requests, every one equal to the same
 *   request sent alone, and the worker's /metrics showing that steps did run batched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { localServingCore, openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { Decoder, type DecoderState, type StepSession } from '../src/engine/decoder.ts';
import { sampleToken } from '../src/engine/sampler.ts';
import { ABANDON_RUN_AFTER_MS, canBatch, StepBatcher } from '../src/engine/step-batcher.ts';
import { GRAPH_IO } from '../src/model/graph-io.ts';
import { Random } from '../src/util/random.ts';
import { tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

/** Largest |batched − unbatched| logit measured on this model (4.8e-6, onnxruntime-node 1.30, x86-64), times a margin of 10. */
const LOGIT_BOUND = 4.8e-6 * 10;
const STEPS = 32;
const PROMPTS = [
  'The President said that',
  'We hold these truths to be self-evident, that all men are created equal',
  'Congress',
  'In the year of our Lord the nation',
  'Mr. Speaker, Mr. Vice President, members of Congress, my fellow citizens',
  'The people of the United States',
];
const SAMPLING = { temperature: 0.8, topK: 0, topP: 0.95 };

const dir = tempDir();
let local: LocalBundle;
let bundleDir: string;

beforeAll(async () => {
  bundleDir = `${dir.path}/flex`;
  await buildBundle('models/flex', bundleDir, { dtype: 'f32', reference: false, progress: false });
  local = await openLocalBundle(bundleDir, 'compute');
}, 120_000);
afterAll(async () => {
  await local?.core.close();
  dir.remove();
});

interface Decoded {
  tokens: number[];
  /** Logits of each generated token's position. */
  logits: Float32Array[];
}

/** Seeded sampling of `STEPS` tokens of each prompt, one sequence at a time, every step its own session.run. */
async function alone(session: StepSession): Promise<Decoded[]> {
  const { config } = local.manifest;
  const decoder = new Decoder({ session, Tensor: local.core.Tensor, config, rows: local.rows });
  const out: Decoded[] = [];
  for (const [k, prompt] of PROMPTS.entries()) {
    const ids = local.tokenizer.encode(prompt);
    const state = decoder.start();
    let logits = (await decoder.step(state, ids)).slice((ids.length - 1) * config.vocab_size);
    const rng = new Random(100 + k);
    const d: Decoded = { tokens: [], logits: [logits] };
    for (let i = 0; i < STEPS; i++) {
      const id = sampleToken(logits, SAMPLING, rng);
      d.tokens.push(id);
      logits = (await decoder.step(state, [id])).slice();
      d.logits.push(logits);
    }
    out.push(d);
  }
  return out;
}

/**
 * The same sequences through one StepBatcher, in a composition fixed here: sequence k starts
 * decoding at round k, sequence 2 sits out every third round, sequence 3 sits out rounds 12 to 14
 * (more than MAX_SKIPS in a row: it is dropped from the batch, then joins again), sequence 0 stops
 * after 10 tokens (and leaves), and all others run to STEPS tokens. The batcher runs only when the
 * test fires it (or when every member of its batch has asked), so no timing decides who is batched
 * with whom.
 */
async function batched(session: StepSession): Promise<{ decoded: Decoded[]; stats: StepBatcher['stats']; held: boolean[] }> {
  const { config } = local.manifest;
  let fire: (() => void) | null = null;
  const batcher = new StepBatcher({ session, Tensor: local.core.Tensor, config, maxBatch: 16, wait: (run) => (fire = run) });
  const decoder = new Decoder({ session, Tensor: local.core.Tensor, config, rows: local.rows, batcher });
  const states: DecoderState[] = [];
  const next: Float32Array[] = [];
  const rngs = PROMPTS.map((_, k) => new Random(100 + k));
  const decoded: Decoded[] = [];
  for (const prompt of PROMPTS) {
    const ids = local.tokenizer.encode(prompt);
    const state = decoder.start();
    states.push(state);
    const logits = (await decoder.step(state, ids)).slice((ids.length - 1) * config.vocab_size);
    next.push(logits);
    decoded.push({ tokens: [], logits: [logits] });
  }
  const limit = (k: number) => (k === 0 ? 10 : STEPS);
  for (let round = 0; decoded.some((d, k) => d.tokens.length < limit(k)); round++) {
    const asking: { k: number; id: number; rows: Float32Array }[] = [];
    for (const k of states.keys()) {
      const sitsOut = (k === 2 && round % 3 === 1) || (k === 3 && round >= 12 && round <= 14);
      if (round < k || decoded[k].tokens.length >= limit(k) || sitsOut) continue;
      const id = sampleToken(next[k], SAMPLING, rngs[k]);
      decoded[k].tokens.push(id);
      asking.push({ k, id, rows: await local.rows!.rows([id]) });
    }
    // All of a round's steps are asked for in one synchronous loop, newcomers first: when the last
    // member of the current batch asks, everyone of this round is waiting and runs in that batch.
    // A round missing a member (sequence 2 sitting out) runs when the test fires the wait.
    const results = asking.reverse().map(({ k, id, rows }) => ({ k, result: batcher.decode(states[k], id, rows) }));
    let settled = false;
    const all = Promise.all(results.map((r) => r.result)).finally(() => (settled = true));
    while (!settled) {
      const run = fire as (() => void) | null;
      fire = null;
      run?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const logits = await all;
    for (const [i, { k }] of results.entries()) {
      next[k] = logits[i].slice();
      decoded[k].logits.push(next[k]);
      if (k === 0 && decoded[k].tokens.length === limit(k)) decoder.finish(states[k]);
    }
  }
  // Sequences 1 to 3 are still seated in the merged batch; once they finish, it is let go.
  const heldWhileSeated = batcher.holdsCache;
  for (const state of states) decoder.finish(state);
  return { decoded, stats: batcher.stats, held: [heldWhileSeated, batcher.holdsCache] };
}

/** Where a batched run departs from the unbatched one: token mismatches, and the largest logit difference. */
function compare(a: Decoded[], b: Decoded[]): { tokenMismatches: number; maxLogitDiff: number } {
  let tokenMismatches = 0;
  let maxLogitDiff = 0;
  for (const [k, d] of b.entries()) {
    d.tokens.forEach((t, i) => {
      if (t !== a[k].tokens[i]) tokenMismatches++;
    });
    d.logits.forEach((row, i) => {
      for (let v = 0; v < row.length; v++) maxLogitDiff = Math.max(maxLogitDiff, Math.abs(row[v] - a[k].logits[i][v]));
    });
  }
  return { tokenMismatches, maxLogitDiff };
}

/** The session, with rows 0 and 1 of every batched run's logits swapped: a batcher that mixes rows up. */
function swappingRows(session: StepSession): StepSession {
  return {
    ...session,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    run: (async (feeds: Parameters<StepSession['run']>[0], fetches: readonly string[]) => {
      const out = await session.run(feeds, fetches);
      const logits = out[GRAPH_IO.logits];
      const [B, T, V] = logits.dims;
      if (B < 2 || T !== 1) return out;
      const data = (logits.data as Float32Array).slice();
      data.set((logits.data as Float32Array).subarray(V, 2 * V), 0);
      data.set((logits.data as Float32Array).subarray(0, V), V);
      return { ...out, [GRAPH_IO.logits]: new local.core.Tensor('float32', data, logits.dims) };
    }) as StepSession['run'],
  };
}

describe('batched decode steps against onnxruntime-node', () => {
  it('the compute graph takes attention_mask and gives new_key_values, so it batches; a graph without them does not', () => {
    const { session } = local.bundle;
    expect(session.inputNames).toContain(GRAPH_IO.attentionMask);
    expect(canBatch(session)).toBe(true);
    const olderGraph = { ...session, outputNames: session.outputNames.filter((name) => !name.startsWith('new_key_values.')) };
    expect(canBatch(olderGraph)).toBe(false);
    expect(canBatch({ ...session, inputNames: session.inputNames.filter((name) => name !== GRAPH_IO.attentionMask) })).toBe(false);
    expect(() => new StepBatcher({ session: olderGraph, Tensor: local.core.Tensor, config: local.manifest.config, maxBatch: 2 })).toThrow(
      /needs a graph that takes attention_mask and gives new_key_values/,
    );
  });

  it('every row gives the tokens its sequence gives alone, logits within the measured bound', async () => {
    const reference = await alone(local.bundle.session);
    const { decoded, stats, held } = await batched(local.bundle.session);
    // The merged cache is held while sequences are seated in it, and let go when the last leaves.
    expect(held).toEqual([true, false]);
    // The composition did what it is meant to: batches of several rows, padded riders, rebuilds.
    expect(stats.rows / stats.runs).toBeGreaterThan(3);
    expect(stats.paddedRows).toBeGreaterThan(0);
    expect(stats.rebuilds).toBeGreaterThan(2);
    // Sequence 0 leaving and sequence 3 dropped after its skips shrink the batch in place.
    expect(stats.compactions).toBeGreaterThan(1);
    // Seated sequences outgrow the columns a rebuild leaves free: the merged cache grows in place.
    expect(stats.grows).toBeGreaterThan(0);
    expect(decoded.map((d) => d.tokens.length)).toEqual(PROMPTS.map((_, k) => (k === 0 ? 10 : STEPS)));
    const { tokenMismatches, maxLogitDiff } = compare(reference, decoded);
    expect(tokenMismatches).toBe(0);
    expect(maxLogitDiff).toBeLessThanOrEqual(LOGIT_BOUND);
    // Not bit-identical (what the docs say): if this ever reads 0, the docs' claim is stale.
    expect(maxLogitDiff).toBeGreaterThan(0);
  }, 120_000);

  it('control: a batcher that swaps two rows of its output is caught', async () => {
    const reference = await alone(local.bundle.session);
    const { decoded } = await batched(swappingRows(local.bundle.session));
    const { tokenMismatches, maxLogitDiff } = compare(reference, decoded);
    expect(tokenMismatches).toBeGreaterThan(0);
    expect(maxLogitDiff).toBeGreaterThan(LOGIT_BOUND);
  }, 120_000);
});

describe('a batched run that never settles', () => {
  it('is abandoned after ABANDON_RUN_AFTER_MS: its steps fail, and the next steps run', async () => {
    const { config } = local.manifest;
    const session = local.bundle.session;
    let hang = true;
    const hanging: StepSession = {
      ...session,
      inputNames: session.inputNames,
      outputNames: session.outputNames,
      run: ((feeds: Parameters<StepSession['run']>[0], fetches: readonly string[]) =>
        hang && feeds[GRAPH_IO.inputIds].dims[0] > 1 ? new Promise(() => {}) : session.run(feeds, fetches)) as StepSession['run'],
    };
    let now = 0;
    let fire: (() => void) | null = null;
    const batcher = new StepBatcher({
      session: hanging,
      Tensor: local.core.Tensor,
      config,
      maxBatch: 2,
      wait: (run) => (fire = run),
      now: () => now,
    });
    const decoder = new Decoder({ session: hanging, Tensor: local.core.Tensor, config, rows: local.rows, batcher });
    const states = [decoder.start(), decoder.start()];
    for (const [k, state] of states.entries()) await decoder.step(state, local.tokenizer.encode(PROMPTS[k]));
    const step = () => Promise.allSettled(states.map(async (state) => batcher.decode(state, 5, await local.rows!.rows([5]))));
    const turn = async () => {
      const run = fire as (() => void) | null;
      fire = null;
      run?.();
      await new Promise((resolve) => setImmediate(resolve));
    };

    const stuck = step();
    for (let i = 0; i < 5; i++) await turn();
    now = ABANDON_RUN_AFTER_MS - 1;
    await turn();
    let settled = false;
    void stuck.then(() => (settled = true));
    await turn();
    expect(settled).toBe(false); // not before the deadline
    now = ABANDON_RUN_AFTER_MS;
    await turn();
    const failed = await stuck;
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((failed[0] as PromiseRejectedResult).reason)).toMatch(/did not finish within 15000 ms/);

    hang = false;
    const lengths = states.map((s) => s.length);
    const next = step();
    for (let i = 0; i < 5; i++) await turn();
    const ran = await next;
    expect(ran.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(states.map((s) => s.length)).toEqual(lengths.map((n) => n + 1));
  }, 60_000);
});

describe('the n choices of a request, stepped together', () => {
  /** Each choice's text, from the serving core's generation loop with decode batches of at most `maxDecodeBatch`. */
  async function choices(maxDecodeBatch: number, prompt: string): Promise<string[]> {
    const core = localServingCore(bundleDir, local.manifest, { settings: { graph: 'compute', maxDecodeBatch } });
    try {
      const bundle = await core.bundle(local.manifest.version);
      const promptIds = bundle.tokenizer.encode(prompt);
      const request = { promptIds, maxTokens: 16, n: 3, sampling: { ...SAMPLING, seed: 7 }, stop: [], logprobs: null };
      const texts = ['', '', ''];
      for await (const d of core.generate(bundle, request).deltas) texts[d.index] += d.text;
      const stats = core.batchStats(bundle);
      if (maxDecodeBatch === 1) expect(stats).toBeNull();
      else expect(stats!.rows / stats!.runs).toBeGreaterThan(2); // the three choices did step together
      return texts;
    } finally {
      await core.close();
    }
  }

  // A one-token prompt too: its prefill must not be batched, since the choices fork its state.
  it.each(['We', 'The President said that'])(
    'batched choices of %j equal the unbatched ones',
    async (prompt) => {
      const unbatched = await choices(1, prompt);
      expect(new Set(unbatched).size).toBe(3);
      expect(await choices(16, prompt)).toEqual(unbatched);
    },
    60_000,
  );
});

describe('a burst of concurrent streams in workerd', () => {
  const MODEL = 'flex';
  let worker: RunningWorker;

  beforeAll(async () => {
    // 16 generations at once, none queued or refused: the burst is what is tested.
    worker = await startWorker({ vars: { MAX_ACTIVE_GENERATIONS: '16', MAX_DECODE_BATCH: '16' } });
    await serveBundle(worker, bundleDir, MODEL);
  }, 120_000);
  afterAll(async () => {
    await worker?.dispose();
  });

  /** Greedy with a seed: any composition of batches gives the same tokens unless two logits tie within LOGIT_BOUND. */
  const request = (i: number) => ({
    model: MODEL,
    prompt: PROMPTS[i % PROMPTS.length] + (i >= PROMPTS.length ? ' and' : ''),
    max_tokens: 24,
    temperature: 0,
    seed: i,
    stream: true,
    stream_options: { include_usage: true },
  });
  const completion = async (i: number) => {
    const response = await post(`${worker.url}/v1/completions`, request(i));
    expect(response.status).toBe(200);
    const events = await readAllEvents(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1) as {
      choices: { text?: string; finish_reason?: string | null }[];
      usage?: { completion_tokens: number };
    }[];
    return {
      text: chunks.map((c) => c.choices[0]?.text ?? '').join(''),
      finish: chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason,
      tokens: chunks.at(-1)?.usage?.completion_tokens,
    };
  };
  const batchedRows = async () => {
    const text = await (await fetch(`${worker.url}/metrics`)).text();
    const value = (name: string) => Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm'))?.[1] ?? 0);
    return { runs: value('flexmem_decode_batches_total'), rows: value('flexmem_decode_batch_rows_total') };
  };

  it('16 concurrent streams all complete, each equal to the same request sent alone', async () => {
    const ids = Array.from({ length: 16 }, (_, i) => i);
    const before = await batchedRows();
    const together = await Promise.all(ids.map(completion));
    const during = await batchedRows();
    const solo = [];
    for (const i of ids) solo.push(await completion(i));
    for (const i of ids) {
      expect(together[i].tokens).toBeGreaterThan(0);
      expect(together[i]).toEqual(solo[i]);
    }
    // The burst did run batched: more than one sequence per run on average.
    const runs = during.runs - before.runs;
    expect(runs).toBeGreaterThan(0);
    expect((during.rows - before.rows) / runs).toBeGreaterThan(1.5);
  }, 180_000);
});
