/**
 * The edge worker's module-scope warm-up (workers/runtime-warm-up.ts): the model graph it runs is
 * the one scripts/build-warm-up-graph.ts builds (a one-layer Flex-MemoryLLM through `flexmem build`
 * and its build-time optimization), its weights beside it, so it takes the served graphs' session
 * options, loading path and kernels; and it runs in onnxruntime-web's WASM build.
 */
import { describe, expect, it } from 'vitest';
import { buildWarmUpGraph } from '../scripts/build-warm-up-graph.ts';
import { warmUpKernels, warmUpRuntime } from '../workers/runtime-warm-up.ts';
import { WARM_UP_CONFIG, WARM_UP_MODEL_BASE64, WARM_UP_ROW_VALUES, WARM_UP_WEIGHTS } from '../workers/warm-up-graph.ts';

describe('the kernels warm-up', () => {
  it('embeds the graph scripts/build-warm-up-graph.ts builds, optimized at build time', async () => {
    const built = await buildWarmUpGraph();
    expect(Buffer.from(WARM_UP_MODEL_BASE64, 'base64').equals(Buffer.from(built.graph))).toBe(true);
    expect(WARM_UP_WEIGHTS.path).toBe(built.weights.path);
    expect(Buffer.from(WARM_UP_WEIGHTS.base64, 'base64').equals(Buffer.from(built.weights.data))).toBe(true);
    expect(WARM_UP_CONFIG).toEqual(built.config);
    expect(WARM_UP_CONFIG.architecture).toBe('flex');
    expect(WARM_UP_ROW_VALUES).toBe(built.rowValues);
  }, 60_000);

  it('runs in onnxruntime-web after the runtime start, and can run again', async () => {
    const ort = (await import('onnxruntime-web/wasm')) as unknown as typeof import('onnxruntime-web');
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    await expect(warmUpRuntime(ort)).resolves.toBeUndefined();
    await expect(warmUpKernels(ort)).resolves.toBeUndefined();
    await expect(warmUpKernels(ort)).resolves.toBeUndefined();
  }, 60_000);
});
