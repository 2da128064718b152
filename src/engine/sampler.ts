import type { Random } from '../util/random.ts';

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep the k most likely tokens (0 = all). */
  topK: number;
  /** Keep the smallest set of tokens whose probability sums to at least p (1 = all). */
  topP: number;
  /** Keep the tokens with p ≥ minP · p_max, after temperature (vLLM's min_p; 0 = all). */
  minP?: number;
}

/**
 * Picks the next token from one position's logits. Deterministic for a given Random state.
 * Without top-k or top-p it draws straight from softmax(logits / T) in id order, with no sort: a
 * full sort of the vocabulary per token cost as much as a decode step (docs/BENCHMARKS.md).
 *
 * Each token's weight is w_i = exp((l_i − l_max) / T) = p_i / p_max, so min_p keeps w_i ≥ min_p;
 * it is applied before top-k and top-p, which then see the renormalised rest (vLLM's order).
 */
export function sampleToken(logits: Float32Array, options: SamplingOptions, rng: Random): number {
  if (options.temperature === 0) return argmax(logits);
  const minP = options.minP ?? 0;
  const filtered = (options.topK > 0 && options.topK < logits.length) || options.topP < 1;
  if (!filtered) return drawFromSoftmax(logits, options.temperature, minP, rng);
  // Candidate ids, most likely first.
  const candidates =
    options.topK > 0 && options.topK < logits.length
      ? topLogProbabilities(logits, options.topK).map((t) => t.id)
      : Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  let top = -Infinity;
  for (const id of candidates) top = Math.max(top, logits[id]);
  // softmax(logits / T) over the candidates, stable with the max subtracted.
  const weights = new Float64Array(candidates.length);
  let total = 0;
  candidates.forEach((id, i) => {
    weights[i] = Math.exp((logits[id] - top) / options.temperature);
    total += weights[i];
  });
  let kept = candidates.length;
  // Weights fall along the candidates, so min_p keeps a prefix of them.
  if (minP > 0) {
    kept = weights.findIndex((w) => w < minP);
    if (kept === -1) kept = candidates.length;
    total = weights.subarray(0, kept).reduce((a, b) => a + b, 0);
  }
  if (options.topP < 1) {
    // The smallest prefix whose probability reaches top_p (all of them if rounding falls short).
    let cumulative = 0;
    const candidatesLeft = kept;
    for (let i = 0; i < candidatesLeft; i++) {
      cumulative += weights[i] / total;
      if (cumulative >= options.topP) {
        kept = i + 1;
        break;
      }
    }
    total = weights.subarray(0, kept).reduce((a, b) => a + b, 0);
  }
  let r = rng.next() * total;
  for (let i = 0; i < kept; i++) {
    r -= weights[i];
    if (r < 0) return candidates[i];
  }
  return candidates[kept - 1];
}

/** One draw from softmax(logits / T) over the whole vocabulary (tokens under min_p dropped), in id order. */
function drawFromSoftmax(logits: Float32Array, temperature: number, minP: number, rng: Random): number {
  let top = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > top) top = logits[i];
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    const w = Math.exp((logits[i] - top) / temperature);
    total += weights[i] = w < minP ? 0 : w;
  }
  let r = rng.next() * total;
  for (let i = 0; i < logits.length; i++) {
    r -= weights[i];
    if (r < 0) return i;
  }
  // Rounding left r ≥ 0: the last token still in the draw.
  let last = logits.length - 1;
  while (weights[last] === 0 && last > 0) last--;
  return last;
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
