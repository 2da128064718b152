/** Builds the worker once per test run, exactly as `wrangler deploy` would bundle it. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

export default function setup(project: TestProject): () => void {
  const outdir = mkdtempSync(join(tmpdir(), 'flexmem-worker-'));
  execFileSync('npx', ['wrangler', 'deploy', '--dry-run', '--outdir', outdir], { stdio: 'pipe' });
  project.provide('workerDir', outdir);
  return () => rmSync(outdir, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    workerDir: string;
  }
}
