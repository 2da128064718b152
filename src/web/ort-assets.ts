/**
 * The onnxruntime-web files a page needs at run time, served as static assets beside the page
 * (scripts/copy-ort-assets.ts writes them). Per backend: the Emscripten glue module, and the
 * runtime's wasm gzipped: the WebGPU (JSEP) wasm is 27 MiB, over Workers' 25 MiB limit for one
 * static asset, and 6.3 MiB gzipped. The client inflates it with DecompressionStream.
 */
export const ORT_ASSETS = {
  webgpu: { glue: 'ort-wasm-simd-threaded.jsep.mjs', wasm: 'ort-wasm-simd-threaded.jsep.wasm' },
  wasm: { glue: 'ort-wasm-simd-threaded.mjs', wasm: 'ort-wasm-simd-threaded.wasm' },
} as const;

/** The suffix of the served (gzipped) wasm files. */
export const GZIP_SUFFIX = '.gz';
