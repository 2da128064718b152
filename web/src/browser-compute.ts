/**
 * Computing in this browser (`/?compute=browser`): flexmem/web runs the compute graph in the page
 * (onnxruntime-web, WebGPU or WASM) and reads only bundle objects and memory rows from the worker
 * (GET /v1/models, GET /v1/bundles/...); no completion request leaves the page. The client is
 * imported only in this mode, so the edge mode's page stays small.
 */
import type { BackendChoice, BrowserGenerationStats, BrowserModel } from 'flexmem/web';
import type { ChatMessage, Sampling, StreamCallbacks } from './api.ts';
import { el } from './inspector.ts';

export type ComputeMode = 'edge' | 'browser';

/** The mode and backend a link asks for: `/?compute=browser` (and `&backend=wasm|webgpu`), edge otherwise. */
export function modeOf(url: URL): { mode: ComputeMode; backend: BackendChoice } {
  const backend = url.searchParams.get('backend');
  return {
    mode: url.searchParams.get('compute') === 'browser' ? 'browser' : 'edge',
    backend: backend === 'wasm' || backend === 'webgpu' ? backend : 'auto',
  };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

/** Where a row came from, as a reader of this page would say it. */
export const BROWSER_TIER_NAMES: Record<string, string> = {
  isolate: "this page's memory",
  cache: 'Cache Storage',
  origin: 'the edge',
  patch: 'a patch',
};

/** One model opened in the page at a time; reopened when the model or the key changes. */
export class BrowserCompute {
  private opened: { key: string; model: Promise<BrowserModel> } | null = null;

  constructor(
    private readonly backend: BackendChoice,
    private readonly panel: HTMLElement,
  ) {}

  /** The model, opened (compute graph, tokenizer, hot set) on first use. */
  open(model: string, apiKey: string): Promise<BrowserModel> {
    const key = `${model}\n${apiKey}`;
    if (this.opened?.key === key) return this.opened.model;
    const previous = this.opened?.model;
    void previous?.then((m) => m.close()).catch(() => {});
    const opening = (async () => {
      this.show(el('p', { class: 'hint' }, `loading ${model} into this browser ...`));
      const { openBrowserModel } = await import('flexmem/web');
      const m = await openBrowserModel({ url: location.origin, model, apiKey: apiKey || undefined, backend: this.backend });
      await m.hotSetReady();
      this.render(m, null);
      return m;
    })();
    this.opened = { key, model: opening };
    opening.catch((error: unknown) => {
      if (this.opened?.model !== opening) return;
      this.opened = null;
      this.show(
        el('p', { class: 'error' }, `cannot open ${model} in this browser: ${error instanceof Error ? error.message : String(error)}`),
      );
    });
    return opening;
  }

  /** Generates in the page, reporting tokens and the tier of each fed row as the edge's stream does; returns the text. */
  async chat(
    model: string,
    apiKey: string,
    messages: ChatMessage[],
    sampling: Sampling,
    callbacks: StreamCallbacks,
    signal: AbortSignal,
  ): Promise<string> {
    const m = await this.open(model, apiKey);
    const run = m.generate({
      messages,
      maxTokens: sampling.max_tokens,
      temperature: sampling.temperature,
      topP: sampling.top_p,
      topK: sampling.top_k,
      seed: sampling.seed,
      signal,
      provenance: true,
    });
    const decoder = new TextDecoder();
    let text = '';
    let position = 0;
    for await (const delta of run) {
      text += delta.text;
      for (const id of delta.ids) callbacks.onToken({ position: position++, id, text: decoder.decode(m.tokenizer.tokenBytes(id)) });
      for (const row of delta.rows) callbacks.onTier(row.position, row.tier);
    }
    this.render(m, run.stats());
    return text;
  }

  close(): void {
    void this.opened?.model.then((m) => m.close()).catch(() => {});
    this.opened = null;
    this.panel.replaceChildren();
  }

  private show(...children: HTMLElement[]): void {
    this.panel.replaceChildren(el('h2', {}, 'Computing in this browser'), ...children);
  }

  /** The backend, what the page downloaded, and the last generation's rows by tier. */
  private render(m: BrowserModel, stats: BrowserGenerationStats | null): void {
    const { bundle, runtime } = m.traffic();
    const facts: HTMLElement[] = [
      el(
        'p',
        {},
        'backend: ',
        el('strong', { 'data-testid': 'backend' }, m.backend),
        m.adapter ? ` (adapter ${m.adapter})` : ' (onnxruntime-web WASM, no WebGPU adapter used)',
        `, version ${m.version}`,
      ),
      el(
        'p',
        { 'data-testid': 'downloaded' },
        `downloaded: ${mib(bundle.bytes)} of bundle objects and rows in ${bundle.requests} requests, ${mib(runtime.bytes)} of runtime`,
      ),
    ];
    if (stats) facts.push(generationFacts(stats));
    this.show(...facts);
  }
}

function generationFacts(stats: BrowserGenerationStats): HTMLElement {
  const { rows } = stats.rows;
  const steps = stats.promptTokens + stats.completionTokens;
  const perToken = (n: number) => (steps ? (n / steps).toFixed(2) : '0');
  const tiers = [
    ["this page's memory (hot set and LRU)", rows.hot + rows.lru],
    ['Cache Storage', rows.cache],
    ['the edge', rows.origin],
    ...(rows.patch ? [['a patch', rows.patch] as const] : []),
  ] as const;
  return el(
    'div',
    { 'data-testid': 'generation-stats' },
    el(
      'p',
      {},
      `last generation: ${stats.completionTokens} tokens after a prompt of ${stats.promptTokens}; ${stats.rows.lookups} rows looked up (${perToken(stats.rows.lookups)} per token), from:`,
    ),
    el('ul', {}, ...tiers.map(([where, n]) => el('li', { 'data-testid': 'rows-from' }, `${where}: ${n} (${perToken(n)} per token)`))),
    el(
      'p',
      { 'data-testid': 'generation-network' },
      `read from the edge during it: ${stats.network.requests} requests, ${stats.network.bytes} bytes (${stats.completionTokens ? Math.round(stats.network.bytes / stats.completionTokens) : 0} B per generated token)`,
    ),
  );
}
