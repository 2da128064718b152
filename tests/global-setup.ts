/**
 * Builds the worker once per test run, exactly as `wrangler deploy` would bundle it, and the
 * playground page it serves as static assets (into a folder of this run's own, beside it, so a
 * concurrent run never serves a half-written page), with onnxruntime-web's files for computing in
 * the browser (web/public/ort, served at /ort/).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { copyOrtAssets } from '../scripts/copy-ort-assets.ts';
import { assetsDirOf } from './helpers/miniflare-worker.ts';

export default function setup(project: TestProject): () => void {
  const outdir = mkdtempSync(join(tmpdir(), 'flexmem-worker-'));
  const assets = assetsDirOf(outdir);
  copyOrtAssets(join('web', 'public', 'ort'));
  execFileSync('npx', ['vite', 'build', '--config', 'web/vite.config.ts'], {
    stdio: 'pipe',
    env: { ...process.env, FLEXMEM_WEB_OUT: assets },
  });
  // wrangler.toml's [assets] folder must exist for any wrangler build (tests/regions.test.ts builds each region).
  if (!existsSync(join('web', 'dist', 'index.html'))) cpSync(assets, join('web', 'dist'), { recursive: true });
  execFileSync('npx', ['wrangler', 'deploy', '--dry-run', '--outdir', outdir, '--assets', assets], { stdio: 'pipe' });
  project.provide('workerDir', outdir);
  return () => {
    rmSync(outdir, { recursive: true, force: true });
    rmSync(assets, { recursive: true, force: true });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    workerDir: string;
  }
}
