/** The machine and software a run measured, recorded with every result. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './paths.ts';

export interface RunEnv {
  cpu: string;
  cores: number;
  memGiB: number;
  loadStart: number[];
  loadEnd?: number[];
  busiest: string[];
  node: string;
  versions: Record<string, string>;
  commit: string;
}

function pkgVersion(name: string): string {
  const path = join(ROOT, 'node_modules', name, 'package.json');
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')).version : 'n/a';
}

/** The checked-out commit, read from .git (no git command is run). */
function commit(): string {
  try {
    const head = readFileSync(join(ROOT, '.git', 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head.slice(0, 12);
    const ref = head.slice(5);
    const loose = join(ROOT, '.git', ref);
    if (existsSync(loose)) return readFileSync(loose, 'utf8').trim().slice(0, 12);
    const packed = readFileSync(join(ROOT, '.git', 'packed-refs'), 'utf8')
      .split('\n')
      .find((l) => l.endsWith(` ${ref}`));
    return packed ? packed.slice(0, 12) : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function runEnv(): RunEnv {
  let busiest: string[] = [];
  try {
    busiest = execFileSync('ps', ['-eo', 'pcpu,ni,comm', '--sort=-pcpu'], { encoding: 'utf8' })
      .split('\n')
      .slice(1)
      .map((l) => l.trim())
      .filter((l) => l && !/ ps$/.test(l))
      .slice(0, 3);
  } catch {
    // no ps
  }
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    loadStart: loadavg().map((x) => Math.round(x * 100) / 100),
    busiest,
    node: process.version,
    versions: {
      workerd: pkgVersion('workerd'),
      miniflare: pkgVersion('miniflare'),
      wrangler: pkgVersion('wrangler'),
      'onnxruntime-web': pkgVersion('onnxruntime-web'),
      'onnxruntime-node': pkgVersion('onnxruntime-node'),
      s3rver: pkgVersion('s3rver'),
    },
    commit: commit(),
  };
}
