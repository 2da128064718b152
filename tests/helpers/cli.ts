import { spawnSync } from 'node:child_process';

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `flexmem` binary. */
export function flexmem(...args: string[]): CliResult {
  const result = spawnSync('node', ['bin/flexmem.js', ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
