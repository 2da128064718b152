/**
 * Memory tiers and table dtypes in real workerd: the Cache API tier serving rows on its own, and
 * int8 tables decoded by the worker exactly as `flexmem run` decodes them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle } from '../cli/local-bundle.ts';
import { flexmemAsync } from './helpers/cli.ts';
import { until } from './helpers/deadline.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const dir = tempDir();
const prompt = 'Farmers came in from the country, clerks left their desks';
let f32: string;
let int8: string;
/** No isolate rows at all (no hot set, no LRU): every row comes from the Cache API or the origin. */
let cached: RunningWorker;
/** The same without the Cache API: the control. */
let uncached: RunningWorker;
/** The log-probabilities of the greedy tokens of `prompt` under the int8 bundle, by `flexmem run`'s engine. */
const localInt8Logprobs: number[] = [];

beforeAll(async () => {
  f32 = await buildTinyBundle(dir.path, 'flex', { reference: false, dtype: 'f32' }, 'flex-f32');
  int8 = await buildTinyBundle(dir.path, 'flex', { reference: false, dtype: 'int8' }, 'flex-int8');
  // The local engine (onnxruntime-node) over the int8 bundle, greedy, with the model's log-probabilities:
  // computed before the workers start, so its synchronous work never stalls a client's keep-alive connection.
  const local = await openLocalBundle(int8);
  const { deltas } = local.core.generate(local.bundle, {
    promptIds: local.tokenizer.encode(prompt),
    maxTokens: 12,
    sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
    stop: [],
    logprobs: 0,
  });
  for await (const delta of deltas) localInt8Logprobs.push(...delta.tokens.map((t) => t.logprob));
  const noIsolate = { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0' };
  [cached, uncached] = await Promise.all([
    startWorker({ vars: noIsolate }),
    startWorker({ vars: { ...noIsolate, USE_CACHE_API: 'false' } }),
  ]);
  for (const worker of [cached, uncached]) {
    await serveBundle(worker, f32, 'f32');
    await serveBundle(worker, int8, 'int8');
  }
});
afterAll(async () => {
  await Promise.all([cached?.dispose(), uncached?.dispose()]);
  dir.remove();
});

async function complete(worker: RunningWorker, model: string, extra: object = {}): Promise<Record<string, any>> {
  const response = await post(`${worker.url}/v1/completions`, { model, prompt, max_tokens: 6, temperature: 0, ...extra });
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body;
}

describe('the Cache API tier', () => {
  it('serves every row of a repeated request, with no isolate tier and no origin read', async () => {
    const first = await complete(cached, 'f32');
    // Cold: rows come from the origin (and the cache, for pages an earlier step of it already wrote), none from the isolate.
    const cold = first.flexmem.timing;
    expect(cold.rows.origin).toBeGreaterThan(0);
    expect(cold.rows.origin + cold.rows.cache).toBe(cold.row_lookups);
    // Pages are written to the cache in the background (waitUntil): ask again until they are all there.
    let again = first;
    await until(
      async () => {
        again = await complete(cached, 'f32');
        return again.flexmem.timing.rows.origin === 0;
      },
      'the Cache API never served every row',
      { timeoutMs: 15_000, everyMs: 50 },
    );
    const t = again.flexmem.timing;
    expect(t.rows).toEqual({ patch: 0, hot: 0, lru: 0, cache: t.row_lookups, kv: 0, origin: 0 });
    expect(t.row_lookups).toBeGreaterThan(0);
    expect(t.origin_requests).toBe(0);
    expect(t.origin_bytes).toBe(0);
    expect(again.choices[0].text).toBe(first.choices[0].text);
  });

  it('control: without the Cache API, the same repeated request reads every row from the origin again', async () => {
    const first = await complete(uncached, 'f32');
    await new Promise((resolve) => setTimeout(resolve, 300)); // time for background work, were there any
    const again = await complete(uncached, 'f32');
    const t = again.flexmem.timing;
    expect(t.rows).toEqual({ patch: 0, hot: 0, lru: 0, cache: 0, kv: 0, origin: t.row_lookups });
    expect(t.rows.origin).toBe(first.flexmem.timing.rows.origin);
    expect(t.origin_requests).toBeGreaterThan(0);
    expect(again.choices[0].text).toBe(first.choices[0].text);
  });
});

describe('int8 tables', () => {
  it('are served by the worker token for token as `flexmem run` serves them', async () => {
    const served = await complete(uncached, 'int8', { max_tokens: 24 });
    expect(served.flexmem.timing.rows.origin).toBeGreaterThan(0);
    const cli = await flexmemAsync(['run', int8, '--prompt', prompt, '--max-tokens', '24', '--temperature', '0']);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toBe(`${prompt}${served.choices[0].text}\n`);
  });

  it("give the worker the local engine's log-probabilities, which are not the f32 tables' (the comparison can fail)", async () => {
    const logprobsOf = async (worker: RunningWorker, model: string) =>
      (await complete(worker, model, { max_tokens: 12, logprobs: 0 })).choices[0].logprobs.token_logprobs as number[];
    const expected = localInt8Logprobs;
    const [servedInt8, servedF32] = await Promise.all([logprobsOf(uncached, 'int8'), logprobsOf(uncached, 'f32')]);
    const maxDifference = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
    expect(servedInt8).toHaveLength(12);
    expect(maxDifference(servedInt8, expected)).toBeLessThan(1e-4);
    // The f32 tables give the same tokens with log-probabilities a quantization error away: int8 rows decoded right, but int8.
    expect((await complete(uncached, 'f32', { max_tokens: 12 })).choices[0].text).toBe(
      (await complete(uncached, 'int8', { max_tokens: 12 })).choices[0].text,
    );
    expect(maxDifference(servedF32, servedInt8)).toBeGreaterThan(1e-4);
    expect(maxDifference(servedF32, servedInt8)).toBeLessThan(0.1); // measured: 0.014
    // And through the Cache API tier, the int8 rows decode the same.
    expect(maxDifference(await logprobsOf(cached, 'int8'), expected)).toBeLessThan(1e-4);
  });
});
