/**
 * Updates without redeploy: a running worker picks up a published version, a rollback and a
 * knowledge patch within its pointer TTL, and a stream never mixes versions.
 *
 * The two versions differ only in their memory tables: one checkpoint, whose memory weights
 * (the ones that only feed the tables) come from another seed in the second, so both share the
 * compute graph and the tokenizer and every table row differs. A stream that read a row of the
 * other version, from the origin or from a cache, would produce other text. Every text is
 * compared with the greedy reference of its version, computed by the flexmem engine on that
 * bundle folder alone (onnxruntime-node, no worker, no pointer).
 *
 * Mid-stream flips are made deterministic by a slow origin: on `slow`, every row is read from an
 * origin LATENCY_MS away (no isolate, hot-set or Cache API tier), so a stream of TOKENS tokens
 * generates for at least (TOKENS - 1) * LATENCY_MS. The test flips the pointer after the k-th
 * event of a stream has arrived, waits until a new request is served the new version, and checks
 * that the stream is still generating at that moment (/health), before reading the rest of it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { writeCheckpoint } from '../cli/checkpoint.ts';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { publishPatch } from '../cli/patch.ts';
import { publishBundle } from '../cli/publish.ts';
import type { RowSource } from '../src/bundle/row-source.ts';
import { generate } from '../src/engine/generation.ts';
import { parseConfig, type ConfigInput } from '../src/model/config.ts';
import { initialValues } from '../src/model/init.ts';
import { presetConfig } from '../src/model/presets.ts';
import { checkpointTensors } from '../src/model/tensors.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { trainByteLevelBpe } from '../src/tokenizer/byte-level-bpe.ts';
import { SAMPLE_TEXT } from '../src/tokenizer/sample-text.ts';
import { tempDir } from './helpers/fixtures.ts';
import { readAllEvents, sseEvents } from './helpers/sse.ts';
import { pollUntil, within } from './helpers/deadline.ts';
import { get, post, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'live';
const LATENCY_MS = 60;
/** The prompt is 4 tokens: 4 + 120 fits the tiny model's context of 128. */
const PROMPT = 'The President said';
const TOKENS = 120;
const VERSION_HEADER = 'x-flexmem-bundle-version';
/** How long any single wait of this file may take before it fails (a stream, a poll). */
const WAIT_MS = 30_000;

const dir = tempDir();
/** Every tier, as deployed: each version's rows come from its own hot set. */
let fast: RunningWorker;
/**
 * No hot set: rows come from the isolate LRU, then Cache API pages, then the origin, so the two
 * versions' rows of the same token ids meet in those caches (what a cache keyed without the
 * version would mix up).
 */
let cached: RunningWorker;
/** Every row from the origin, LATENCY_MS away. */
let slow: RunningWorker;
let v1: string;
let v2: string;
const local = new Map<string, LocalBundle>();

/** A tiny flex checkpoint; its memory weights (role 'memory': they only feed the tables) come from `memorySeed`. */
function writeCheckpointWithMemorySeed(path: string, memorySeed: number): void {
  const raw = presetConfig('tiny', 'flex') as ConfigInput;
  const { json: tokenizer, endOfTextId } = trainByteLevelBpe(SAMPLE_TEXT, raw.vocab_size);
  const config = { ...raw, bos_token_id: endOfTextId, eos_token_id: endOfTextId };
  const values = (spec: Parameters<typeof initialValues>[0]) => initialValues(spec, spec.role === 'memory' ? memorySeed : 1);
  writeCheckpoint(path, config, tokenizer, checkpointTensors(parseConfig(config)), values, 'f32');
}

beforeAll(async () => {
  const bundleDirs: string[] = [];
  for (const memorySeed of [1, 2]) {
    writeCheckpointWithMemorySeed(join(dir.path, `checkpoint-${memorySeed}`), memorySeed);
    bundleDirs.push(join(dir.path, `bundle-${memorySeed}`));
    await buildBundle(join(dir.path, `checkpoint-${memorySeed}`), bundleDirs.at(-1)!, { dtype: 'f32', reference: false, progress: false });
  }
  [fast, cached, slow] = await Promise.all([
    startWorker({ vars: { POINTER_TTL_SECONDS: '1' } }),
    startWorker({ vars: { POINTER_TTL_SECONDS: '1', HOT_SET_BYTES: '0' } }),
    startWorker({
      vars: {
        POINTER_TTL_SECONDS: '1',
        ORIGIN_LATENCY_MS: String(LATENCY_MS),
        ISOLATE_CACHE_BYTES: '0',
        HOT_SET_BYTES: '0',
        USE_CACHE_API: 'false',
      },
    }),
  ]);
  for (const worker of [fast, cached, slow]) {
    v1 = (await publishBundle(worker.bucket, bundleDirs[0], { model: MODEL })).version;
    v2 = (await publishBundle(worker.bucket, bundleDirs[1])).version;
  }
  local.set(v1, await openLocalBundle(bundleDirs[0]));
  local.set(v2, await openLocalBundle(bundleDirs[1]));
});
afterAll(async () => {
  await Promise.all([fast?.dispose(), cached?.dispose(), slow?.dispose(), ...[...local.values()].map((l) => l.core.close())]);
  dir.remove();
});

/**
 * The greedy text of PROMPT on `version`'s bundle folder, by the flexmem engine. With `mix`, the
 * rows of the first `switchAfter` tokens come from `version`'s tables and all later ones from
 * `rowsFrom`'s: what a stream that switched tables at that token would produce.
 */
async function localGreedy(version: string, tokens: number, mix?: { rowsFrom: string; switchAfter: number }): Promise<string> {
  const { core, bundle, tokenizer, rows } = local.get(version)!;
  const later = mix ? local.get(mix.rowsFrom)!.rows! : rows!;
  // Token i + 1 is sampled from the logits of the step that read rows the i-th time (the prefill is the first).
  let reads = 0;
  const source: RowSource = {
    rowValues: rows!.rowValues,
    rows: (ids) => (reads++ < (mix?.switchAfter ?? Infinity) ? rows! : later).rows(ids),
  };
  const model = {
    decoder: core.decoder(bundle, source),
    decode: (ids: number[]) => tokenizer.decode(ids),
    eosTokenId: bundle.manifest.config.eos_token_id,
  };
  const request = {
    promptIds: tokenizer.encode(PROMPT),
    maxTokens: tokens,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    stop: [],
    logprobs: null,
  };
  let text = '';
  for await (const delta of generate(model, request)) text += delta.text;
  return text;
}

const references = new Map<string, Promise<string>>();
/** The greedy reference of `version` for PROMPT and `tokens`. */
const reference = (version: string, tokens: number): Promise<string> => {
  const key = `${version}/${tokens}`;
  if (!references.has(key)) references.set(key, localGreedy(version, tokens));
  return references.get(key)!;
};

const complete = async (worker: RunningWorker, prompt: string, maxTokens: number) => {
  const response = await post(`${worker.url}/v1/completions`, { model: MODEL, prompt, max_tokens: maxTokens, temperature: 0 });
  expect(response.status).toBe(200);
  const body = await response.json();
  return { version: response.headers.get(VERSION_HEADER)!, text: body.choices[0].text as string };
};

/** Asks `worker` until a new request is served `version`: the pointer TTL is 1 s. Returns the requests it took. */
async function servedBy(worker: RunningWorker, version: string): Promise<number> {
  let asked = 0;
  await pollUntil(
    `${worker === slow ? 'the slow' : 'the'} worker serving ${version}`,
    async () => {
      asked++;
      return (await complete(worker, 'The', 1)).version;
    },
    (served) => served === version,
    { timeoutMs: WAIT_MS },
  );
  return asked;
}

const health = async (worker: RunningWorker) =>
  (await (await get(`${worker.url}/health`)).json()) as { active_generations: number; tokens_generated: number };

describe('the two versions', () => {
  it('share the compute graph and tokenizer and differ in every table shard, so their greedy texts differ', async () => {
    const [m1, m2] = [local.get(v1)!.manifest, local.get(v2)!.manifest];
    expect(m1.objects.compute.sha256).toBe(m2.objects.compute.sha256);
    expect(m1.objects.tokenizer.sha256).toBe(m2.objects.tokenizer.sha256);
    const shards = (m: typeof m1) => m.tables!.shards.map((s) => s.sha256);
    expect(shards(m1).every((sha, i) => sha !== shards(m2)[i])).toBe(true);
    expect(await reference(v1, TOKENS)).not.toBe(await reference(v2, TOKENS));
    expect(await reference(v1, 16)).not.toBe(await reference(v2, 16));
  });
});

describe('without redeploy', () => {
  it('serves a newly published version, then a rollback, within the pointer TTL', async () => {
    const catalog = new Catalog(fast.bucket);
    await catalog.setPointer(MODEL, v1);
    await servedBy(fast, v1);
    await catalog.setPointer(MODEL, v2);
    await servedBy(fast, v2);
    expect((await complete(fast, PROMPT, 16)).text).toBe(await reference(v2, 16));
    await catalog.setPointer(MODEL, v1);
    await servedBy(fast, v1);
    expect((await complete(fast, PROMPT, 16)).text).toBe(await reference(v1, 16));
  });
});

describe('a stream during a flip', () => {
  it.for([
    { from: 'v1', to: 'v2', after: 2 },
    { from: 'v2', to: 'v1', after: 25 },
  ])(
    'started on $from and flipped to $to after its event $after: it is all $from, later requests are all $to',
    async ({ from, to, after }, { annotate }) => {
      const versions: Record<string, string> = { v1, v2 };
      const [old, next] = [versions[from], versions[to]];
      const catalog = new Catalog(slow.bucket);
      await catalog.setPointer(MODEL, old);
      await servedBy(slow, old);

      const response = await post(`${slow.url}/v1/completions`, {
        model: MODEL,
        prompt: PROMPT,
        max_tokens: TOKENS,
        temperature: 0,
        stream: true,
      });
      expect(response.status).toBe(200);
      const events = sseEvents(response);
      const chunks: Record<string, any>[] = [];
      const textEvents = () => chunks.filter((c) => c.choices[0]?.text).length;
      await within(
        WAIT_MS,
        `the first ${after} text events of the stream`,
        (async () => {
          while (textEvents() < after) {
            const next = await events.next();
            if (next.done || next.value === '[DONE]') throw new Error(`the stream ended after ${textEvents()} text events`);
            chunks.push(JSON.parse(next.value));
          }
        })(),
      );
      expect(chunks[0].flexmem.bundle_version).toBe(old);

      await catalog.setPointer(MODEL, next);
      const flipped = Date.now();
      const asked = await servedBy(slow, next);
      await annotate(`after event ${after}, the flip reached a new request ${Date.now() - flipped} ms later (request ${asked})`);
      // The worker has switched to `next` for new requests while this stream is still generating
      // (it is the only generation: the polls above have finished): the flip landed mid-stream.
      expect((await health(slow)).active_generations, 'the stream had finished before the worker switched versions').toBe(1);

      await within(
        WAIT_MS,
        'the rest of the stream',
        (async () => {
          for (let next = await events.next(); !next.done; next = await events.next())
            if (next.value !== '[DONE]') chunks.push(JSON.parse(next.value));
        })(),
      );
      const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
      expect(chunks.at(-1)!.choices[0].finish_reason).toBe('length');
      expect(text).toBe(await reference(old, TOKENS));
      // Negative controls: the check above tells the versions apart. The stream's text is not the
      // new version's, and a stream that had switched tables right after the events read before the
      // flip (prefill plus `after` - 1 decode steps on the old rows) would not equal the old reference.
      expect(text).not.toBe(await reference(next, TOKENS));
      expect(await localGreedy(old, TOKENS, { rowsFrom: next, switchAfter: after })).not.toBe(await reference(old, TOKENS));

      // A request that starts after the flip and the TTL is the new version's, all of it.
      const later = await complete(slow, PROMPT, TOKENS);
      expect(later.version).toBe(next);
      expect(later.text).toBe(await reference(next, TOKENS));
    },
  );

  it.for([
    { tiers: 'every tier', name: 'fast' },
    { tiers: 'the LRU and Cache API pages', name: 'cached' },
  ])(
    'concurrent streams during repeated flips, rows from $tiers: every text is the reference of the version it names',
    async ({ name }) => {
      const worker = name === 'fast' ? fast : cached;
      const catalog = new Catalog(worker.bucket);
      const expected = new Map([
        [v1, await reference(v1, 16)],
        [v2, await reference(v2, 16)],
      ]);
      let flipping = true;
      const flips = (async () => {
        for (let i = 0; flipping; i++) {
          await catalog.setPointer(MODEL, i % 2 ? v1 : v2);
          await new Promise((resolve) => setTimeout(resolve, 400));
        }
      })();
      const stream = async () => {
        const response = await post(`${worker.url}/v1/completions`, {
          model: MODEL,
          prompt: PROMPT,
          max_tokens: 16,
          temperature: 0,
          stream: true,
        });
        expect(response.status).toBe(200);
        const chunks = (await within(WAIT_MS, 'a stream', readAllEvents(response))).filter((e) => e !== '[DONE]') as Record<string, any>[];
        const version = chunks[0].flexmem.bundle_version as string;
        expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(expected.get(version));
        return version;
      };
      // Rounds of four concurrent streams until the flips have shown both versions (the pointer TTL
      // is 1 s and the pointer flips every 0.4 s), within a deadline.
      const served: string[] = [];
      const deadline = Date.now() + WAIT_MS;
      try {
        for (let round = 0; round < 6 || new Set(served).size < 2; round++) {
          if (Date.now() > deadline) throw new Error(`in ${WAIT_MS} ms of flips the worker served only ${[...new Set(served)]}`);
          served.push(...(await Promise.all(Array.from({ length: 4 }, stream))));
        }
      } finally {
        flipping = false;
        await flips;
      }
      expect(new Set(served)).toEqual(new Set([v1, v2]));
    },
  );
});

describe('a knowledge patch', () => {
  it('changes outputs of prompts with the edited token, leaves others identical, and rolls back', async () => {
    const catalog = new Catalog(fast.bucket);
    await catalog.setPointer(MODEL, v1);
    await servedBy(fast, v1);
    const { tokenizer } = local.get(v1)!;
    const withToken = 'The Congress met in the autumn';
    const without = 'We hold these truths';
    const before = { withToken: await complete(fast, withToken, 16), without: await complete(fast, without, 16) };
    // Edit a token of the first prompt that neither the other prompt nor its continuation uses.
    const untouched = new Set(tokenizer.encode(without + before.without.text));
    const token = tokenizer.encode(withToken).find((id) => !untouched.has(id))!;
    expect(token).toBeDefined();
    const edits = join(dir.path, 'edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ token, op: 'scale', factor: -8 }] }));
    const patch = await publishPatch(fast.bucket, v1, edits, MODEL);
    await servedBy(fast, patch.version);

    const after = { withToken: await complete(fast, withToken, 16), without: await complete(fast, without, 16) };
    expect(after.withToken.text).not.toBe(before.withToken.text);
    expect(after.without.text).toBe(before.without.text);
    const timing = (await (await post(`${fast.url}/v1/completions`, { model: MODEL, prompt: withToken, max_tokens: 1 })).json()).flexmem
      .timing;
    expect(timing.rows.patch).toBe(1);

    await catalog.setPointer(MODEL, v1);
    await servedBy(fast, v1);
    expect((await complete(fast, withToken, 16)).text).toBe(before.withToken.text);
  });
});
