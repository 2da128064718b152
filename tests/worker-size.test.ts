/** The deployable worker (wrangler's own bundle) must stay under the 10 MB gzipped script limit. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { expect, inject, it } from 'vitest';

it('bundles into less than 10 MB gzipped, with no model weights inside', () => {
  const dir = inject('workerDir');
  const files = readdirSync(dir).filter((f) => !f.endsWith('.map') && f !== 'README.md');
  const gzipped = files.reduce((total, f) => total + gzipSync(readFileSync(join(dir, f))).byteLength, 0);
  console.log(`worker script: ${files.join(', ')}; ${(gzipped / 1e6).toFixed(2)} MB gzipped`);
  expect(files.some((f) => f.endsWith('.wasm'))).toBe(true);
  expect(files.some((f) => f.endsWith('.onnx') || f.endsWith('.bin'))).toBe(false);
  expect(gzipped).toBeLessThan(10 * 1024 * 1024);
});
