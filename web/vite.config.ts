/**
 * The playground page (web/), built into static assets that the worker serves at `/`
 * (wrangler.toml `[assets]`). `npm run build:web` writes web/dist; tests build into a folder of
 * their own (FLEXMEM_WEB_OUT) so that concurrent runs never serve a half-written page.
 *
 * web/public/ort holds onnxruntime-web's files for computing in the browser
 * (scripts/copy-ort-assets.ts writes them before every build), copied into the build as /ort/.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

/** Workers static assets refuse any file over 25 MiB: fail the build, not the deploy. */
export const MAX_ASSET_BYTES = 25 * 2 ** 20;

/** Every file under `dir` larger than MAX_ASSET_BYTES, with its size. */
export function oversizedAssets(dir: string): { file: string; bytes: number }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((file) => ({ file, bytes: statSync(join(dir, file)).size }))
    .filter(({ file, bytes }) => bytes > MAX_ASSET_BYTES && statSync(join(dir, file)).isFile());
}

function assetSizeLimit(outDir: string): Plugin {
  return {
    name: 'flexmem-asset-size-limit',
    apply: 'build',
    closeBundle() {
      const over = oversizedAssets(outDir);
      if (over.length)
        throw new Error(`static assets over Workers' 25 MiB limit: ${over.map((o) => `${o.file} (${o.bytes} bytes)`).join(', ')}`);
    },
  };
}

const outDir = process.env.FLEXMEM_WEB_OUT ?? `${root}dist`;

export default defineConfig({
  root,
  base: '/',
  logLevel: 'warn',
  // onnxruntime-web's builds that load their wasm from /ort/ instead of embedding it: without this
  // condition Vite copies the 27 MiB WebGPU wasm into the build.
  resolve: { conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions] },
  plugins: [assetSizeLimit(outDir)],
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
});
