/** Where the benchmark keeps its build products (gitignored) and where it writes its report. */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const WORK = join(ROOT, 'bench', '.work');
export const REPORT = join(ROOT, 'docs', 'BENCHMARKS.md');
export const PLOT = join(ROOT, 'docs', 'benchmarks.svg');
