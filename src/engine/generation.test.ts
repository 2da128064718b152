import { describe, expect, it } from 'vitest';
import type { Decoder, DecoderState } from './decoder.ts';
import { generate, GenerationCounters, type GenerationRequest, type TextDelta } from './generation.ts';

const V = 8;

/**
 * A stand-in decoder whose logits depend only on the last token: token 5 is always the most
 * likely (a greedy loop), 6 next; the rest are flat. It counts prefill and decode steps.
 */
function fakeModel() {
  const steps = { prefill: 0, decode: 0 };
  const decoder = {
    config: { vocab_size: V, max_position_embeddings: 64 },
    start: (): DecoderState => ({ length: 0, past: {} }),
    finish: () => {},
    async step(state: DecoderState, ids: readonly number[], positions: 'all' | 'last' = 'all') {
      steps[ids.length > 1 ? 'prefill' : 'decode']++;
      state.length += ids.length;
      const logits = new Float32Array(ids.length * V);
      for (let t = 0; t < ids.length; t++) {
        logits[t * V + 5] = 1.5;
        logits[t * V + 6] = 1;
        logits[t * V + ((ids[t] + 1) % V)] += 0.5;
      }
      return positions === 'last' ? logits.subarray(logits.length - V) : logits;
    },
  } as unknown as Decoder;
  const letters = (ids: number[]) => ids.map((i) => String.fromCharCode(97 + i)).join('');
  return { model: { decoder, decode: letters }, steps };
}

const request = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({
  promptIds: [1, 2, 3],
  maxTokens: 6,
  sampling: { temperature: 1, topK: 0, topP: 1, seed: 10 },
  stop: [],
  logprobs: null,
  ...over,
});

async function run(over: Partial<GenerationRequest> = {}, counters = new GenerationCounters()) {
  const { model, steps } = fakeModel();
  const deltas: TextDelta[] = [];
  const it = generate(model, request(over), counters);
  let next = await it.next();
  for (; !next.done; next = await it.next()) deltas.push(next.value);
  const texts = next.value.choices.map((_, i) =>
    deltas
      .filter((d) => d.index === i)
      .map((d) => d.text)
      .join(''),
  );
  return { deltas, texts, result: next.value, steps };
}

describe('generate', () => {
  it('makes n choices from one prefill; choice i is the completion of seed + i', async () => {
    const counters = new GenerationCounters();
    const three = await run({ n: 3 }, counters);
    expect(three.steps.prefill).toBe(1);
    expect(three.result.choices).toEqual(Array(3).fill({ finishReason: 'length', completionTokens: 6 }));
    for (let i = 0; i < 3; i++) expect(three.texts[i]).toBe((await run({ sampling: { ...request().sampling, seed: 10 + i } })).texts[0]);
    expect(new Set(three.texts).size).toBeGreaterThan(1);
    // They take turns, and each ends with one finish delta.
    expect(three.deltas.slice(0, 6).map((d) => d.index)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(three.deltas.filter((d) => d.finish).map((d) => d.index)).toEqual([0, 1, 2]);
    expect(counters).toEqual(Object.assign(new GenerationCounters(), { tokensGenerated: 18 }));
  });

  it('applies a presence penalty to greedy decoding, breaking its loop', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1, seed: 0 };
    expect((await run({ sampling: greedy })).texts[0]).toBe('ffffff');
    // f (5) then scores 1.5 − 2 and g (6, the successor) 1 + 0.5; then both fall below the
    // successor's 0.5 and the walk goes on through unused letters: h, a, b, c.
    expect((await run({ sampling: greedy, adjustments: { presencePenalty: 2 } })).texts[0]).toBe('fghabc');
  });

  it('never emits a token biased by −100, and reports logprobs of the raw distribution', async () => {
    const { texts, deltas } = await run({
      sampling: { temperature: 0, topK: 0, topP: 1, seed: 0 },
      adjustments: { bias: new Map([[5, -100]]) },
      logprobs: 1,
    });
    expect(texts[0]).not.toContain('f');
    const tokens = deltas.flatMap((d) => d.tokens);
    expect(tokens).toHaveLength(6);
    // The top alternative under the raw logits is still 5, which was never sampled.
    for (const t of tokens) expect(t.top[0].id).toBe(5);
  });
});
