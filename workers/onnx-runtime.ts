/**
 * onnxruntime-web inside workerd. Workers may not compile WebAssembly from bytes at run time, so
 * the .wasm is imported as a precompiled module (wrangler's CompiledWasm rule). onnxruntime-web
 * cannot take a module, only bytes: it gets a marker buffer as `wasmBinary`, and the one
 * `WebAssembly.instantiate` call that receives the marker is answered with the imported module.
 */
import * as ort from 'onnxruntime-web/wasm';
import ortWasmModule from '../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm';

const MARKER = new TextEncoder().encode('flexmem:precompiled-ort-wasm');

function isMarker(source: unknown): boolean {
  const bytes =
    source instanceof ArrayBuffer
      ? new Uint8Array(source)
      : ArrayBuffer.isView(source)
        ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
        : null;
  return !!bytes && bytes.byteLength === MARKER.byteLength && bytes.every((b, i) => b === MARKER[i]);
}

let runtime: typeof ort | null = null;

/** The onnxruntime-web module, set up once per isolate (single-threaded, no proxy worker). */
export function onnxRuntime(): typeof ort {
  if (runtime) return runtime;
  const instantiate = WebAssembly.instantiate.bind(WebAssembly);
  WebAssembly.instantiate = (async (source: BufferSource | WebAssembly.Module, imports?: WebAssembly.Imports) => {
    if (!isMarker(source)) return instantiate(source as BufferSource, imports);
    const instance = await instantiate(ortWasmModule, imports);
    return { instance, module: ortWasmModule };
  }) as typeof WebAssembly.instantiate;
  ort.env.wasm.wasmBinary = MARKER;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  runtime = ort;
  return runtime;
}
