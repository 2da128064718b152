/** GET /metrics: this isolate's counters in Prometheus text, checked against what the responses said. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const MODEL = 'measured';
const dir = tempDir();
let worker: RunningWorker;
let version: string;

beforeAll(async () => {
  worker = await startWorker({ vars: { HOT_SET_BYTES: '0' } });
  version = await serveBundle(worker, await buildTinyBundle(dir.path, 'flex', { reference: false }), MODEL);
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

/** The value of one series, or 0 when it is absent. */
async function scrape(): Promise<(series: string) => number> {
  const response = await fetch(`${worker.url}/metrics`);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  return (series) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };
}

describe('GET /metrics', () => {
  it('counts requests, tokens, latencies and rows as the responses report them', async () => {
    const earlier = await scrape();
    const json = await (
      await post(`${worker.url}/v1/completions`, { model: MODEL, prompt: 'The President said', max_tokens: 6, temperature: 0 })
    ).json();
    const events = await readAllEvents(
      await post(`${worker.url}/v1/completions`, {
        model: MODEL,
        prompt: 'The people',
        max_tokens: 5,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const streamed = events.at(-2) as { usage: { prompt_tokens: number; completion_tokens: number } };
    const finish = events.find((e) => e !== '[DONE]' && e.choices?.[0]?.finish_reason) as {
      flexmem: { timing: { rows: Record<string, number> } };
    };
    expect((await post(`${worker.url}/v1/completions`, { model: 'nobody', prompt: 'x' })).status).toBe(404);
    const later = await scrape();
    const delta = (series: string) => later(series) - earlier(series);

    expect(delta('flexmem_http_requests_total{route="/v1/completions",status="200"}')).toBe(2);
    expect(delta('flexmem_http_requests_total{route="/v1/completions",status="404"}')).toBe(1);
    expect(delta('flexmem_prompt_tokens_total{model="measured"}')).toBe(json.usage.prompt_tokens + streamed.usage.prompt_tokens);
    expect(delta('flexmem_completion_tokens_total{model="measured"}')).toBe(
      json.usage.completion_tokens + streamed.usage.completion_tokens,
    );
    // One first-token observation per completion; one gap per further delta.
    expect(delta('flexmem_time_to_first_token_seconds_count{model="measured"}')).toBe(2);
    expect(delta('flexmem_inter_token_seconds_count{model="measured"}')).toBeGreaterThan(0);
    const rowsOf = (t: Record<string, number>) => Object.values(t).reduce((a, b) => a + b, 0);
    const tiers = ['patch', 'hot', 'lru', 'cache', 'kv', 'origin'];
    const counted = tiers.reduce((sum, tier) => sum + delta(`flexmem_rows_total{tier="${tier}"}`), 0);
    expect(counted).toBe(rowsOf(json.flexmem.timing.rows) + rowsOf(finish.flexmem.timing.rows));
    expect(later(`flexmem_model_version_info{model="measured",version="${version}"}`)).toBe(1);
    expect(later('flexmem_active_generations')).toBe(0);
  });
});

describe('GET /health', () => {
  it('says per model whether it can be served, and from which version, without a key', async () => {
    await worker.bucket.put('models/broken.json', new TextEncoder().encode('not json'));
    const health = await (await fetch(`${worker.url}/health`)).json();
    expect(health.status).toBe('degraded');
    expect(health.models).toEqual(
      expect.arrayContaining([
        { model: MODEL, version, status: 'ready' },
        { model: 'broken', version: null, status: 'unavailable' },
      ]),
    );
    await worker.bucket.delete('models/broken.json');
  });
});
