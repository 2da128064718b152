/**
 * softmax(logits / T) weights w_i = exp((l_i − l_max) / T) for the whole vocabulary, fast and with a
 * proven error bound, so that the sampler can pick the same token as the straightforward
 * `Math.exp` computation (sampler-reference.ts) or know that it cannot be sure and fall back.
 *
 * exp(−y / 256) = E[⌊y⌋] · exp(−f / 256) with f = y − ⌊y⌋ ∈ [0, 1): a table of 256 steps per unit
 * and a degree-3 Taylor polynomial (1e-11 relative error measured), several times cheaper than
 * `Math.exp` per element in V8. Weights below exp(−36) are taken as 0.
 */

const STEPS_PER_UNIT = 256;
const SKIP_BELOW_X = -36;
const TABLE_SIZE = -SKIP_BELOW_X * STEPS_PER_UNIT;
const EXP_TABLE = Float64Array.from({ length: TABLE_SIZE + 1 }, (_, j) => Math.exp(-j / STEPS_PER_UNIT));
const C1 = -1 / STEPS_PER_UNIT;
const C2 = 1 / (2 * STEPS_PER_UNIT ** 2);
const C3 = -1 / (6 * STEPS_PER_UNIT ** 3);
/** Relative error of one fast weight against `Math.exp` (truncation, table rounding, the scaled argument): 1e-11 measured, 1e-10 assumed. */
const RELATIVE_ERROR = 1e-10;
/** The largest weight the fast pass drops as 0. */
const LARGEST_SKIPPED = Math.exp(SKIP_BELOW_X);
const EPSILON = 2 ** -53;

/** Reused between calls (one generation step at a time per isolate): no allocation per step once grown. */
let scratch = new Float64Array(0);

export interface FastWeights {
  /** w_i (0 under min_p), valid for ids [0, n) until the next call. */
  weights: Float64Array;
  /** Σ w_i in id order. */
  total: number;
  /**
   * A bound on how far any sum of these weights (the total or a prefix, in any order) may be from the
   * same sum computed one term at a time from `Math.exp` weights, rounding of both sums included.
   */
  errorBound: number;
}

/** The weights of softmax(logits / T) relative to the largest, with min_p applied; null when a logit is NaN or infinite. */
export function fastSoftmaxWeights(logits: Float32Array, top: number, temperature: number, minP: number): FastWeights | null {
  const n = logits.length;
  if (scratch.length < n) scratch = new Float64Array(n);
  const weights = scratch;
  const table = EXP_TABLE;
  const scale = STEPS_PER_UNIT / temperature;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const y = (top - logits[i]) * scale;
    let w = 0;
    if (y < TABLE_SIZE) {
      const j = y | 0;
      const f = y - j;
      w = table[j] * (1 + f * (C1 + f * (C2 + f * C3)));
    } else if (Number.isNaN(y)) {
      return null; // NaN
    }
    weights[i] = w;
    total += w;
  }
  if (minP > 0) total = applyMinP(logits, weights, top, temperature, minP);
  // A dropped weight may still count under min_p when min_p is below the largest dropped weight.
  if (!(total < Infinity) || (minP > 0 && minP <= LARGEST_SKIPPED)) return null;
  const errorBound = 2 * total * (RELATIVE_ERROR + 4 * n * EPSILON) + 2 * n * LARGEST_SKIPPED;
  return { weights, total, errorBound };
}

/** Zeroes the weights under min_p (those within the error bound of it decided by `Math.exp`); returns the new total. */
function applyMinP(logits: Float32Array, weights: Float64Array, top: number, temperature: number, minP: number): number {
  const low = minP * (1 - 4 * RELATIVE_ERROR);
  const high = minP * (1 + 4 * RELATIVE_ERROR);
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    let w = weights[i];
    if (w < high) {
      if (w > low) w = Math.exp((logits[i] - top) / temperature);
      if (w < minP) w = 0;
      weights[i] = w;
    }
    total += w;
  }
  return total;
}
