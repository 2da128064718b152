/**
 * flexmem/web in a real browser: Debian's Chromium through playwright-core, WebGPU through
 * SwiftShader (a CPU emulation: for correctness, never speed), the real worker in workerd
 * (Miniflare) as the edge, the demo models as bundles built here. The harness page
 * (tests/browser/harness.ts) is built with Vite and served, with onnxruntime-web's assets, from
 * 127.0.0.1 (a secure context); it calls the worker cross-origin.
 *
 * - Parity: greedy text in the browser (WASM) equals the worker's token for token on the golden
 *   prompts; WebGPU's logits are measured against onnxruntime-node, and its greedy tokens must
 *   equal the worker's wherever the golden fixture's top-1 margin exceeds twice that tolerance
 *   (SwiftShader takes about half a second a step, so WebGPU generates through `generate` on one
 *   prompt and reads its greedy tokens off the logits it computed on the others).
 * - A generation sends no completion request: only GET /v1/models and bundle-object reads.
 * - A second page load reads its rows from Cache Storage, not the network.
 */
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { openLocalBundle, type LocalBundle } from '../cli/local-bundle.ts';
import type { BrowserModelOptions } from '../src/web/index.ts';
import { buildHarness } from './browser/build-harness.ts';
import { serveStatic, type StaticServer } from './browser/static-server.ts';
import { within } from './helpers/deadline.ts';
import { tempDir } from './helpers/fixtures.ts';
import { type GoldenPrompt, readGolden } from './helpers/golden.ts';
import { assetsDirOf } from './helpers/miniflare-worker.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WEBGPU_FLAGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--disable-vulkan-surface',
];
const MODELS = ['flex', 'meki'] as const;
type Model = (typeof MODELS)[number];
/** The golden fixtures cover the prompt's last position and 8 continuation steps: 9 greedy tokens. */
const GREEDY_TOKENS = 9;
/** Each page call gets this long (a cold WebGPU session on SwiftShader compiles many shaders). */
const PAGE_CALL_MS = 240_000;

const golden = (model: Model) => readGolden(model);

const dir = tempDir();
let worker: RunningWorker;
let site: StaticServer;
let browser: Browser;
const bundles = {} as Record<Model, string>;
const local = {} as Record<Model, LocalBundle>;

beforeAll(async () => {
  for (const model of MODELS) {
    bundles[model] = join(dir.path, model);
    // No lens: the browser never reads it, and it is most of a demo bundle's build time.
    await buildBundle(join('models', model), bundles[model], { dtype: 'f32', reference: false, progress: false, lensK: 0 });
    local[model] = await openLocalBundle(bundles[model]);
  }
  await buildHarness(join(dir.path, 'page'));
  worker = await startWorker({ vars: { CORS_ORIGINS: '*' } });
  for (const model of MODELS) await serveBundle(worker, bundles[model], model);
  // onnxruntime-web's files as tests/global-setup.ts copied them into the playground's build.
  site = await serveStatic({ '/': join(dir.path, 'page'), '/ort/': join(assetsDirOf(inject('workerDir')), 'ort') });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: WEBGPU_FLAGS });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await site?.close();
  await worker?.dispose();
  for (const model of MODELS) await local[model]?.core.close();
  dir.remove();
});

/** A page of `context` on the harness, recording every request it makes. */
async function harnessPage(context: BrowserContext): Promise<{ page: Page; requests: { method: string; url: string }[] }> {
  const page = await context.newPage();
  const requests: { method: string; url: string }[] = [];
  page.on('request', (request) => requests.push({ method: request.method(), url: request.url() }));
  page.on('pageerror', (error) => console.error(`[page] ${error.message}`));
  await page.goto(`${site.url}/harness.html`);
  await page.waitForFunction(() => 'harness' in window, null, { timeout: 30_000 });
  return { page, requests };
}

const options = (model: Model, backend: 'wasm' | 'webgpu'): BrowserModelOptions => ({
  url: worker.url,
  model,
  backend,
  ortAssetsUrl: `${site.url}/ort/`,
});

const call = <T>(what: string, promise: Promise<T>) => within(PAGE_CALL_MS, what, promise);

/** The worker's greedy completion of `prompt`: its text and token strings. */
async function workerGreedy(model: Model, prompt: string, maxTokens: number): Promise<{ text: string; tokens: string[] }> {
  const response = await post(`${worker.url}/v1/completions`, { model, prompt, max_tokens: maxTokens, temperature: 0, logprobs: 0 });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { choices: { text: string; logprobs: { tokens: string[] } }[] };
  return { text: body.choices[0].text, tokens: body.choices[0].logprobs.tokens };
}

/** onnxruntime-node's logits for a golden prompt, as the harness computes them in the page. */
async function nodeLogits(model: Model, prompt: GoldenPrompt): Promise<Float32Array> {
  const { decoder } = local[model];
  const V = decoder.config.vocab_size;
  const state = decoder.start();
  const steps = [(await decoder.step(state, prompt.prompt_ids)).slice()];
  for (const id of prompt.continuation_ids) steps.push((await decoder.step(state, [id])).slice());
  const all = Float32Array.from(steps.flatMap((step) => Array.from(step)));
  return all.subarray(all.length - prompt.logits_shape[0] * V);
}

/** The page's logits for each golden prompt, and how far each is from onnxruntime-node's. */
async function pageLogits(page: Page, model: Model, prompts: GoldenPrompt[]) {
  const computed: Float32Array[] = [];
  const diffs: number[] = [];
  for (const prompt of prompts) {
    const logits = await call(
      'logits',
      page.evaluate(([name, p, c, r]) => window.harness.logits(name, p, c, r), [
        model,
        prompt.prompt_ids,
        prompt.continuation_ids,
        prompt.logits_shape[0],
      ] as const),
    );
    computed.push(Float32Array.from(logits));
    diffs.push(maxAbsDiff(logits, await nodeLogits(model, prompt)));
  }
  return { computed, diffs, worst: Math.max(...diffs) };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
};

/** The golden fixture's top-1 margin (top logit minus the second) at each of its rows. */
function margins(prompt: GoldenPrompt): number[] {
  const bytes = Buffer.from(prompt.logits_f32_b64, 'base64');
  const logits = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const [rows, V] = prompt.logits_shape;
  return Array.from({ length: rows }, (_, r) => {
    const row = Array.from(logits.subarray(r * V, (r + 1) * V)).sort((x, y) => y - x);
    return row[0] - row[1];
  });
}

/** The top token of each row of `logits` (rows of `V`, the vocabulary's size). */
function argmaxRows(logits: Float32Array, V: number): number[] {
  return Array.from({ length: logits.length / V }, (_, r) => {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[r * V + v] > logits[r * V + best]) best = v;
    return best;
  });
}

const tokenStrings = (model: Model, ids: number[]) => ids.map((id) => new TextDecoder().decode(local[model].tokenizer.tokenBytes(id)));

it('Chromium gives the SwiftShader WebGPU adapter on 127.0.0.1', async () => {
  const context = await browser.newContext();
  const { page } = await harnessPage(context);
  const adapter = await call(
    'requestAdapter',
    page.evaluate(() => window.harness.webGpuAdapter()),
  );
  console.log(`WebGPU adapter: ${adapter}`);
  expect(adapter).toMatch(/swiftshader/i);
  await context.close();
});

describe.each(MODELS)('%s in the browser', (model) => {
  const prompts = golden(model).prompts;
  const measured: Partial<Record<'wasm' | 'webgpu', number>> = {};

  it('WASM: greedy equals the worker token for token on the golden prompts; no completion request leaves the page', async () => {
    const context = await browser.newContext();
    const { page, requests } = await harnessPage(context);
    const opened = await call(
      'open',
      page.evaluate(([name, o]) => window.harness.open(name, o), [model, options(model, 'wasm')] as const),
    );
    expect(opened.backend).toBe('wasm');
    for (const prompt of prompts) {
      const run = await call(
        'greedy',
        page.evaluate(([name, p, n]) => window.harness.greedy(name, p, n), [model, prompt.text, 24] as const),
      );
      const served = await workerGreedy(model, prompt.text, 24);
      expect(tokenStrings(model, run.ids)).toEqual(served.tokens);
      expect(run.text).toBe(served.text);
      expect(run.ids.slice(0, 8)).toEqual(prompt.continuation_ids); // and PyTorch's greedy path
    }
    const toWorker = requests.filter((r) => r.url.startsWith(worker.url));
    expect(toWorker.filter((r) => /completions/.test(r.url))).toEqual([]);
    const allowed = new RegExp(`^${worker.url}/v1/(models|bundles/${opened.version}/.+)$`);
    expect(toWorker.filter((r) => r.method !== 'GET' || !allowed.test(r.url))).toEqual([]);
    expect(toWorker.some((r) => r.url.endsWith('/compute.onnx'))).toBe(true);

    const { worst } = await pageLogits(page, model, prompts);
    measured.wasm = worst;
    console.log(`${model}: browser WASM, max |logit - onnxruntime-node| = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-3);
    await context.close();
  });

  it('WebGPU: logits near onnxruntime-node, greedy equal to the worker where the golden margin exceeds twice the tolerance', async () => {
    const context = await browser.newContext();
    const { page, requests } = await harnessPage(context);
    const opened = await call(
      'open',
      page.evaluate(([name, o]) => window.harness.open(name, o), [model, options(model, 'webgpu')] as const),
    );
    expect(opened.backend).toBe('webgpu');
    expect(opened.adapter).toMatch(/swiftshader/i);
    const { worst, diffs, computed } = await pageLogits(page, model, prompts);
    measured.webgpu = worst;
    // Control: the same comparison against another prompt's logits is far outside any tolerance here.
    const control = maxAbsDiff(
      await nodeLogits(model, prompts[0]),
      (await nodeLogits(model, prompts[1])).subarray(0, prompts[0].logits_shape[0] * local[model].decoder.config.vocab_size),
    );
    const tolerance = worst * 10;
    console.log(
      `${model}: browser WebGPU (SwiftShader), max |logit - onnxruntime-node| = ${worst.toExponential(2)} (per prompt ${diffs.map((d) => d.toExponential(2)).join(', ')}); tolerance ${tolerance.toExponential(2)}; control ${control.toFixed(2)}`,
    );
    expect(worst).toBeLessThan(1e-2);
    expect(control).toBeGreaterThan(tolerance);

    for (const [i, prompt] of prompts.entries()) {
      const served = await workerGreedy(model, prompt.text, GREEDY_TOKENS);
      // Row k decides token k; once a row's margin is thin, that token (and so every later one) may differ.
      const thin = margins(prompt).findIndex((margin) => margin <= 2 * tolerance);
      const comparable = thin === -1 ? GREEDY_TOKENS : thin;
      console.log(`${model} "${prompt.text}": WebGPU greedy compared on ${comparable} of ${GREEDY_TOKENS} tokens`);
      // Row k of the logits above was computed after feeding the golden continuation's first k tokens, which are
      // the worker's greedy tokens: so its argmax is the token WebGPU's greedy generation picks at step k.
      expect(tokenStrings(model, prompt.continuation_ids)).toEqual(served.tokens.slice(0, prompt.continuation_ids.length));
      expect(tokenStrings(model, argmaxRows(computed[i], local[model].decoder.config.vocab_size)).slice(0, comparable)).toEqual(
        served.tokens.slice(0, comparable),
      );
      if (i > 0) continue;
      // And the generation loop itself, on WebGPU, on the first prompt.
      const run = await call(
        'greedy',
        page.evaluate(([name, p, n]) => window.harness.greedy(name, p, n), [model, prompt.text, GREEDY_TOKENS] as const),
      );
      expect(tokenStrings(model, run.ids).slice(0, comparable)).toEqual(served.tokens.slice(0, comparable));
    }
    expect(requests.filter((r) => /completions/.test(r.url))).toEqual([]);
    await context.close();
  });
});

it('a second page load reads rows from Cache Storage, not the network; a cancelled generation stops', async () => {
  const context = await browser.newContext();
  const prompt = 'The Secretary of the Treasury reported on the tariff, the railroads and the Indian tribes of the frontier.';
  const bundleReads = (requests: { url: string }[]) => requests.filter((r) => r.url.startsWith(`${worker.url}/v1/bundles/`));

  const first = await harnessPage(context);
  const cold = await call(
    'open',
    first.page.evaluate(([o]) => window.harness.open('flex', o), [options('flex', 'wasm')] as const),
  );
  const coldRun = await call(
    'greedy',
    first.page.evaluate(([p]) => window.harness.greedy('flex', p, 32), [prompt] as const),
  );
  const coldReads = bundleReads(first.requests).length;
  await first.page.close();

  const second = await harnessPage(context);
  const warm = await call(
    'open',
    second.page.evaluate(([o]) => window.harness.open('flex', o), [options('flex', 'wasm')] as const),
  );
  const warmRun = await call(
    'greedy',
    second.page.evaluate(([p]) => window.harness.greedy('flex', p, 32), [prompt] as const),
  );
  const warmReads = bundleReads(second.requests).length;

  const perToken = (run: typeof coldRun, opened: typeof cold) => {
    const tokens = run.stats.promptTokens + run.stats.completionTokens;
    return `open: ${opened.traffic.bundle.requests} requests, ${(opened.traffic.bundle.bytes / 2 ** 20).toFixed(2)} MiB of bundle objects (+ ${(opened.traffic.runtime.bytes / 2 ** 20).toFixed(2)} MiB runtime); generation of ${run.stats.completionTokens} tokens: ${run.stats.network.requests} requests, ${run.stats.network.bytes} bytes (${(run.stats.network.bytes / run.stats.completionTokens).toFixed(0)} B/token), rows ${JSON.stringify(run.stats.rows.rows)} over ${tokens} tokens`;
  };
  console.log(`cold visit: ${perToken(coldRun, cold)}; requests to the bundle route ${coldReads}`);
  console.log(`warm visit: ${perToken(warmRun, warm)}; requests to the bundle route ${warmReads}`);
  expect(warmRun.ids).toEqual(coldRun.ids);
  // The first visit is the control: it read its objects and rows over the network.
  expect(coldReads).toBeGreaterThan(0);
  expect(coldRun.stats.rows.rows.origin).toBeGreaterThan(0);
  expect(warmReads).toBe(0);
  expect(warmRun.stats.rows.rows.origin).toBe(0);
  expect(warmRun.stats.rows.rows.cache).toBeGreaterThan(0);

  const cancelled = await call(
    'cancel',
    second.page.evaluate(([p]) => window.harness.greedy('flex', p, 64, 2), [prompt] as const),
  );
  expect(cancelled.finishReason).toBe('stop');
  expect(cancelled.ids.length).toBeLessThan(8);
  await context.close();
});
