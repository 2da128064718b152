/**
 * Copies the onnxruntime-web files the browser client loads at run time (src/web/ort-assets.ts)
 * from node_modules into a folder served as static assets: each backend's glue module as it is,
 * and its wasm gzipped (the WebGPU build's wasm is over Workers' 25 MiB limit per asset).
 *
 *   npx tsx scripts/copy-ort-assets.ts <folder>     e.g. web/public/ort, served at /ort/
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { GZIP_SUFFIX, ORT_ASSETS } from '../src/web/ort-assets.ts';

/** Writes the files into `folder` and returns their names and sizes. */
export function copyOrtAssets(folder: string): { file: string; bytes: number }[] {
  const dist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
  mkdirSync(folder, { recursive: true });
  const written: { file: string; bytes: number }[] = [];
  // Written beside and renamed into place: a concurrent build (another test run) never reads half a file.
  const write = (file: string, bytes: Uint8Array) => {
    const partial = join(folder, `.${file}.${process.pid}.partial`);
    writeFileSync(partial, bytes);
    renameSync(partial, join(folder, file));
    written.push({ file, bytes: bytes.byteLength });
  };
  for (const { glue, wasm } of Object.values(ORT_ASSETS)) {
    write(glue, readFileSync(join(dist, glue)));
    write(wasm + GZIP_SUFFIX, gzipSync(readFileSync(join(dist, wasm)), { level: 9 }));
  }
  return written;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const folder = process.argv[2];
  if (!folder) {
    console.error('usage: tsx scripts/copy-ort-assets.ts <folder>');
    process.exit(2);
  }
  for (const { file, bytes } of copyOrtAssets(resolve(folder))) console.log(`${join(folder, file)}  ${(bytes / 2 ** 20).toFixed(2)} MiB`);
}
