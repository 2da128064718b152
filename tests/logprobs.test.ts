/**
 * The logprobs the API reports, against an oracle: the same bundle opened with the flexmem
 * engine (cli/local-bundle.ts, onnxruntime-node), its decoder run step by step on the prompt and
 * the tokens the API says it generated, and log_softmax of each step's raw logits computed here
 * in float64. Every reported log-probability must match to 1e-4, and the reported alternatives
 * must be the k most likely tokens. The logprobs are those of the model's raw distribution
 * (before temperature, bias and penalties, as vLLM reports them), so the same oracle holds for
 * sampled, biased and penalised requests. Controls: the same comparison against unnormalised
 * logits (logit - max), against the temperature-scaled distribution and against the next
 * position's distribution must fail.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import { renderChat } from '../src/api/chat-template.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { within } from './helpers/deadline.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-meki';
const TOLERANCE = 1e-4;
const dir = tempDir();
let worker: RunningWorker;
let local: LocalBundle;
/** Token id by its exact bytes (hex): how the chat shape's `bytes` name a token. */
const idByBytes = new Map<string, number>();

beforeAll(async () => {
  const bundle = await buildTinyBundle(dir.path, 'meki', { reference: false });
  [worker, local] = await Promise.all([startWorker(), openLocalBundle(bundle)]);
  await serveBundle(worker, bundle, MODEL);
  for (let id = 0; id < local.manifest.config.vocab_size; id++) {
    const key = Buffer.from(local.tokenizer.tokenBytes(id)).toString('hex');
    expect(idByBytes.has(key), `two tokens with the bytes ${key}`).toBe(false);
    idByBytes.set(key, id);
  }
});
afterAll(async () => {
  await Promise.all([worker?.dispose(), local?.core.close()]);
  dir.remove();
});

/** One generated token as the API reports it, with ids resolved. */
interface Reported {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** A distribution over the vocabulary at one position, float64. */
type Distribution = Float64Array;

const logSoftmax = (logits: Float32Array, temperature = 1): Distribution => {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v / temperature);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v / temperature - max);
  const norm = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v / temperature - norm);
};
const distribution =
  (temperature = 1) =>
  (logits: Float32Array) =>
    logSoftmax(logits, temperature);
const idsOf = (reported: Reported[]) => reported.map((t) => t.id);
/** The control: logits shifted by their max, not normalised. */
const logitMinusMax = (logits: Float32Array): Distribution => {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  return Float64Array.from(logits, (v) => v - max);
};

/** The raw logits of every generated position: the decoder stepped over the prompt, then over each reported token. */
async function oracleLogits(promptIds: number[], generated: number[]): Promise<Float32Array[]> {
  const { decoder } = local;
  const V = local.manifest.config.vocab_size;
  const state = decoder.start();
  let logits = (await decoder.step(state, promptIds)).slice((promptIds.length - 1) * V, promptIds.length * V);
  const positions = [logits];
  for (const id of generated.slice(0, -1)) {
    logits = (await decoder.step(state, [id])).slice(0, V);
    positions.push(logits);
  }
  return positions;
}

/**
 * The largest difference between what the API reports and `expected` (a distribution per
 * position): each token's logprob, each alternative's, and the alternatives' values against the
 * k largest of the distribution, in order. Also fails (Infinity) unless the alternatives are k
 * distinct tokens.
 */
function largestError(reported: Reported[], expected: Distribution[], k: number): number {
  let error = 0;
  reported.forEach((token, i) => {
    const p = expected[i];
    error = Math.max(error, Math.abs(token.logprob - p[token.id]));
    if (token.top.length !== k || new Set(token.top.map((t) => t.id)).size !== k) error = Infinity;
    const largest = [...p].sort((a, b) => b - a).slice(0, k);
    token.top.forEach((alt, j) => {
      error = Math.max(error, Math.abs(alt.logprob - p[alt.id]), Math.abs(alt.logprob - largest[j]));
    });
  });
  return error;
}

const chatPromptIds = (content: string) =>
  local.tokenizer.encode(renderChat([{ role: 'user', content }], local.manifest.chatTemplate ?? undefined));

/** A chat logprobs `content` entry as reported, with ids from its bytes. */
const fromChat = (entry: { bytes: number[]; logprob: number; top_logprobs: { bytes: number[]; logprob: number }[] }): Reported => {
  const id = (bytes: number[]) => {
    const found = idByBytes.get(Buffer.from(bytes).toString('hex'));
    expect(found, `no token has the bytes ${bytes}`).toBeDefined();
    return found!;
  };
  return { id: id(entry.bytes), logprob: entry.logprob, top: entry.top_logprobs.map((t) => ({ id: id(t.bytes), logprob: t.logprob })) };
};

describe('logprobs against log_softmax of the decoder', () => {
  it('greedy chat: every token and its 5 alternatives, to 1e-4; the controls fail', async ({ annotate }) => {
    const content = 'Tell me about the Congress.';
    const response = await post(`${worker.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content }],
      max_tokens: 16,
      temperature: 0,
      logprobs: true,
      top_logprobs: 5,
    });
    expect(response.status).toBe(200);
    const body = await response.json();
    const reported = (body.choices[0].logprobs.content as Parameters<typeof fromChat>[0][]).map(fromChat);
    expect(reported).toHaveLength(body.usage.completion_tokens);
    expect(reported.length).toBeGreaterThan(1);
    const logits = await oracleLogits(chatPromptIds(content), idsOf(reported));
    const errors = {
      logSoftmax: largestError(reported, logits.map(distribution()), 5),
      // Controls: unnormalised logits, and every position's distribution taken one position late.
      logitMinusMax: largestError(reported, logits.map(logitMinusMax), 5),
      nextPosition: largestError(reported.slice(0, -1), logits.slice(1).map(distribution()), 5),
    };
    await annotate(`largest differences over ${reported.length} tokens: ${JSON.stringify(errors)}`);
    expect(errors.logSoftmax).toBeLessThanOrEqual(TOLERANCE);
    expect(errors.logitMinusMax).toBeGreaterThan(100 * TOLERANCE);
    expect(errors.nextPosition).toBeGreaterThan(100 * TOLERANCE);
    // Greedy and unbiased: each token is the most likely one.
    for (const token of reported) expect(token.id).toBe(token.top[0].id);
  });

  it('sampled, biased and penalised chat streams of two choices: still the raw distribution; the temperature-scaled one fails', async ({
    annotate,
  }) => {
    const content = 'What did the President say?';
    const temperature = 1.5;
    const bias = local.tokenizer.encode(' the')[0];
    const events = await within(
      60_000,
      'the stream',
      post(`${worker.url}/v1/chat/completions`, {
        model: MODEL,
        messages: [{ role: 'user', content }],
        max_tokens: 12,
        temperature,
        top_p: 0.95,
        seed: 7,
        n: 2,
        presence_penalty: 1.2,
        frequency_penalty: 0.8,
        logit_bias: { [bias]: 4 },
        logprobs: true,
        top_logprobs: 3,
        stream: true,
      }).then(readAllEvents),
    );
    const byChoice: Reported[][] = [[], []];
    for (const event of events) {
      if (event === '[DONE]') continue;
      const choice = event.choices[0];
      for (const entry of choice?.logprobs?.content ?? []) byChoice[choice.index].push(fromChat(entry));
    }
    expect(byChoice[0].map((t) => t.id)).not.toEqual(byChoice[1].map((t) => t.id)); // two samples, two sequences
    const promptIds = chatPromptIds(content);
    for (const reported of byChoice) {
      expect(reported.length).toBeGreaterThan(1);
      const logits = await oracleLogits(promptIds, idsOf(reported));
      const raw = largestError(reported, logits.map(distribution()), 3);
      const scaled = largestError(reported, logits.map(distribution(temperature)), 3);
      await annotate(
        `a choice of ${reported.length} tokens: largest difference ${raw}, ${scaled} from the temperature-scaled distribution (control)`,
      );
      expect(raw).toBeLessThanOrEqual(TOLERANCE);
      expect(scaled).toBeGreaterThan(100 * TOLERANCE);
    }
  });

  it('sampled completions in the legacy shape: token_logprobs and top_logprobs by token text, to 1e-4', async () => {
    const prompt = 'The President said';
    const response = await post(`${worker.url}/v1/completions`, {
      model: MODEL,
      prompt,
      max_tokens: 16,
      temperature: 0.8,
      seed: 3,
      logprobs: 5,
    });
    expect(response.status).toBe(200);
    const { tokens, token_logprobs, top_logprobs } = (await response.json()).choices[0].logprobs as {
      tokens: string[];
      token_logprobs: number[];
      top_logprobs: Record<string, number>[];
    };
    const V = local.manifest.config.vocab_size;
    const textOf = (id: number) => new TextDecoder().decode(local.tokenizer.tokenBytes(id));
    // The legacy shape names tokens by text, which several byte tokens share (U+FFFD): at each
    // position the generated token is the one with that text whose oracle value is the one reported.
    const { decoder } = local;
    const state = decoder.start();
    const promptIds = local.tokenizer.encode(prompt);
    let logits = (await decoder.step(state, promptIds)).slice((promptIds.length - 1) * V, promptIds.length * V);
    for (let i = 0; i < tokens.length; i++) {
      const p = logSoftmax(logits);
      const candidates = [...p.keys()].filter((id) => textOf(id) === tokens[i] && Math.abs(p[id] - token_logprobs[i]) <= TOLERANCE);
      expect(candidates, `token ${i} (${JSON.stringify(tokens[i])}, ${token_logprobs[i]})`).toHaveLength(1);
      // The alternatives are the five most likely tokens, by text (a text shared by two of them shows once).
      const top5 = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, 5);
      expect(new Set(Object.keys(top_logprobs[i]))).toEqual(new Set(top5.map(textOf)));
      for (const [text, value] of Object.entries(top_logprobs[i]))
        expect(
          top5.some((id) => textOf(id) === text && Math.abs(p[id] - value) <= TOLERANCE),
          `alternative ${JSON.stringify(text)}`,
        ).toBe(true);
      logits = (await decoder.step(state, [candidates[0]])).slice(0, V);
    }
  });
});
