/** Small statistics for noisy machines: medians, quartiles, paired ratios. */

export function quantile(values: readonly number[], q: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const pos = (v.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

export const median = (values: readonly number[]) => quantile(values, 0.5);

export interface Summary {
  median: number;
  p25: number;
  p75: number;
  n: number;
}

export function summarize(values: readonly number[]): Summary {
  return { median: median(values), p25: quantile(values, 0.25), p75: quantile(values, 0.75), n: values.filter(Number.isFinite).length };
}

/** Median of per-round ratios a[i]/b[i] (paired: each round's drift cancels). */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((x, i) => x / b[i]));
}

export const gaps = (times: readonly number[]) => times.slice(1).map((t, i) => t - times[i]);

/** Formats a number with a sensible number of digits for a table. */
export function fmt(x: number, digits?: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (digits !== undefined) return x.toFixed(digits);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}

export const mb = (bytes: number) => (bytes / (1 << 20)).toFixed(1);
/** Mebibytes with one decimal, or n/a for a value not measured. */
export const mibOrNa = (bytes: number) => (Number.isFinite(bytes) ? mb(bytes) : 'n/a');

/** A Markdown table. */
export const markdownTable = (head: string[], rows: (string | number)[][]) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
export const kb = (bytes: number) => (bytes / 1024).toFixed(1);

/** A deterministic shuffle (interleaving order per round). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed * 2654435761 + 1;
  const rand = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
