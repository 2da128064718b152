/**
 * The sampler's fast weights (src/engine/softmax-weights.ts) against the form before them, paired in
 * one process: the table-and-polynomial exp with a branch on the table's end (as it was) and with its
 * argument clamped (as it is). Same running sums, bit for bit, which the script checks; prints the
 * median time of one pass over the vocabulary for each and the median paired ratio. (Math.min in
 * place of the clamp's conditional was slower than either in V8: 706 µs against 522 branched.)
 *
 *   npx tsx bench/lib/sampler-weights-ab.ts [--vocab 131072] [--rounds 15]
 */
import { fastCumulativeWeights } from '../../src/engine/softmax-weights.ts';
import { Random } from '../../src/util/random.ts';
import { scriptArgs } from './script-args.ts';
import { median } from './stats.ts';

const args = scriptArgs({ vocab: '131072', rounds: '15' });
const vocab = args.number('vocab');
const rounds = args.number('rounds');

// The form before: the same table and polynomial, a branch where the table ends.
const STEPS_PER_UNIT = 256;
const TABLE_SIZE = 36 * STEPS_PER_UNIT;
const EXP_TABLE = Float64Array.from({ length: TABLE_SIZE + 1 }, (_, j) => Math.exp(-j / STEPS_PER_UNIT));
const C1 = -1 / STEPS_PER_UNIT;
const C2 = 1 / (2 * STEPS_PER_UNIT ** 2);
function branchedWeight(y: number): number {
  if (y < TABLE_SIZE) {
    const j = y | 0;
    const f = y - j;
    return EXP_TABLE[j] * (1 + f * (C1 + f * C2));
  }
  return Number.isNaN(y) ? Number.NaN : 0;
}
const before = new Float64Array(vocab);
function branchedRunningSums(logits: Float32Array, top: number, temperature: number): Float64Array {
  const scale = STEPS_PER_UNIT / temperature;
  let total = 0;
  for (let i = 0; i < logits.length; i++) {
    total += branchedWeight((top - logits[i]) * scale);
    before[i] = total;
  }
  return before;
}

const rng = new Random(1);
// As bench/lib/large-vocab.ts draws them: spread enough that most weights are inside the table.
const logits = Float32Array.from({ length: vocab }, () => rng.normal() * 3);
const top = logits.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY);
const temperature = 0.8;

const now = fastCumulativeWeights(logits, top, temperature)!.cumulative;
const was = branchedRunningSums(logits, top, temperature);
for (let i = 0; i < vocab; i++) if (now[i] !== was[i]) throw new Error(`running sum ${i} differs: ${now[i]} against ${was[i]}`);

const perPass = (pass: () => unknown, n = 20) => {
  const t = performance.now();
  for (let k = 0; k < n; k++) pass();
  return ((performance.now() - t) / n) * 1000;
};
for (let k = 0; k < 3; k++) {
  perPass(() => branchedRunningSums(logits, top, temperature));
  perPass(() => fastCumulativeWeights(logits, top, temperature));
}
const branched: number[] = [];
const clamped: number[] = [];
for (let round = 0; round < rounds; round++) {
  branched.push(perPass(() => branchedRunningSums(logits, top, temperature)));
  clamped.push(perPass(() => fastCumulativeWeights(logits, top, temperature)));
}
const ratio = median(clamped.map((c, i) => c / branched[i]));
console.log(
  `vocabulary ${vocab}, ${rounds} paired rounds: branched ${median(branched).toFixed(0)} µs, clamped ${median(clamped).toFixed(0)} µs per pass; clamped / branched ${ratio.toFixed(2)}x; running sums identical`,
);
