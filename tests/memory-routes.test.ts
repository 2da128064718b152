/**
 * The inspector routes of the worker (POST /v1/memory/token, /prompt, /diff) in real workerd,
 * against the inspector run in Node as `flexmem inspect` runs it (onnxruntime-node, the bundle
 * folder or the store): the same JSON (the prompt view's figures come from a forward pass of each
 * runtime, so they agree within float tolerance), and OpenAI-style errors for bad input.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { createNodeSession } from '../cli/node-session.ts';
import { publishPatch } from '../cli/patch.ts';
import { diffVersions, inspectPrompt, inspectToken, parsePromptOptions, parseTokenOptions } from '../src/inspect/index.ts';
import { createServingCore, type ServingCore } from '../src/serving/serving-core.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { get, post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-flex';
const PATCHED = 'tiny-flex-patched';
const dir = tempDir();
let worker: RunningWorker;
let local: LocalBundle;
let baseVersion: string;
let patchVersion: string;

beforeAll(async () => {
  worker = await startWorker();
  const bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
  baseVersion = await serveBundle(worker, bundle, MODEL);
  local = await openLocalBundle(bundle);
  const edits = join(dir.path, 'edits.json');
  writeFileSync(
    edits,
    JSON.stringify({
      edits: [
        { token: 5, op: 'ablate' },
        { token: 7, op: 'scale', factor: 2, layers: [1] },
      ],
    }),
  );
  patchVersion = (await publishPatch(worker.bucket, baseVersion, edits, PATCHED)).version;
});
afterAll(async () => {
  await local?.core.close();
  await worker?.dispose();
  dir.remove();
});

const ask = async (route: string, body: object) => {
  const response = await post(`${worker.url}/v1/memory/${route}`, body);
  return { status: response.status, body: await response.json() };
};
const ok = async (route: string, body: object) => {
  const { status, body: json } = await ask(route, body);
  expect(status, JSON.stringify(json)).toBe(200);
  return json;
};
const refused = async (route: string, body: object, status = 400) => {
  const answer = await ask(route, body);
  expect(answer.status, JSON.stringify(answer.body)).toBe(status);
  expect(Object.keys(answer.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  return answer.body.error as { message: string; type: string; param: string | null; code: string | null };
};

/** Every number of `actual` within `tolerance` (relative, or absolute near 0) of `expected`; everything else equal. */
function expectClose(actual: unknown, expected: unknown, tolerance: number, path = 'root'): void {
  if (typeof expected === 'number' && typeof actual === 'number') {
    expect(Math.abs(actual - expected), `${path}: ${actual} vs ${expected}`).toBeLessThanOrEqual(
      tolerance * Math.max(1, Math.abs(expected)),
    );
  } else if (expected && typeof expected === 'object') {
    expect(typeof actual, path).toBe('object');
    expect(Object.keys(actual as object).sort(), path).toEqual(Object.keys(expected).sort());
    for (const [key, value] of Object.entries(expected))
      expectClose((actual as Record<string, unknown>)[key], value, tolerance, `${path}.${key}`);
  } else expect(actual, path).toEqual(expected);
}

describe('the token view', () => {
  it.each([[{ id: 5 }], [{ token: ' the', layers: [0, 2], top: 3 }], [{ id: 300, layers: 'all' }]])(
    'is the JSON the CLI prints for %j',
    async (options) => {
      const api = await ok('token', { model: MODEL, ...options });
      const cli = await inspectToken(local.core, local.bundle, parseTokenOptions(options));
      expect(api).toEqual(JSON.parse(JSON.stringify(cli)));
      expect(api.object).toBe('flexmem.memory.token');
      expect(api.version).toBe(baseVersion);
    },
  );

  it('refuses unknown tokens, several-token text, layers out of range, and bad fields, naming what is wrong', async () => {
    const several = await refused('token', { model: MODEL, token: 'these truths are self-evident' });
    expect(several.type).toBe('invalid_request_error');
    expect(several.message).toMatch(/tokens/);
    expect((await refused('token', { model: MODEL, id: 99999 })).message).toMatch(/unknown token id 99999/);
    expect((await refused('token', { model: MODEL, id: 5, layers: [9] })).message).toMatch(/layer 9/);
    expect((await refused('token', { model: MODEL, id: 5, token: 'a' })).message).toMatch(/exactly one of/);
    expect((await refused('token', { model: MODEL, id: 5, colour: 'red' })).message).toMatch(/colour/);
    expect((await refused('token', { id: 5 })).code).toBe('missing_required_parameter');
    expect((await refused('token', { model: 'nope', id: 5 }, 404)).code).toBe('model_not_found');
    expect((await get(`${worker.url}/v1/memory/token`)).status).toBe(405);
  });
});

describe('the prompt view', () => {
  it('is the JSON the CLI prints (figures within float tolerance of onnxruntime-node)', async () => {
    const options = { prompt: 'We hold these truths', ablate: 'each-layer' };
    const api = await ok('prompt', { model: MODEL, ...options });
    const cli = JSON.parse(JSON.stringify(await inspectPrompt(local.core, local.bundle, parsePromptOptions(options))));
    expect(api.positions.map((p: { token: unknown }) => p.token)).toEqual(cli.positions.map((p: { token: unknown }) => p.token));
    expect(api.next_token.id).toBe(cli.next_token.id);
    expectClose(api, cli, 1e-3);
  });

  it('refuses an empty prompt and an ablation of a layer without memory', async () => {
    expect((await refused('prompt', { model: MODEL, prompt: '' })).message).toMatch(/empty/);
    expect((await refused('prompt', { model: MODEL, prompt: 'We hold', ablate: { layer: 9 } })).message).toMatch(/layer 9/);
  });
});

describe('the diff', () => {
  let store: ServingCore;
  beforeAll(() => {
    store = createServingCore({ origin: worker.bucket, createSession: (graph) => createNodeSession(graph), Tensor: ort.Tensor });
  });
  afterAll(() => store?.close());

  it('of the patch a model serves against its base is the JSON the CLI prints', async () => {
    const api = await ok('diff', { model: PATCHED });
    const cli = await diffVersions(store, await store.bundle(baseVersion), await store.bundle(patchVersion), {});
    expect(api).toEqual(JSON.parse(JSON.stringify(cli)));
    expect(api.from).toBe(baseVersion);
    expect(api.to).toBe(patchVersion);
    expect(api.changed.map((c: { token: { id: number } }) => c.token.id)).toEqual([5, 7]);
    // Explicit versions give the same; the other way round swaps before and after.
    expect(await ok('diff', { model: MODEL, from: baseVersion, to: patchVersion, top: 3 })).toEqual(
      JSON.parse(JSON.stringify(await diffVersions(store, await store.bundle(baseVersion), await store.bundle(patchVersion), { top: 3 }))),
    );
  });

  it('refuses a version nobody serves, a malformed id, and a base without `from`', async () => {
    const unknown = await refused('diff', { model: MODEL, from: 'f'.repeat(20), to: patchVersion }, 404);
    expect(unknown).toMatchObject({ type: 'not_found_error', param: 'from', code: 'version_not_found' });
    expect((await refused('diff', { model: MODEL, to: 'v1' })).param).toBe('to');
    expect(await refused('diff', { model: MODEL })).toMatchObject({ param: 'from', code: 'missing_required_parameter' });
    expect((await refused('diff', { model: PATCHED, limit: 0 })).message).toMatch(/limit/);
  });
});

describe('access', () => {
  const ORIGIN = 'https://app.example';
  let keyed: RunningWorker;
  beforeAll(async () => {
    keyed = await startWorker({ vars: { ALLOW_ANONYMOUS: 'false', API_KEYS: 'k-memory', CORS_ORIGINS: ORIGIN } });
    await serveBundle(keyed, join(dir.path, 'flex-bundle'), MODEL);
  });
  afterAll(() => keyed?.dispose());

  it('is the API’s: a key, CORS on refusals and answers, JSON bodies only', async () => {
    const body = JSON.stringify({ model: MODEL, id: 5 });
    const call = (headers: Record<string, string>) =>
      post(`${keyed.url}/v1/memory/token`, body, { headers: { 'content-type': 'application/json', origin: ORIGIN, ...headers } });
    const anonymous = await call({});
    expect(anonymous.status).toBe(401);
    expect((await anonymous.json()).error.code).toBe('invalid_api_key');
    expect(anonymous.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    const keyedAnswer = await call({ authorization: 'Bearer k-memory' });
    expect(keyedAnswer.status).toBe(200);
    expect(keyedAnswer.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect((await keyedAnswer.json()).token.id).toBe(5);
    expect((await call({ authorization: 'Bearer k-memory', 'content-type': 'text/plain' })).status).toBe(415);
  });
});
