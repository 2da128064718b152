import type { Random } from '../util/random.ts';
import { referenceDrawInIdOrder, referenceSample } from './sampler-reference.ts';
import { fastCumulativeWeights, fastSoftmaxWeights } from './softmax-weights.ts';
import { candidatesFrom, topCandidates } from './top-candidates.ts';

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

/** A request's sampling settings, each absent one at OpenAI's default; without a seed, a random one. */
export function samplingWithDefaults(asked: {
  temperature?: number | null;
  topP?: number | null;
  topK?: number | null;
  minP?: number | null;
  seed?: number | null;
}): SamplingOptions & { seed: number } {
  return {
    temperature: asked.temperature ?? 1,
    topP: asked.topP ?? 1,
    topK: asked.topK ?? 0,
    minP: asked.minP ?? 0,
    seed: asked.seed ?? Math.floor(Math.random() * 2 ** 31),
  };
}

/**
 * Picks the next token from one position's logits: always the token the straightforward sampler
 * (sampler-reference.ts) picks for the same draw, so a seed gives the same text, at a fraction of
 * its cost at large vocabularies (docs/BENCHMARKS.md).
 *
 * Without top-k or top-p it draws from softmax(logits / T) in id order. The weights come from a fast
 * exp with a proven error bound; when the draw lands closer to a token's edge than that bound (or a
 * logit is not finite) the exact computation decides. Under top-k or top-p the candidates are the
 * most likely ids, most likely first: top-k takes them from a bounded heap, top-p the 64 most
 * likely or, when its cut lies further, every id above a logit a histogram of the weights finds,
 * without sorting the vocabulary. min_p keeps w_i = p_i / p_max ≥ min_p before top-k and
 * top-p, which see the renormalised rest (vLLM's order).
 */
export function sampleToken(logits: Float32Array, options: SamplingOptions, rng: Random): number {
  if (options.temperature === 0) return argmax(logits);
  const u = rng.next();
  const limitedByTopK = options.topK > 0 && options.topK < logits.length;
  if (limitedByTopK) return drawFromCandidates(logits, topCandidates(logits, options.topK), options.topK, options, u, null);
  if (options.topP < 1) return drawUnderTopP(logits, options, u);
  return drawInIdOrder(logits, options.temperature, options.minP ?? 0, u);
}

function drawInIdOrder(logits: Float32Array, temperature: number, minP: number, u: number): number {
  const top = max(logits);
  if (!Number.isFinite(top)) return referenceDrawInIdOrder(logits, temperature, minP, u);
  if (minP === 0) {
    const fast = fastCumulativeWeights(logits, top, temperature);
    if (fast === null) return referenceDrawInIdOrder(logits, temperature, minP, u);
    const { cumulative, total, errorBound } = fast;
    const r = u * total;
    const i = firstAbove(cumulative, logits.length, r);
    // The exact sums could only pick another token if r were within the bound of an edge.
    if (i < logits.length && r - (i > 0 ? cumulative[i - 1] : 0) > errorBound && cumulative[i] - r > errorBound) return i;
    return referenceDrawInIdOrder(logits, temperature, minP, u);
  }
  const fast = fastSoftmaxWeights(logits, top, temperature, minP);
  if (fast === null) return referenceDrawInIdOrder(logits, temperature, minP, u);
  const { weights, total, errorBound } = fast;
  const r = u * total;
  let below = 0;
  for (let i = 0; i < logits.length; i++) {
    const above = below + weights[i];
    if (above > r) {
      if (r - below > errorBound && above - r > errorBound) return i;
      break;
    }
    below = above;
  }
  return referenceDrawInIdOrder(logits, temperature, minP, u);
}

/** The first i < n with sorted[i] > r (n when none): sorted is non-decreasing. */
function firstAbove(sorted: Float64Array, n: number, r: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] > r) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Top-p over the whole vocabulary: the 64 most likely ids first (enough for a peaked distribution);
 * else every id above a logit under which, by a histogram of the weights, less than 1 − top_p of
 * the mass lies, sorted. The cut must be proven inside those candidates, else the reference decides.
 */
function drawUnderTopP(logits: Float32Array, options: SamplingOptions, u: number): number {
  const n = logits.length;
  const minP = options.minP ?? 0;
  const m = 64;
  if (n <= m) return referenceSample(logits, options, u);
  const candidates = topCandidates(logits, m);
  const top = logits[candidates[0]];
  if (!Number.isFinite(top)) return referenceSample(logits, options, u);
  // Unless min_p's cut falls inside the prefix, top-p divides by the total over the whole vocabulary.
  if (minP > 0 && Math.exp((logits[candidates[m - 1]] - top) / options.temperature) < minP)
    return drawFromCandidates(logits, candidates, m, options, u, null);
  const whole = fastSoftmaxWeights(logits, top, options.temperature, minP);
  if (whole === null) return referenceSample(logits, options, u);
  const picked = drawFromCandidates(logits, candidates, m, options, u, whole);
  if (picked >= 0) return picked;
  if (picked === CUT_BEYOND_PREFIX) {
    const lowest = logitHoldingMass(logits, whole.weights, top, options.temperature, options.topP * whole.total + 4 * whole.errorBound);
    const wider = candidatesFrom(logits, lowest);
    const again = drawFromCandidates(logits, wider.ids, wider.count, options, u, whole);
    if (again >= 0) return again;
  }
  return referenceSample(logits, options, u);
}

const BINS_PER_UNIT = 16;
const BINS = 36 * BINS_PER_UNIT;
const binMass = new Float64Array(BINS + 1);

/** A logit such that the ids at or above it hold at least `mass` of the weights (bins of 1/16 in (l − top) / T, one bin to spare). */
function logitHoldingMass(logits: Float32Array, weights: Float64Array, top: number, temperature: number, mass: number): number {
  binMass.fill(0);
  const scale = BINS_PER_UNIT / temperature;
  for (let i = 0; i < logits.length; i++) {
    const bin = (top - logits[i]) * scale;
    if (bin < BINS) binMass[bin | 0] += weights[i];
  }
  let cumulative = 0;
  for (let bin = 0; bin < BINS; bin++) {
    cumulative += binMass[bin];
    if (cumulative >= mass) return top - ((bin + 2) * temperature) / BINS_PER_UNIT;
  }
  return -Infinity;
}

const CUT_BEYOND_PREFIX = -1;
const UNDECIDED = -2;
let weightScratch = new Float64Array(0);

/**
 * The reference's draw over `count` candidates, most likely first. With `wholeTotal` the candidates
 * are a prefix of the vocabulary and top-p divides by that estimate of the total over every token:
 * the cut must then be proven inside the prefix, else CUT_BEYOND_PREFIX or UNDECIDED.
 */
function drawFromCandidates(
  logits: Float32Array,
  candidates: Int32Array,
  count: number,
  options: SamplingOptions,
  u: number,
  wholeTotal: { total: number; errorBound: number } | null,
): number {
  if (weightScratch.length < count) weightScratch = new Float64Array(Math.max(count, 2 * weightScratch.length));
  const weights = weightScratch;
  const minP = options.minP ?? 0;
  let top = -Infinity;
  for (let i = 0; i < count; i++) top = Math.max(top, logits[candidates[i]]);
  let total = 0;
  for (let i = 0; i < count; i++) {
    weights[i] = Math.exp((logits[candidates[i]] - top) / options.temperature);
    total += weights[i];
  }
  let kept = count;
  if (minP > 0) {
    kept = 0;
    while (kept < count && !(weights[kept] < minP)) kept++;
    total = sumOf(weights, kept);
  }
  if (options.topP < 1) {
    const cut = wholeTotal === null ? topPCut(weights, kept, total, options.topP) : provenTopPCut(weights, kept, wholeTotal, options.topP);
    if (cut < 0) return cut;
    kept = cut;
    total = sumOf(weights, kept);
  }
  let r = u * total;
  for (let i = 0; i < kept; i++) {
    r -= weights[i];
    if (r < 0) return candidates[i];
  }
  return candidates[kept - 1];
}

/** The smallest prefix whose probability reaches p (all of them if rounding falls short). */
function topPCut(weights: Float64Array, kept: number, total: number, topP: number): number {
  let cumulative = 0;
  for (let i = 0; i < kept; i++) {
    cumulative += weights[i] / total;
    if (cumulative >= topP) return i + 1;
  }
  return kept;
}

/** topPCut against a total known only within a bound: the cut when the bound cannot move it. */
function provenTopPCut(weights: Float64Array, kept: number, whole: { total: number; errorBound: number }, topP: number): number {
  const relative = (2 * whole.errorBound) / whole.total;
  let cumulative = 0;
  for (let i = 0; i < kept; i++) {
    cumulative += weights[i] / whole.total;
    const slack = cumulative * (relative + 4 * (i + 2) * 2 ** -53);
    if (cumulative >= topP - slack) return cumulative >= topP + slack ? i + 1 : UNDECIDED;
  }
  return CUT_BEYOND_PREFIX;
}

function sumOf(weights: Float64Array, count: number): number {
  let total = 0;
  for (let i = 0; i < count; i++) total += weights[i];
  return total;
}

/** The largest value, NaNs ignored; four running maxima, because one is a chain of dependent compares (3x slower in V8). */
function max(values: Float32Array): number {
  let a = -Infinity;
  let b = -Infinity;
  let c = -Infinity;
  let d = -Infinity;
  const n = values.length;
  const whole = n - (n % 4);
  let i = 0;
  for (; i < whole; i += 4) {
    if (values[i] > a) a = values[i];
    if (values[i + 1] > b) b = values[i + 1];
    if (values[i + 2] > c) c = values[i + 2];
    if (values[i + 3] > d) d = values[i + 3];
  }
  for (; i < n; i++) if (values[i] > a) a = values[i];
  return Math.max(a, b, c, d);
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

/** A generated token's log-probability and the k most likely tokens', from one softmax normaliser. */
export function tokenLogprobs(logits: Float32Array, id: number, k: number): { logprob: number; top: { id: number; logprob: number }[] } {
  const norm = logSumExp(logits);
  return { logprob: logits[id] - norm, top: topLogProbabilities(logits, k, norm) };
}

/** The k most likely tokens with their log-probabilities, most likely first. */
export function topLogProbabilities(logits: Float32Array, k: number, norm = logSumExp(logits)): { id: number; logprob: number }[] {
  const count = Math.min(k, logits.length);
  const ids = topCandidates(logits, count);
  return Array.from({ length: count }, (_, i) => ({ id: ids[i], logprob: logits[ids[i]] - norm }));
}

function logSumExp(logits: Float32Array): number {
  const top = max(logits);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - top);
  return top + Math.log(sum);
}
