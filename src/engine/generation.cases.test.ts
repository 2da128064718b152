/** The generation loop's ends: context, end-of-sequence, stops, cancellation, and what each delta carries. */
import { describe, expect, it } from 'vitest';
import type { Decoder, DecoderState } from './decoder.ts';
import { generate, GenerationCounters, type GenerationModel, type GenerationRequest, type TextDelta } from './generation.ts';

const V = 8;
const greedy = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/**
 * A stand-in decoder that counts: the most likely next token is the successor of the last one
 * (mod V). Like the real one it refuses a sequence past its context, and it checks that every
 * step continues the KV cache of the step before (the cache records its sequence's length).
 */
function countingModel(context = 64, extra: Partial<GenerationModel> = {}) {
  const steps: number[][] = [];
  const decoder = {
    config: { vocab_size: V, max_position_embeddings: context },
    start: (): DecoderState => ({ length: 0, past: {} }),
    finish: () => {},
    async step(state: DecoderState, ids: readonly number[], positions: 'all' | 'last' = 'all') {
      const cached = (state.past as unknown as { length?: number }).length ?? 0;
      if (cached !== state.length) throw new Error(`KV cache of ${cached} tokens for a sequence of ${state.length}`);
      if (state.length + ids.length > context) throw new Error('past the context');
      steps.push([...ids]);
      state.length += ids.length;
      (state.past as unknown as { length: number }).length = state.length;
      const logits = new Float32Array(ids.length * V);
      ids.forEach((id, t) => {
        logits[t * V + ((id + 1) % V)] = 2;
        logits[t * V + ((id + 2) % V)] = 1;
      });
      return positions === 'last' ? logits.subarray(logits.length - V) : logits;
    },
  } as unknown as Decoder;
  // Token 0 decodes to nothing; the rest to letters.
  const decode = (ids: number[]) => ids.map((i) => (i === 0 ? '' : String.fromCharCode(96 + i))).join('');
  return { model: { decoder, decode, ...extra } as GenerationModel, steps };
}

const request = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({
  promptIds: [1, 2, 3],
  maxTokens: 6,
  sampling: greedy,
  stop: [],
  logprobs: null,
  ...over,
});

async function collect(model: GenerationModel, req: GenerationRequest, counters = new GenerationCounters()) {
  const deltas: TextDelta[] = [];
  const it = generate(model, req, counters);
  let next = await it.next();
  for (; !next.done; next = await it.next()) deltas.push(next.value);
  return { deltas, text: deltas.map((d) => d.text).join(''), result: next.value };
}

describe('generate: where a generation ends', () => {
  it('continues from the last prompt token, and only non-empty text becomes a delta', async () => {
    const { model, steps } = countingModel();
    const { deltas, text, result } = await collect(model, request({ maxTokens: 6 }));
    // 4 5 6 7 0 1: token 0 decodes to nothing.
    expect(text).toBe('defga');
    expect(result.choices).toEqual([{ finishReason: 'length', completionTokens: 6 }]);
    expect(steps).toEqual([[1, 2, 3], [4], [5], [6], [7], [0]]);
    for (const d of deltas.filter((d) => !d.finish)) expect(d.text).not.toBe('');
    expect(deltas.at(-1)!.finish).toEqual({ finishReason: 'length', completionTokens: 6 });
    for (const d of deltas) expect(d.tokens).toEqual([]);
  });

  it('ends with length when the next token would not fit the context', async () => {
    const { model } = countingModel(6);
    const { result, text } = await collect(model, request({ maxTokens: 100 }));
    // Prompt 3 + 3 fed tokens fill the context of 6; the 4th token is sampled but never fed.
    expect(result.choices).toEqual([{ finishReason: 'length', completionTokens: 4 }]);
    expect(text).toBe('defg');
  });

  it('gives each choice its own copy of the prompt cache', async () => {
    const { model } = countingModel();
    const { result } = await collect(model, request({ n: 2, sampling: { temperature: 1, topK: 0, topP: 1, seed: 1 } }));
    expect(result.choices).toHaveLength(2);
  });

  it('stops at the end-of-sequence token, which is neither emitted nor counted', async () => {
    const { model, steps } = countingModel(64, { eosTokenId: 6 });
    const counters = new GenerationCounters();
    const { text, result, deltas } = await collect(model, request({ maxTokens: 10 }), counters);
    expect(text).toBe('de');
    expect(result.choices).toEqual([{ finishReason: 'stop', completionTokens: 2 }]);
    expect(deltas.at(-1)!.finish).toEqual({ finishReason: 'stop', completionTokens: 2 });
    expect(counters.tokensGenerated).toBe(2);
    expect(steps).toHaveLength(3);
  });

  it('stops at a stop sequence at once: no token after it is generated', async () => {
    const { model, steps } = countingModel();
    const { text, result } = await collect(model, request({ maxTokens: 10, stop: ['ef'] }));
    expect(text).toBe('d');
    expect(result.choices).toEqual([{ finishReason: 'stop', completionTokens: 3 }]);
    expect(steps).toEqual([[1, 2, 3], [4], [5]]);
  });

  it('reports no tokens without logprobs, and each token with them', async () => {
    const { model } = countingModel();
    const without = await collect(model, request({ maxTokens: 3 }));
    expect(without.deltas.flatMap((d) => d.tokens)).toEqual([]);
    const withTwo = await collect(countingModel().model, request({ maxTokens: 3, logprobs: 2 }));
    const tokens = withTwo.deltas.flatMap((d) => d.tokens);
    expect(tokens.map((t) => t.id)).toEqual([4, 5, 6]);
    expect(tokens[0].top.map((t) => t.id)).toEqual([4, 5]);
  });
});

describe('generate: cancellation', () => {
  it('lets other tasks run between tokens, so an abort from a timer stops it', async () => {
    const { model } = countingModel(1000);
    const controller = new AbortController();
    const counters = new GenerationCounters();
    setTimeout(() => controller.abort(), 0);
    const { result } = await collect(model, request({ maxTokens: 500, signal: controller.signal }), counters);
    expect(result.choices[0].finishReason).toBe('stop');
    expect(result.choices[0].completionTokens).toBeLessThan(500);
    expect(counters).toMatchObject({ active: 0, cancelled: 1 });
  });

  it('releases the generation the moment the signal aborts, once, even if the loop never resumes', async () => {
    const { model } = countingModel();
    const controller = new AbortController();
    const counters = new GenerationCounters();
    const it = generate(model, request({ maxTokens: 10, signal: controller.signal }), counters);
    await it.next();
    expect(counters).toMatchObject({ active: 1, cancelled: 0 });
    controller.abort();
    expect(counters).toMatchObject({ active: 0, cancelled: 1 });
    let next = await it.next();
    while (!next.done) next = await it.next();
    expect(next.value.choices[0].finishReason).toBe('stop');
    expect(counters).toMatchObject({ active: 0, cancelled: 1 });
  });

  it('counts a generation that ends normally as neither active nor cancelled', async () => {
    const counters = new GenerationCounters();
    await collect(countingModel().model, request({ maxTokens: 2, signal: new AbortController().signal }), counters);
    expect(counters).toMatchObject({ active: 0, cancelled: 0, tokensGenerated: 2 });
  });
});
