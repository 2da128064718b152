/**
 * The playground computing in the browser (`/?compute=browser`): Debian's chromium through
 * playwright-core, the page and onnxruntime-web's files served as static assets by the real worker
 * in workerd (Miniflare) on 127.0.0.1, a tiny bundle behind it. WASM here (fast);
 * tests/browser-client.test.ts covers WebGPU. The page's greedy text must equal the edge's, and
 * every request it makes is recorded: no completion request in browser mode, only GET /v1/models
 * and bundle objects (plus the page's own assets).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { chromium, type Browser, type Page, type Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GZIP_SUFFIX, ORT_ASSETS } from '../src/web/ort-assets.ts';
import { MAX_ASSET_BYTES, oversizedAssets } from '../web/vite.config.ts';
import { within } from './helpers/deadline.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { assetsDirOf } from './helpers/miniflare-worker.ts';
import { get, post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'tiny-flex';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const STEP_MS = 30_000;
const PROMPT = 'Tell me about the harbor.';
const MAX_TOKENS = 24;

const dir = tempDir();
let worker: RunningWorker;
let version: string;
let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run does)`);
  worker = await startWorker();
  version = await serveBundle(worker, await buildTinyBundle(dir.path, 'flex', { reference: false }), MODEL);
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});
afterAll(async () => {
  await browser?.close();
  await worker?.dispose();
  dir.remove();
});

/** A fresh page (its own Cache Storage) recording every request it makes; the page's timers run on Playwright's clock. */
async function openPage(path: string): Promise<{ page: Page; requests: { method: string; url: string }[] }> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const requests: { method: string; url: string }[] = [];
  page.on('request', (request) => requests.push({ method: request.method(), url: request.url() }));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.clock.install();
  await page.goto(`${worker.url}${path}`);
  await page.locator(`#model option[value="${MODEL}"]`).waitFor({ state: 'attached' });
  return { page, requests };
}

/** Sends `prompt` greedily and waits for the answer to finish; returns the ids and text of its tokens as the page shows them. */
async function sendGreedy(page: Page, prompt: string, maxTokens = MAX_TOKENS): Promise<Greedy> {
  await page.fill('#temperature', '0');
  await page.fill('#max_tokens', String(maxTokens));
  await page.getByTestId('prompt').fill(prompt);
  await page.getByTestId('prompt').press('Enter');
  const answer = page.getByTestId('assistant').last();
  await answer.and(page.locator('[data-done="true"]')).waitFor();
  const ids = await answer.getByTestId('token').evaluateAll((spans) => spans.map((s) => Number(s.getAttribute('data-id'))));
  return { ids, text: (await answer.textContent()) ?? '' };
}

interface Greedy {
  ids: number[];
  /** Each token's text, decoded on its own (as the page shows tokens), joined. */
  text: string;
}

/** The worker's own greedy chat completion of `prompt`, with its tokens. */
async function edgeGreedy(prompt: string): Promise<Greedy> {
  const response = await post(`${worker.url}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: 'user', content: prompt }],
    max_tokens: MAX_TOKENS,
    temperature: 0,
    flexmem: { provenance: true },
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { flexmem: { tokens: { id: number; text: string }[][] } };
  const tokens = body.flexmem.tokens[0];
  return { ids: tokens.map((t) => t.id), text: tokens.map((t) => t.text).join('') };
}

describe('the playground computing in the browser', () => {
  it("serves onnxruntime-web's files as static assets, none over Workers' 25 MiB limit and no wasm bundled", async () => {
    const assets = assetsDirOf(inject('workerDir'));
    expect(oversizedAssets(assets)).toEqual([]);
    // The control: the WebGPU build's wasm as onnxruntime-web ships it would not fit, which is why it is served gzipped.
    const ortDist = dirname(createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
    expect(statSync(join(ortDist, ORT_ASSETS.webgpu.wasm)).size).toBeGreaterThan(MAX_ASSET_BYTES);
    expect(oversizedAssets(ortDist).map((o) => o.file)).toContain(ORT_ASSETS.webgpu.wasm);
    for (const { glue, wasm } of Object.values(ORT_ASSETS))
      for (const file of [glue, wasm + GZIP_SUFFIX]) {
        const response = await get(`${worker.url}/ort/${file}`);
        expect(response.status, file).toBe(200);
        expect((await response.arrayBuffer()).byteLength).toBe(statSync(join(assets, 'ort', file)).size);
      }
    // Vite resolved onnxruntime-web with its extern-wasm condition: no wasm copied into the page's build.
    expect(readdirSync(assets, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.wasm'))).toEqual([]);
  });

  it("/?compute=browser: WASM greedy text equals the edge's; only /v1/models and bundle objects are requested", async () => {
    const { page, requests } = await openPage('/?compute=browser&backend=wasm');
    expect(await page.getByTestId('compute-browser').isChecked()).toBe(true);
    await expect.poll(() => page.getByTestId('backend').textContent(), { timeout: STEP_MS }).toBe('wasm');
    await expect.poll(() => page.getByTestId('status').textContent(), { timeout: STEP_MS }).toBe('ready: computing in this browser (wasm)');
    expect(await page.getByTestId('downloaded').textContent()).toMatch(
      /^downloaded: \d+\.\d\d MiB of bundle objects and rows in \d+ requests/,
    );

    const greedy = await sendGreedy(page, PROMPT);
    expect(greedy.ids.length).toBeGreaterThan(1);
    expect(greedy).toEqual(await edgeGreedy(PROMPT));
    expect(await page.getByTestId('assistant').last().getAttribute('data-compute')).toBe('browser');
    const rowsFrom = await page.getByTestId('rows-from').allTextContents();
    expect(rowsFrom.join('\n')).toMatch(/this page's memory.*: \d+ \(/);
    expect(rowsFrom.join('\n')).toMatch(/the edge: \d+ \(/);
    expect(await page.getByTestId('generation-network').textContent()).toMatch(/^read from the edge during it: \d+ requests/);
    // Every token but the last was fed, in this page, and names where its row came from.
    const tiers = await page
      .getByTestId('assistant')
      .last()
      .getByTestId('token')
      .evaluateAll((spans) => spans.map((s) => s.getAttribute('data-tier')));
    expect(tiers.length).toBeGreaterThan(1);
    expect(tiers.slice(0, -1).every((t) => ['isolate', 'cache', 'origin'].includes(t ?? ''))).toBe(true);

    const api = requests.filter((r) => new URL(r.url).pathname.startsWith('/v1/'));
    expect(api.filter((r) => /completions/.test(r.url))).toEqual([]);
    const allowed = new RegExp(`^${worker.url}/v1/(models|bundles/${version}/.+)$`);
    expect(api.filter((r) => r.method !== 'GET' || !allowed.test(r.url))).toEqual([]);
    expect(api.some((r) => r.url.endsWith('/compute.onnx'))).toBe(true);
    const others = requests.filter((r) => !api.includes(r));
    expect(others.filter((r) => !/^\/(\?.*)?$|^\/assets\/|^\/ort\//.test(new URL(r.url).pathname + new URL(r.url).search))).toEqual([]);
    expect(others.some((r) => r.url.endsWith(`/ort/${ORT_ASSETS.wasm.wasm}${GZIP_SUFFIX}`))).toBe(true);

    // The inspector still asks the worker, in this mode too.
    await page.getByTestId('assistant').last().getByTestId('token').first().click();
    expect(await page.getByTestId('tier').textContent()).toMatch(/^(isolate|cache|origin) \(/);
    await page.getByTestId('inspector').getByTestId('token-view').waitFor();
    await page.getByTestId('inspector').getByTestId('heatmap').waitFor();
    expect(await page.getByTestId('inspector').locator('.error').count()).toBe(0);

    // Stop: with the page's timers held, the generation cannot pass its first yield until Stop is clicked.
    await page.clock.pauseAt(Date.now() + 60_000);
    const answers = await page.getByTestId('assistant').count();
    await page.fill('#max_tokens', '64');
    await page.getByTestId('prompt').fill('And the railroads?');
    await page.getByTestId('prompt').press('Enter');
    await expect.poll(() => page.getByTestId('assistant').count()).toBe(answers + 1);
    await page.getByTestId('stop').click();
    await page.clock.resume();
    const stopped = page.getByTestId('assistant').last();
    await stopped.and(page.locator('[data-done="true"]')).waitFor();
    expect(await page.getByTestId('status').textContent()).toMatch(/^stopped: [01] tokens/);
    expect(await stopped.getByTestId('token').count()).toBeLessThanOrEqual(1);
    expect(await page.getByTestId('stop').isDisabled()).toBe(true);
    expect(requests.filter((r) => /completions/.test(r.url))).toEqual([]);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('/?compute=edge computes the same greedy text on the edge; the switch changes the mode and the address; Stop cancels', async () => {
    const { page, requests } = await openPage('/?compute=edge&backend=wasm');
    expect(await page.getByTestId('compute-edge').isChecked()).toBe(true);
    expect(await page.getByTestId('browser-compute').isHidden()).toBe(true);
    expect(await sendGreedy(page, PROMPT)).toEqual(await edgeGreedy(PROMPT));
    // The control for the request log of the browser mode: here the chat is a completion request.
    expect(requests.filter((r) => r.method === 'POST' && r.url === `${worker.url}/v1/chat/completions`)).toHaveLength(1);
    expect(requests.some((r) => r.url.includes('/v1/bundles/'))).toBe(false);

    // Stop while the edge has not answered yet: the request is cancelled.
    let held: (route: Route) => void = () => {};
    const heldRoute = new Promise<Route>((resolve) => {
      held = resolve;
    });
    await page.route('**/v1/chat/completions', (route) => held(route));
    await page.getByTestId('prompt').fill('And the railroads?');
    await page.getByTestId('prompt').press('Enter');
    const route = await within(STEP_MS, 'the held chat request', heldRoute);
    await page.getByTestId('stop').click();
    await page.getByTestId('assistant').last().and(page.locator('[data-done="true"]')).waitFor();
    expect(await page.getByTestId('status').textContent()).toMatch(/^stopped: 0 tokens/);
    await route.abort().catch(() => {}); // already cancelled by the page
    await page.unroute('**/v1/chat/completions');

    await page.getByTestId('compute-browser').check();
    expect(new URL(page.url()).search).toBe('?compute=browser&backend=wasm');
    expect(await page.getByTestId('browser-compute').isVisible()).toBe(true);
    await expect.poll(() => page.getByTestId('backend').textContent(), { timeout: STEP_MS }).toBe('wasm');
    await page.getByTestId('compute-edge').check();
    expect(new URL(page.url()).search).toBe('?compute=edge&backend=wasm');
    expect(await page.getByTestId('browser-compute').isHidden()).toBe(true);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });
});
