/**
 * Updates without redeploy: a running worker picks up a published version, a rollback and a
 * knowledge patch within its pointer TTL; under concurrent streams during the flips every
 * response uses exactly one version from first to last token.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { publishPatch } from '../cli/patch.ts';
import { publishBundle } from '../cli/publish.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { bundleKey } from '../src/storage/object-store.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { buildTinyBundle, tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'live';
const dir = tempDir();
let worker: RunningWorker;
let v1: string;
let v2: string;

beforeAll(async () => {
  worker = await startWorker({ vars: { POINTER_TTL_SECONDS: '1' } });
  const bundle1 = await buildTinyBundle(dir.path, 'flex', { reference: false }, 'v1');
  const checkpoint2 = join(dir.path, 'checkpoint-2');
  writeTinyCheckpoint(checkpoint2, 'flex', { rope_theta: 777 });
  await buildBundle(checkpoint2, join(dir.path, 'v2'), { dtype: 'f32', reference: false, progress: false });
  v1 = (await publishBundle(worker.bucket, bundle1, { model: MODEL })).version;
  v2 = (await publishBundle(worker.bucket, join(dir.path, 'v2'))).version;
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

const complete = async (prompt: string) => {
  const response = await post(`${worker.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 16, temperature: 0 });
  const body = await response.json();
  return { version: response.headers.get('x-flexmem-bundle-version')!, text: body.choices[0].text as string };
};

/** Asks until the worker serves `version`; the pointer TTL is 1 s, so a few seconds at most. */
async function until(version: string): Promise<number> {
  for (let attempt = 1; attempt <= 100; attempt++) {
    if ((await complete('The')).version === version) return attempt;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the worker never served ${version}`);
}

describe('without redeploy', () => {
  it('serves a newly published version, then a rollback, within the pointer TTL', async () => {
    expect((await complete('The')).version).toBe(v1);
    const catalog = new Catalog(worker.bucket);
    await catalog.setPointer(MODEL, v2);
    expect(await until(v2)).toBeLessThan(60);
    await catalog.setPointer(MODEL, v1);
    expect(await until(v1)).toBeLessThan(60);
  });

  it('under concurrent streams during flips: no failures, one version per response, tokens of that version', async () => {
    const prompt = 'The President said';
    const expected = new Map<string, string>();
    const catalog = new Catalog(worker.bucket);
    for (const version of [v1, v2]) {
      await catalog.setPointer(MODEL, version);
      await until(version);
      expected.set(version, (await complete(prompt)).text);
    }
    expect(expected.get(v1)).not.toBe(expected.get(v2));

    let flipping = true;
    const flips = (async () => {
      for (let i = 0; flipping; i++) {
        await catalog.setPointer(MODEL, i % 2 ? v1 : v2);
        await new Promise((resolve) => setTimeout(resolve, 400));
      }
    })();
    const stream = async () => {
      const response = await post(`${worker.url}/v1/completions`, { model: MODEL, prompt, max_tokens: 16, temperature: 0, stream: true });
      expect(response.status).toBe(200);
      const chunks = (await readAllEvents(response)).filter((e) => e !== '[DONE]') as Record<string, any>[];
      const versions = new Set(chunks.map((c) => c.system_fingerprint));
      expect(versions.size).toBe(1);
      const version = chunks[0].flexmem.bundle_version as string;
      expect([...versions][0]).toBe(`flexmem-${version}`);
      expect(response.headers.get('x-flexmem-bundle-version')).toBe(version);
      expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(expected.get(version));
      return version;
    };
    // Rounds of four concurrent streams until the flips have shown both versions (bounded in time:
    // the pointer TTL is 1 s and the pointer flips every 0.4 s).
    const served: string[] = [];
    const deadline = Date.now() + 20_000;
    for (let round = 0; Date.now() < deadline && (round < 6 || new Set(served).size < 2); round++)
      served.push(...(await Promise.all(Array.from({ length: 4 }, stream))));
    flipping = false;
    await flips;
    expect(new Set(served)).toEqual(new Set([v1, v2]));
  });
});

describe('a knowledge patch', () => {
  it('changes outputs of prompts with the edited token, leaves others identical, and rolls back', async () => {
    const catalog = new Catalog(worker.bucket);
    await catalog.setPointer(MODEL, v1);
    await until(v1);
    const tokenizer = new TextTokenizer(JSON.parse(new TextDecoder().decode((await worker.bucket.get(bundleKey(v1, 'tokenizer.json')))!)));
    const withToken = 'The Congress met in the autumn';
    const without = 'We hold these truths';
    const before = { withToken: await complete(withToken), without: await complete(without) };
    // Edit a token of the first prompt that neither the other prompt nor its continuation uses.
    const untouched = new Set(tokenizer.encode(without + before.without.text));
    const token = tokenizer.encode(withToken).find((id) => !untouched.has(id))!;
    expect(token).toBeDefined();
    const edits = join(dir.path, 'edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ token, op: 'scale', factor: -8 }] }));
    const patch = await publishPatch(worker.bucket, v1, edits, MODEL);
    await until(patch.version);

    const after = { withToken: await complete(withToken), without: await complete(without) };
    expect(after.withToken.text).not.toBe(before.withToken.text);
    expect(after.without.text).toBe(before.without.text);
    const timing = (await (await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: withToken, max_tokens: 1 })).json()).flexmem
      .timing;
    expect(timing.rows.patch).toBe(1);

    await catalog.setPointer(MODEL, v1);
    await until(v1);
    expect((await complete(withToken)).text).toBe(before.withToken.text);
  });
});
