/**
 * The page tests/browser-client.test.ts drives in Chromium: it imports the client as a package
 * user would (`flexmem/web`) and exposes a few calls on `window.harness`.
 */
import { openBrowserModel, type BrowserGenerationStats, type BrowserModel, type BrowserModelOptions } from 'flexmem/web';

export interface OpenedModel {
  version: string;
  backend: string;
  adapter: string | null;
  traffic: ReturnType<BrowserModel['traffic']>;
}

export interface GreedyRun {
  text: string;
  ids: number[];
  finishReason: string | null;
  stats: BrowserGenerationStats;
}

const models = new Map<string, BrowserModel>();

const harness = {
  /** The WebGPU adapter's vendor and architecture, or null. */
  async webGpuAdapter(): Promise<string | null> {
    const gpu = (
      navigator as Navigator & { gpu?: { requestAdapter(): Promise<{ info: { vendor: string; architecture: string } } | null> } }
    ).gpu;
    const adapter = await gpu?.requestAdapter();
    return adapter ? `${adapter.info.vendor} ${adapter.info.architecture}`.trim() : null;
  },

  async open(name: string, options: BrowserModelOptions): Promise<OpenedModel> {
    const model = await openBrowserModel(options);
    models.set(name, model);
    await model.hotSetReady();
    return { version: model.version, backend: model.backend, adapter: model.adapter, traffic: model.traffic() };
  },

  /** Greedy generation of `maxTokens` tokens (or until eos), aborted after `abortAfter` deltas when given. */
  async greedy(name: string, prompt: string, maxTokens: number, abortAfter?: number): Promise<GreedyRun> {
    const model = models.get(name)!;
    const abort = new AbortController();
    const run = model.generate({ prompt, maxTokens, temperature: 0, logprobs: 0, signal: abort.signal });
    let text = '';
    const ids: number[] = [];
    let finishReason: string | null = null;
    let deltas = 0;
    for await (const delta of run) {
      text += delta.text;
      ids.push(...delta.tokens.map((t) => t.id));
      finishReason = delta.finish?.finishReason ?? finishReason;
      if (++deltas === abortAfter) abort.abort();
    }
    return { text, ids, finishReason, stats: run.stats() };
  },

  /** Logits of the last `rows` positions of prompt + continuation: one prefill step, then one cached step per continuation token. */
  async logits(name: string, promptIds: number[], continuationIds: number[], rows: number): Promise<number[]> {
    const decoder = models.get(name)!.decoder();
    const V = decoder.config.vocab_size;
    const state = decoder.start();
    const steps = [(await decoder.step(state, promptIds)).slice()];
    for (const id of continuationIds) steps.push((await decoder.step(state, [id])).slice());
    const all = steps.flatMap((step) => Array.from(step));
    return all.slice(all.length - rows * V);
  },

  traffic: (name: string) => models.get(name)!.traffic(),

  async close(name: string): Promise<void> {
    await models.get(name)?.close();
    models.delete(name);
  },
};

declare global {
  interface Window {
    harness: typeof harness;
  }
}
window.harness = harness;
