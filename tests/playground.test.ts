/**
 * The playground page in a real browser: Debian's chromium driven by playwright-core, the page
 * served as static assets by the real worker in workerd (Miniflare) on 127.0.0.1, a tiny bundle
 * behind it. It types a prompt, sends it with Enter, watches the text stream in, opens a token's
 * inspector, ablates that token's memory and regenerates with the same seed, and downloads the
 * edits, which must parse with the schema `flexmem patch` reads.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EditsFileSchema } from '../src/memory/memory-edits.ts';
import { within } from './helpers/deadline.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { get, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

/**
 * A tiny random bundle by default; FLEXMEM_PLAYGROUND_BUNDLE may name a built bundle folder (the
 * README's screenshot uses the demo model: FLEXMEM_PLAYGROUND_BUNDLE=.flexmem/bundles/flex).
 */
const BUNDLE = process.env.FLEXMEM_PLAYGROUND_BUNDLE;
const MODEL = BUNDLE ? 'demo' : 'tiny-flex';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Where the screenshot for the README goes, when FLEXMEM_SCREENSHOT names a file. */
const SCREENSHOT = process.env.FLEXMEM_SCREENSHOT;
const STEP_MS = 30_000;

const dir = tempDir();
let worker: RunningWorker;
let browser: Browser;
let page: Page;
const consoleErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run does)`);
  worker = await startWorker();
  await serveBundle(worker, BUNDLE ?? (await buildTinyBundle(dir.path, 'flex', { reference: false })), MODEL);
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(STEP_MS);
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => consoleErrors.push(error.message));
});
afterAll(async () => {
  await browser?.close();
  await worker?.dispose();
  dir.remove();
});

describe('the playground page', () => {
  it('is served by the worker at / as a static asset, while /health and /v1/* stay the API', async () => {
    const index = await get(`${worker.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await index.text()).toContain('flexmem playground');
    expect((await get(`${worker.url}/health`)).headers.get('content-type')).toMatch(/^application\/json/);
    const models = await (await get(`${worker.url}/v1/models`)).json();
    expect(models.data.map((m: { id: string }) => m.id)).toEqual([MODEL]);
  });

  it('loads with no console errors and lists the models', async () => {
    await page.goto(`${worker.url}/`);
    await page.locator(`#model option[value="${MODEL}"]`).waitFor({ state: 'attached' });
    await expect.poll(() => page.getByTestId('status').textContent()).toBe('ready');
    expect(consoleErrors).toEqual([]);
  });

  it('streams a completion sent with Enter, token by token (Shift+Enter is a new line)', async () => {
    await page.fill('#max_tokens', '24');
    await page.fill('#seed', '5');
    const prompt = page.getByTestId('prompt');
    await prompt.click();
    await prompt.type('Tell me about');
    await prompt.press('Shift+Enter');
    await prompt.type('the harbor.');
    expect(await prompt.inputValue()).toBe('Tell me about\nthe harbor.');
    await prompt.press('Enter');
    const answer = page.getByTestId('assistant').last();
    await answer.and(page.locator('[data-done="true"]')).waitFor();
    const tokens = answer.getByTestId('token');
    expect(await tokens.count()).toBeGreaterThan(1);
    expect(((await answer.textContent()) ?? '').length).toBeGreaterThan(0);
    // Every token but the last was fed to the model and names the tier its row came from.
    const tiers = await tokens.evaluateAll((spans) => spans.map((s) => s.getAttribute('data-tier')));
    expect(tiers.slice(0, -1).every((t) => ['isolate', 'cache', 'kv', 'origin'].includes(t ?? ''))).toBe(true);
    expect(await prompt.inputValue()).toBe('');
  });

  it('opens a token: the tier of its row, and the inspector views', async () => {
    const token = page.getByTestId('assistant').last().getByTestId('token').first();
    await token.click();
    const tier = await page.getByTestId('tier').textContent();
    expect(['isolate', 'cache', 'kv', 'origin']).toContain(tier);
    const inspector = page.getByTestId('inspector');
    await inspector.getByTestId('token-view').waitFor();
    await inspector.getByTestId('heatmap').waitFor();
    expect(await inspector.locator('.error').count()).toBe(0);
    // One row of promoted tokens per memory layer; the heatmap's last row is the token opened.
    const layers = (await inspector.locator('[data-testid="heatmap"] thead th').count()) - 1;
    expect(layers).toBeGreaterThan(0);
    expect(await inspector.getByTestId('promoted').count()).toBe(layers);
    expect(await inspector.locator('[data-testid="heatmap"] tr.current td').count()).toBe(layers + 1);
  });

  it('ablates the token’s memory and regenerates with the same seed, side by side; the edit exports as edits.json', async () => {
    const answer = page.getByTestId('assistant').last();
    const before = (await answer.textContent()) ?? '';
    const id = Number(await answer.getByTestId('token').first().getAttribute('data-id'));
    await page.getByTestId('ablate').click();
    const after = page.getByTestId('compare-after');
    await after.and(page.locator('[data-done="true"]')).waitFor();
    expect(await page.getByTestId('compare-before').textContent()).toBe(before);
    expect(await after.textContent(), 'ablating the row visibly changes the regenerated text').not.toBe(before);
    if (SCREENSHOT) {
      mkdirSync(dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    }

    const [download] = await within(
      STEP_MS,
      'the edits.json download',
      Promise.all([page.waitForEvent('download'), page.getByTestId('export').click()]),
    );
    expect(download.suggestedFilename()).toBe('edits.json');
    const file = join(dir.path, 'edits.json');
    await download.saveAs(file);
    const parsed = EditsFileSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
    expect(parsed.data!.edits).toHaveLength(1);
    expect(parsed.data!.edits).toEqual([{ token: id, op: 'ablate' }]);
    expect(consoleErrors).toEqual([]);
  });

  it('inspects any token from the search box', async () => {
    await page.getByTestId('search').fill('42');
    await page.getByTestId('search').press('Enter');
    await expect.poll(() => page.getByTestId('token-view').locator('h3').textContent()).toMatch(/\(id 42\)/);
  });
});
