/**
 * softmax(logits / T) weights w_i = exp((l_i − l_max) / T) for the whole vocabulary, fast and with a
 * proven error bound, so that the sampler can pick the same token as the straightforward
 * `Math.exp` computation (sampler-reference.ts) or know that it cannot be sure and fall back.
 *
 * exp(−y / 256) = E[⌊y⌋] · exp(−f / 256) with f = y − ⌊y⌋ ∈ [0, 1): a table of 256 steps per unit
 * and a degree-2 Taylor polynomial (1.0e-8 relative error measured: the cubic term f³/(6·256³)), several
 * times cheaper than `Math.exp` per element in V8. A degree-3 polynomial was 1e-11 but 1.4x slower per
 * draw, and the looser bound only makes the exact fallback (a draw within the bound of an edge) about
 * a hundred times likelier, from one in 10⁹ draws to one in 10⁷. Weights below exp(−36) are taken as 0.
 */

const STEPS_PER_UNIT = 256;
const SKIP_BELOW_X = -36;
const TABLE_SIZE = -SKIP_BELOW_X * STEPS_PER_UNIT;
/** exp(−j / 256) for j < TABLE_SIZE, and 0 at TABLE_SIZE: where every argument past the table lands. */
const EXP_TABLE = Float64Array.from({ length: TABLE_SIZE + 1 }, (_, j) => (j < TABLE_SIZE ? Math.exp(-j / STEPS_PER_UNIT) : 0));
/** Relative error of one fast weight against `Math.exp` (truncation, table rounding, the scaled argument): 1.0e-8 measured, 2e-8 assumed. */
export const RELATIVE_ERROR = 2e-8;
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

/**
 * One fast weight exp(−y / 256) for y = (l_max − l) · 256 / T: 0 from the table's end on, NaN for a
 * NaN logit (it spoils the total). y is clamped, not branched on: the same values in 0.4-0.7x the
 * time in Node (bench/lib/sampler-weights-ab.ts). `y > TABLE_SIZE` is false for NaN, so NaN passes through.
 */
function fastWeight(y: number): number {
  // Literals (9216 = TABLE_SIZE; 1 − f/256 + f²/(2·256²), the Taylor polynomial), not module
  // constants: a bundler (wrangler's esbuild) turns top-level `const` into `var`, which V8 then loads
  // and checks on every call, 500 against 300 µs a pass over 131,072 logits in workerd. The tests
  // check the cut at TABLE_SIZE and the polynomial's error.
  // biome-ignore lint/complexity/useMathMinMax: Math.min was slower here than the branch (bench/lib/sampler-weights-ab.ts' note)
  const x = y > 9216 ? 9216 : y;
  const j = x | 0;
  const f = x - j;
  return EXP_TABLE[j] * (1 + f * (-1 / 256 + f * (1 / 131072)));
}

/** The bound of FastWeights.errorBound for n weights summing to `total`. */
const errorBoundOf = (total: number, n: number) => 2 * total * (RELATIVE_ERROR + 4 * n * EPSILON) + 2 * n * LARGEST_SKIPPED;

/** The weights of softmax(logits / T) relative to the largest, with min_p applied; null when a logit is NaN or infinite. */
export function fastSoftmaxWeights(logits: Float32Array, top: number, temperature: number, minP: number): FastWeights | null {
  const n = logits.length;
  const weights = grownScratch(n);
  const scale = STEPS_PER_UNIT / temperature;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const w = fastWeight((top - logits[i]) * scale);
    weights[i] = w;
    total += w;
  }
  if (minP > 0) total = applyMinP(logits, weights, top, temperature, minP);
  // A dropped weight may still count under min_p when min_p is below the largest dropped weight.
  if (!(total < Infinity) || (minP > 0 && minP <= LARGEST_SKIPPED)) return null;
  return { weights, total, errorBound: errorBoundOf(total, n) };
}

/**
 * The running sums c_i = w_0 + … + w_i of the same weights (no min_p), in one pass: a draw is then a
 * binary search instead of a second walk over the vocabulary. c_i is bit for bit the prefix sum a walk
 * in id order computes. Null when a logit is NaN or infinite.
 */
export function fastCumulativeWeights(
  logits: Float32Array,
  top: number,
  temperature: number,
): { cumulative: Float64Array; total: number; errorBound: number } | null {
  const n = logits.length;
  const cumulative = grownScratch(n);
  const scale = STEPS_PER_UNIT / temperature;
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += fastWeight((top - logits[i]) * scale);
    cumulative[i] = total;
  }
  if (!(total < Infinity)) return null;
  return { cumulative, total, errorBound: errorBoundOf(total, n) };
}

function grownScratch(n: number): Float64Array {
  if (scratch.length < n) scratch = new Float64Array(n);
  return scratch;
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
