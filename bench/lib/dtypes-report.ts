/**
 * The docs/BENCHMARKS.md section of the `dtypes` suite (bench/suites/dtypes.ts): kept apart from
 * report.ts, which renders the other suites, so each can change on its own.
 */
import type { DtypesResult } from '../suites/dtypes.ts';
import type { Stored } from './report.ts';
import { fmt } from './stats.ts';

const TITLE = '## Compute dtypes: graph bytes, decode time and perplexity';
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(2);
const signedPercent = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(3)}%`;

export function renderDtypes(stored: Stored<DtypesResult> | undefined): string {
  if (!stored) return `${TITLE}\n\n_Not run yet: \`npx tsx bench/run.ts --only dtypes\`._\n`;
  const { meta, result: r } = stored;
  const rows = r.cells.map((c) =>
    [
      c.model,
      c.dtype,
      `${mib(c.graphBytes)} (${c.servedGraph})`,
      `${fmt(c.summary.median)} [${fmt(c.summary.p25)}, ${fmt(c.summary.p75)}]`,
      c.dtype === 'f32' ? '1' : fmt(c.ratioToF32, 2),
      c.perplexity.toFixed(3),
      c.dtype === 'f32' ? '' : signedPercent(c.perplexityChange),
    ].join(' | '),
  );
  return `${TITLE}

\`flexmem build --compute-dtype\` on the trained demo models (docs/quantization.md: the operators and
why). Graph: the objects the worker loads (the graph optimized at build time and its weights, or compute.onnx for f16, whose optimized
graph would fold its casts back to f32). Decode: ms per token in onnxruntime-web inside workerd,
rows from the isolate's hot set, a ${r.plan.prefill}-token prefill then ${r.plan.steps} steps, median
[p25, p75] over ${r.rounds} rounds of ${r.pairs} pair(s); all dtypes interleaved in one worker, and
the ratio is paired with f32 per round. Perplexity: the first ${r.windows} windows of
training/data/valid.txt (${r.predictedTokens} predicted tokens), as \`flexmem eval\` computes it.

| model | compute dtype | graph MiB | decode ms/token | × f32 | perplexity | vs f32 |
|---|---|---|---|---|---|---|
${rows.map((row) => `| ${row} |`).join('\n')}

Measured ${meta.date.slice(0, 10)} (${meta.quick ? 'quick, ' : ''}${fmt(meta.seconds, 0)} s, load ${meta.env.loadStart.join(' ')}); \`${meta.command}\`.
`;
}
