/**
 * Builds the harness page with Vite, as a site using flexmem/web would: onnxruntime-web resolved
 * with its `onnxruntime-web-use-extern-wasm` condition, so its wasm is not copied into the build
 * (the page loads it from the ORT assets, scripts/copy-ort-assets.ts).
 */
import { fileURLToPath } from 'node:url';
import { build, defaultClientConditions } from 'vite';

export async function buildHarness(outDir: string): Promise<void> {
  await build({
    root: fileURLToPath(new URL('.', import.meta.url)),
    configFile: false,
    logLevel: 'warn',
    resolve: { conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions] },
    build: { outDir, emptyOutDir: true, target: 'es2022', minify: false, rollupOptions: { input: 'harness.html' } },
  });
}
