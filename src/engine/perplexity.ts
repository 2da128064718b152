import type { Decoder } from './decoder.ts';
import { logProbability } from './sampler.ts';

export interface PerplexityResult {
  perplexity: number;
  /** Mean negative log-likelihood per predicted token (nats). */
  meanNll: number;
  predictedTokens: number;
}

/**
 * Perplexity of a token sequence: the text is cut into windows of the model's context length
 * (non-overlapping); within a window every token after the first is predicted from all tokens
 * before it. Each window is fed in chunks through the KV cache, as serving would.
 */
export async function perplexity(decoder: Decoder, ids: readonly number[], chunk = 64): Promise<PerplexityResult> {
  const V = decoder.config.vocab_size;
  const window = decoder.config.max_position_embeddings;
  let nll = 0;
  let predicted = 0;
  for (let start = 0; start + 1 < ids.length; start += window) {
    const tokens = ids.slice(start, start + window);
    const state = decoder.start();
    for (let c = 0; c < tokens.length; c += chunk) {
      const part = tokens.slice(c, c + chunk);
      const logits = await decoder.step(state, part);
      for (let i = 0; i < part.length; i++) {
        const target = tokens[c + i + 1];
        if (target === undefined) break;
        nll -= logProbability(logits.subarray(i * V, (i + 1) * V), target);
        predicted++;
      }
    }
  }
  const meanNll = nll / predicted;
  return { perplexity: Math.exp(meanNll), meanNll, predictedTokens: predicted };
}
