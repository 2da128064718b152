import type { Decoder } from './decoder.ts';
import { logProbability } from './sampler.ts';

export interface PerplexityResult {
  perplexity: number;
  /** Mean negative log-likelihood per predicted token (nats). */
  meanNll: number;
  predictedTokens: number;
  windows: number;
}

/**
 * Perplexity of a token sequence, with non-overlapping windows of the model's context C: window
 * i reads tokens [iC, iC + C) and predicts tokens [iC + 1, iC + C + 1), so every token but the
 * first is predicted exactly once, from the tokens of its window before it (the protocol of
 * training/train.py). Each window is fed in chunks through the KV cache, as serving would.
 */
export async function perplexity(
  decoder: Decoder,
  ids: readonly number[],
  options: { chunk?: number; maxWindows?: number } = {},
): Promise<PerplexityResult> {
  const V = decoder.config.vocab_size;
  const C = decoder.config.max_position_embeddings;
  const chunk = options.chunk ?? 64;
  let nll = 0;
  let predicted = 0;
  let windows = 0;
  for (let start = 0; start + 1 < ids.length && windows < (options.maxWindows ?? Infinity); start += C, windows++) {
    const inputs = ids.slice(start, Math.min(start + C, ids.length - 1));
    const state = decoder.start();
    for (let c = 0; c < inputs.length; c += chunk) {
      const part = inputs.slice(c, c + chunk);
      const logits = await decoder.step(state, part);
      part.forEach((_, i) => {
        nll -= logProbability(logits.subarray(i * V, (i + 1) * V), ids[start + c + i + 1]);
        predicted++;
      });
    }
  }
  const meanNll = nll / predicted;
  return { perplexity: Math.exp(meanNll), meanNll, predictedTokens: predicted, windows };
}
