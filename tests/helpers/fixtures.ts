/** Tiny random checkpoints and bundles in temporary folders, made by the real CLI code. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBundle, type BuildOptions } from '../../cli/build-bundle.ts';
import { writeRandomCheckpoint } from '../../cli/random-checkpoint.ts';
import type { Architecture, ConfigInput } from '../../src/model/config.ts';

export function tempDir(prefix = 'flexmem-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function writeTinyCheckpoint(dir: string, arch: Architecture, overrides: Partial<ConfigInput> = {}): void {
  writeRandomCheckpoint(dir, { preset: 'tiny', arch, seed: 1, dtype: 'f32', overrides });
}

/** Writes a tiny checkpoint under `root` and builds it (f32 tables and reference.onnx by default). */
export async function buildTinyBundle(
  root: string,
  arch: Architecture,
  options: Partial<BuildOptions> = {},
  name = `${arch}-bundle`,
): Promise<string> {
  const checkpoint = join(root, `${arch}-checkpoint`);
  writeTinyCheckpoint(checkpoint, arch);
  const bundle = join(root, name);
  await buildBundle(checkpoint, bundle, { dtype: 'f32', reference: true, progress: false, ...options });
  return bundle;
}
