/**
 * Sampling in real workerd, and against `flexmem run`: seeds, top_k and top_p. Every claim that
 * two outputs are equal is paired with a control showing the same request can produce another
 * output, so the equality is not the trivial one of a setting that is ignored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-flex';
const dir = tempDir();
let worker: RunningWorker;
let bundle: string;

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
  worker = await startWorker();
  await serveBundle(worker, bundle, MODEL);
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

const prompt = 'We hold these truths';
const MAX_TOKENS = 16;
async function call(path: string, body: object): Promise<Record<string, any>> {
  const response = await post(`${worker.url}${path}`, { model: MODEL, max_tokens: MAX_TOKENS, ...body });
  const json = await response.json();
  expect(response.status, JSON.stringify(json)).toBe(200);
  return json;
}
const text = async (body: object): Promise<string> => (await call('/v1/completions', { prompt, ...body })).choices[0].text;

describe('seed', () => {
  it('the same seed gives the same text, other seeds other texts', async () => {
    const sampled = (seed: number) => text({ temperature: 1, seed });
    const first = await sampled(11);
    expect(await sampled(11)).toBe(first);
    const others = [await sampled(12), await sampled(13)];
    expect(others).not.toContain(first);
    expect(others[0]).not.toBe(others[1]);
  });

  it('gives the same text in `flexmem run` as in the worker, with and without top_k', async () => {
    const cli = async (...args: string[]) => {
      const result = await flexmemAsync(['run', bundle, '--prompt', prompt, '--max-tokens', String(MAX_TOKENS), ...args]);
      expect(result.status, result.stderr).toBe(0);
      return result.stdout;
    };
    const [plain, topK] = await Promise.all([
      cli('--temperature', '1', '--seed', '5'),
      cli('--temperature', '0.7', '--top-k', '40', '--seed', '5'),
    ]);
    const fromWorker = await text({ temperature: 1, seed: 5 });
    expect(plain).toBe(`${prompt}${fromWorker}\n`);
    expect(topK).toBe(`${prompt}${await text({ temperature: 0.7, top_k: 40, seed: 5 })}\n`);
    // Controls: seed 5's text is not every seed's (`flexmem run` ignoring --seed would print seed 0's),
    // and top_k changed the draw. (tests/build.test.ts checks that the CLI's seeds differ.)
    expect(fromWorker).not.toBe(await text({ temperature: 1, seed: 0 }));
    expect(fromWorker).not.toBe(await text({ temperature: 1, seed: 6 }));
    expect(topK).not.toBe(plain);
  });
});

describe('top_k and top_p', () => {
  let greedy: string;
  beforeAll(async () => {
    greedy = await text({ temperature: 0 });
  });

  it('top_k = 1 samples the most likely token: greedy, whatever the seed', async () => {
    for (const seed of [1, 2]) expect(await text({ temperature: 1, top_k: 1, seed })).toBe(greedy);
  });

  it('a tiny top_p keeps only the most likely token: greedy, whatever the seed', async () => {
    for (const seed of [1, 2]) expect(await text({ temperature: 1, top_p: 1e-6, seed })).toBe(greedy);
  });

  it('control: temperature 1 with neither, or with a large top_k or top_p, is not greedy for these seeds', async () => {
    for (const seed of [1, 2]) {
      expect(await text({ temperature: 1, seed })).not.toBe(greedy);
      expect(await text({ temperature: 1, top_k: 400, seed })).not.toBe(greedy);
      expect(await text({ temperature: 1, top_p: 0.9, seed })).not.toBe(greedy);
    }
  });

  it('top_k = 2 draws every token from the two most likely; without it, some token is not', async () => {
    /** For each generated token, whether it is one of the two most likely (logprobs of the raw distribution, by bytes). */
    const inTopTwo = async (body: object) => {
      const answer = await call('/v1/chat/completions', {
        messages: [{ role: 'user', content: prompt }],
        logprobs: true,
        top_logprobs: 5,
        ...body,
      });
      const tokens: { bytes: number[]; top_logprobs: { bytes: number[] }[] }[] = answer.choices[0].logprobs.content;
      expect(tokens).toHaveLength(MAX_TOKENS);
      return {
        text: answer.choices[0].message.content as string,
        inTop: tokens.map((t) => t.top_logprobs.slice(0, 2).some((a) => a.bytes.join() === t.bytes.join())),
      };
    };
    const greedyChat = (await inTopTwo({ temperature: 0 })).text;
    for (const seed of [1, 2, 3]) {
      const topTwo = await inTopTwo({ temperature: 1.5, top_k: 2, seed });
      expect(topTwo.inTop.every(Boolean)).toBe(true);
      expect(topTwo.text).not.toBe(greedyChat); // it did sample: not only the first of the two
    }
    expect((await inTopTwo({ temperature: 1.5, seed: 1 })).inTop.every(Boolean)).toBe(false);
  });
});
