import type { Random } from '../util/random.ts';

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep the k most likely tokens (0 = all). */
  topK: number;
  /** Keep the smallest set of tokens whose probability sums to at least p (1 = all). */
  topP: number;
}

/** Picks the next token from one position's logits. Deterministic for a given Random state. */
export function sampleToken(logits: Float32Array, options: SamplingOptions, rng: Random): number {
  if (options.temperature === 0) return argmax(logits);
  let candidates = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  if (options.topK > 0) candidates = candidates.slice(0, options.topK);
  // softmax(logits / T) over the candidates, stable with the max subtracted.
  const top = logits[candidates[0]];
  const weights = candidates.map((id) => Math.exp((logits[id] - top) / options.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let kept = candidates.length;
  if (options.topP < 1) {
    let cumulative = 0;
    kept = candidates.findIndex((_, i) => (cumulative += weights[i] / total) >= options.topP) + 1 || candidates.length;
  }
  const keptTotal = weights.slice(0, kept).reduce((a, b) => a + b, 0);
  let r = rng.next() * keptTotal;
  for (let i = 0; i < kept; i++) {
    r -= weights[i];
    if (r < 0) return candidates[i];
  }
  return candidates[kept - 1];
}

export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** log softmax(logits)[target], computed stably. */
export function logProbability(logits: Float32Array, target: number): number {
  return logits[target] - logSumExp(logits);
}

/** The k most likely tokens with their log-probabilities, most likely first. */
export function topLogProbabilities(logits: Float32Array, k: number): { id: number; logprob: number }[] {
  const norm = logSumExp(logits);
  const top: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    if (top.length < k || logits[i] > logits[top[top.length - 1]]) {
      top.push(i);
      top.sort((a, b) => logits[b] - logits[a] || a - b);
      if (top.length > k) top.pop();
    }
  }
  return top.map((id) => ({ id, logprob: logits[id] - norm }));
}

function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return max + Math.log(sum);
}
