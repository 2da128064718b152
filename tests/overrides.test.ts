/**
 * Per-request memory overrides (`flexmem.edits`) and row provenance (`flexmem.provenance`) in real
 * workerd. The oracle: the same edits published with `flexmem patch` (publishPatch) and served as
 * a version give the same text for the same seed as the edits tried on the base for one request.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishPatch } from '../cli/patch.ts';
import { EditsFileSchema } from '../src/memory/memory-edits.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';
import { localBundle } from '../cli/publish.ts';

const MODEL = 'tiny-flex';
const PATCHED = 'tiny-flex-patched';
const dir = tempDir();
let worker: RunningWorker;
let baseVersion: string;
let tokenizer: TextTokenizer;

const PROMPT = 'We hold these truths';
const sampling = { max_tokens: 16, temperature: 1, seed: 11 };

beforeAll(async () => {
  worker = await startWorker();
  const bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
  baseVersion = await serveBundle(worker, bundle, MODEL);
  const tokenizerFile = localBundle(bundle)
    .payloads.find((p) => p.ref.path === 'tokenizer.json')!
    .read();
  tokenizer = new TextTokenizer(JSON.parse(new TextDecoder().decode(tokenizerFile)));
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

type Body = Record<string, any>;
const completion = async (model: string, extra: object = {}): Promise<{ body: Body; headers: Headers }> => {
  const response = await post(`${worker.url}/v1/completions`, { model, prompt: PROMPT, ...sampling, ...extra });
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  return { body, headers: response.headers };
};
const textOf = async (model: string, extra: object = {}) => (await completion(model, extra)).body.choices[0].text as string;

/** Edits of every op, on tokens of the prompt (their rows change the prefill) by text and by id. */
function editsFor(): object[] {
  const ids = tokenizer.encode(PROMPT);
  expect(ids.length).toBeGreaterThanOrEqual(3);
  return [
    { token: ids[0], op: 'ablate' },
    { token: ids[1], op: 'scale', factor: -1.5, layers: [0, 2] },
    { token: ids[2], op: 'copy', from: ids[0] },
    { token: ids.at(-1), op: 'set', values: Array.from({ length: 64 }, (_, i) => (i - 32) / 50), layers: [1] },
  ];
}

describe('overrides', () => {
  it('give exactly the text the same edits published with `flexmem patch` give, for the same seed; the base is untouched', async () => {
    const edits = editsFor();
    const baseline = await textOf(MODEL);
    const { body, headers } = await completion(MODEL, { flexmem: { edits } });
    const overridden = body.choices[0].text;
    expect(overridden, 'the edits change the output (else the comparison below proves nothing)').not.toBe(baseline);
    expect(headers.get('x-flexmem-memory-overrides')).toBe('4');
    expect(body.flexmem.overrides).toEqual({ edits: 4, tokens: [...new Set(edits.map((e: Body) => e.token))].sort((a, b) => a - b) });
    expect(body.flexmem.bundle_version).toBe(baseVersion);

    // The same edits, as an edits.json that `flexmem patch` reads (set values inline), published and served.
    const file = join(dir.path, 'edits.json');
    writeFileSync(file, JSON.stringify({ edits }));
    expect(EditsFileSchema.safeParse({ edits }).success).toBe(true);
    const patch = await publishPatch(worker.bucket, baseVersion, file, PATCHED);
    expect(await textOf(PATCHED)).toBe(overridden);

    // Nothing cached or published changed for the base.
    expect(await textOf(MODEL)).toBe(baseline);
    expect(patch.version).not.toBe(baseVersion);
  });

  it('apply to their own request only: concurrent requests without overrides read the base rows', async () => {
    const edits = editsFor();
    const baseline = await textOf(MODEL);
    const alone = await textOf(MODEL, { flexmem: { edits } });
    const streamed = (extra: object) =>
      post(`${worker.url}/v1/completions`, { model: MODEL, prompt: PROMPT, ...sampling, stream: true, ...extra }).then(readAllEvents);
    const runs = await Promise.all([streamed({ flexmem: { edits } }), streamed({}), streamed({ flexmem: { edits } }), streamed({})]);
    const texts = runs.map((events) =>
      events
        .filter((e): e is Body => e !== '[DONE]')
        .map((e) => e.choices[0]?.text ?? '')
        .join(''),
    );
    expect(texts).toEqual([alone, baseline, alone, baseline]);
    const finish = runs[0].filter((e): e is Body => e !== '[DONE]' && e.choices[0]?.finish_reason);
    expect(finish[0].flexmem.overrides.edits).toBe(4);
    expect(runs[1].some((e) => e !== '[DONE]' && e.flexmem?.overrides)).toBe(false);
  });

  it('are refused with a 400 that names the edit and its field', async () => {
    const refusal = async (edits: unknown, endpoint = 'completions') => {
      const body =
        endpoint === 'completions'
          ? { model: MODEL, prompt: PROMPT, max_tokens: 2, flexmem: { edits } }
          : { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, flexmem: { edits } };
      const response = await post(`${worker.url}/v1/${endpoint}`, body);
      expect(response.status).toBe(400);
      const { error } = await response.json();
      expect(error.type).toBe('invalid_request_error');
      return { param: error.param, message: error.message };
    };
    const multi = 'these truths are self-evident';
    expect(await refusal([{ token: multi, op: 'ablate' }])).toEqual({
      param: 'flexmem.edits.0.token',
      message: expect.stringMatching(
        /^Invalid value for 'flexmem.edits.0.token': unknown token ".*" \(it is \d+ tokens: \[[\d,]+\]; give one token or its id\)\.$/,
      ),
    });
    expect(
      await refusal(
        [
          { token: 5, op: 'ablate' },
          { token: 99999, op: 'ablate' },
        ],
        'chat/completions',
      ),
    ).toEqual({
      param: 'flexmem.edits.1.token',
      message: "Invalid value for 'flexmem.edits.1.token': unknown token id 99999 (vocabulary is 0-511).",
    });
    expect(await refusal([{ token: 5, op: 'scale', factor: 2, layers: [7] }])).toEqual({
      param: 'flexmem.edits.0.layers',
      message: "Invalid value for 'flexmem.edits.0.layers': layer 7 is out of range (memory layers: 0, 1, 2, 3).",
    });
    expect((await refusal([{ token: 5, op: 'copy', from: -1 }])).param).toBe('flexmem.edits.0.from');
    expect((await refusal([{ token: 5, op: 'set', values: [1, 2] }])).message).toMatch(
      /values holds 2 values; the chosen layers need 256 finite numbers/,
    );
    expect((await refusal([{ token: 5, op: 'set', file: 'rows.json' }])).param).toBe('flexmem.edits.0.file');
    expect((await refusal([{ token: 5, op: 'melt' }])).param).toBe('flexmem.edits.0.op');
    expect((await refusal([{ token: 5, op: 'ablate', layer: [1] }])).param).toBe('flexmem.edits.0');
    expect((await refusal([])).param).toBe('flexmem.edits');
  });
});

describe('provenance', () => {
  const tiersOf = (events: (Body | '[DONE]')[]) => {
    const tokens: { position: number; id: number; text: string; tier?: string | null }[] = [];
    for (const e of events) {
      if (e === '[DONE]' || !e.flexmem) continue;
      for (const t of e.flexmem.tokens ?? []) tokens[t.position] = { ...t };
      for (const r of e.flexmem.rows ?? []) tokens[r.position].tier = r.tier;
    }
    return tokens;
  };

  it('names the tier of every fed token row: override for overridden tokens, patch for a patch version’s', async () => {
    const plainEvents = await readAllEvents(
      await post(`${worker.url}/v1/completions`, {
        model: MODEL,
        prompt: PROMPT,
        ...sampling,
        stream: true,
        flexmem: { provenance: true },
      }),
    );
    const plain = tiersOf(plainEvents);
    expect(plain).toHaveLength(sampling.max_tokens);
    // Every token but the last is fed to a decode step; the last is never read.
    expect(plain.slice(0, -1).every((t) => ['isolate', 'cache', 'kv', 'origin'].includes(t.tier!))).toBe(true);
    expect(plain.at(-1)!.tier).toBeUndefined();
    const text = plainEvents
      .filter((e): e is Body => e !== '[DONE]')
      .map((e) => e.choices[0]?.text ?? '')
      .join('');
    expect(plain.map((t) => t.text).join('')).toBe(text);

    // Scale a generated token's row by 1: the text stays, that token's row is now an override.
    const target = plain[2].id;
    const scaled = tiersOf(
      await readAllEvents(
        await post(`${worker.url}/v1/completions`, {
          model: MODEL,
          prompt: PROMPT,
          ...sampling,
          stream: true,
          flexmem: { provenance: true, edits: [{ token: target, op: 'scale', factor: 1 }] },
        }),
      ),
    );
    expect(scaled.map((t) => t.id)).toEqual(plain.map((t) => t.id));
    for (const t of scaled.slice(0, -1)) expect(t.tier === 'override', `position ${t.position}`).toBe(t.id === target);

    // The same without streaming, on a patch of that token: its row comes from the patch.
    const file = join(dir.path, 'identity.json');
    writeFileSync(file, JSON.stringify({ edits: [{ token: target, op: 'scale', factor: 1 }] }));
    await publishPatch(worker.bucket, baseVersion, file, 'identity');
    const { body } = await completion('identity', { flexmem: { provenance: true } });
    const tokens: { id: number; tier: string | null }[] = body.flexmem.tokens[0];
    expect(tokens.map((t) => t.id)).toEqual(plain.map((t) => t.id));
    for (const t of tokens.slice(0, -1)) expect(t.tier === 'patch').toBe(t.id === target);
    expect(tokens.at(-1)!.tier).toBeNull();
  });
});
