/**
 * The straightforward sampler: a full sort for top-p, a softmax over every candidate. It is the
 * definition `sampleToken` (sampler.ts) must match token for token, its fallback whenever the fast
 * path cannot prove it picks the same token, and the reference of the equality tests.
 */
import type { SamplingOptions } from './sampler.ts';

/** The token the uniform draw `u` ∈ [0, 1) picks; temperature > 0. */
export function referenceSample(logits: Float32Array, options: SamplingOptions, u: number): number {
  const minP = options.minP ?? 0;
  const limitedByTopK = options.topK > 0 && options.topK < logits.length;
  if (!limitedByTopK && options.topP >= 1) return referenceDrawInIdOrder(logits, options.temperature, minP, u);
  // Candidate ids, most likely first, ties by id.
  const candidates = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  if (limitedByTopK) candidates.length = options.topK;
  let top = -Infinity;
  for (const id of candidates) top = Math.max(top, logits[id]);
  const weights = new Float64Array(candidates.length);
  let total = 0;
  candidates.forEach((id, i) => {
    weights[i] = Math.exp((logits[id] - top) / options.temperature);
    total += weights[i];
  });
  let kept = candidates.length;
  if (minP > 0) {
    kept = weights.findIndex((w) => w < minP);
    if (kept === -1) kept = candidates.length;
    total = weights.subarray(0, kept).reduce((a, b) => a + b, 0);
  }
  if (options.topP < 1) {
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
  let r = u * total;
  for (let i = 0; i < kept; i++) {
    r -= weights[i];
    if (r < 0) return candidates[i];
  }
  return candidates[kept - 1];
}

/** One draw from softmax(logits / T) over the whole vocabulary (tokens under min_p dropped), in id order. */
export function referenceDrawInIdOrder(logits: Float32Array, temperature: number, minP: number, u: number): number {
  let top = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > top) top = logits[i];
  const weights = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    const w = Math.exp((logits[i] - top) / temperature);
    total += weights[i] = w < minP ? 0 : w;
  }
  let r = u * total;
  for (let i = 0; i < logits.length; i++) {
    r -= weights[i];
    if (r < 0) return i;
  }
  let last = logits.length - 1;
  while (weights[last] === 0 && last > 0) last--;
  return last;
}
