/**
 * Load: concurrent streams on one isolate ("A public endpoint you can deploy"). The edge worker
 * runs in workerd, one Miniflare instance (one process, one isolate) per setting: "off" lets every
 * request generate at once with every decode step its own session.run (MAX_DECODE_BATCH=1),
 * "off, batched" the same with continuous batching (src/engine/step-batcher.ts, the default
 * MAX_DECODE_BATCH), "on" keeps the worker's defaults. For each concurrency C,
 * C greedy streaming completions are sent in the same tick and timed in the client: time to the
 * first token, the gaps between tokens, the tokens generated and the HTTP status. Requests refused
 * by admission control (429 or 503) are counted as rejections, apart from errors. Everything is
 * bounded: fixed concurrencies, prompts and max_tokens, a deadline per stream, and a time budget
 * checked before every batch.
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { createParser } from 'eventsource-parser';
import { readServedGraph } from '../../cli/local-bundle.ts';
import { type BatchingFloor, measureBatchingFloor } from '../lib/batching-floor.ts';
import { requestJson, type Failure } from '../lib/client.ts';
import { DEFAULT_SETTINGS } from '../../src/serving/serving-core.ts';
import type { Context } from '../lib/context.ts';
import { ROOT } from '../lib/paths.ts';
import { median, quantile, shuffled, summarize, type Summary } from '../lib/stats.ts';
import { launchAll, processMemory, seedR2, type Launched } from '../lib/worker.ts';

/** The worker's admission settings (workers/bindings.ts) and the limits they set (src/serving/admission.ts); rename here if they change. */
const ADMISSION_VARS = { MAX_ACTIVE_GENERATIONS: 'maxActive', MAX_QUEUED_GENERATIONS: 'maxQueued', QUEUE_WAIT_MS: 'queueWaitMs' } as const;
/** "Off": so many generations may run at once that none is queued or refused. */
const ADMISSION_OFF: Record<string, string> = { MAX_ACTIVE_GENERATIONS: '1000000' };
/** Every decode step its own session.run (src/engine/step-batcher.ts not used). */
const UNBATCHED: Record<string, string> = { MAX_DECODE_BATCH: '1' };
/** Statuses of a request refused by admission control: rejections, not errors. */
const REJECTED = new Set([429, 503]);

const CONCURRENCY = [1, 4, 16, 64];
/** Distinct prompts; stream i of a batch sends prompt i mod PROMPTS. */
const PROMPTS = 8;
const PROMPT_TOKENS = 64;

export type AdmissionId = 'off' | 'off-batched' | 'on';

export interface AdmissionSetting {
  id: AdmissionId;
  label: string;
  /** What this setting overrides on top of wrangler.toml's [vars]. */
  overrides: Record<string, string>;
}

/** One stream, timed from the moment its request was issued. */
export interface StreamRecord {
  prompt: number;
  /** HTTP status; 0 when no response arrived. */
  status: number;
  outcome: 'ok' | 'rejected' | 'error';
  headersMs: number;
  firstTokenMs: number;
  endMs: number;
  /** usage.completion_tokens, or the text deltas received when the stream did not finish. */
  tokens: number;
  deltas: number;
  /** Median and largest gap between consecutive text deltas. */
  gapMedianMs: number;
  gapMaxMs: number;
  retryAfter?: string;
  error?: string;
}

export interface BatchRecord {
  round: number;
  /** First request issued → last stream ended. */
  wallMs: number;
  tokens: number;
  tokensPerSecond: number;
  /** Largest workerd RSS sampled during the batch (bytes). */
  peakRss: number;
  /** Batched decode runs during the batch and the steps they ran (the worker's /metrics). */
  decodeBatches?: { runs: number; rows: number };
  streams: StreamRecord[];
}

export interface Quantiles {
  p50: number;
  p99: number;
  n: number;
}

export interface LoadCell {
  concurrency: number;
  admission: AdmissionId;
  requests: number;
  ok: number;
  rejected: number;
  errors: number;
  statuses: Record<string, number>;
  /** Aggregate tokens/s of a batch, over rounds. */
  tokensPerSecond: Summary;
  wallMs: Summary;
  /** Over every stream that received a token, all rounds pooled. */
  ttftMs: Quantiles;
  /** Over every gap between consecutive tokens of every stream, all rounds pooled. */
  interTokenMs: Quantiles;
  /** Per stream (last token − first) / (tokens − 1), then the median over streams. */
  meanInterTokenMs: number;
  /** How fast refused requests were answered (request issued → response ended). */
  rejectMs: { min: number; p50: number; max: number; n: number };
  tokensPerStream: number;
  /** Decode steps per batched session.run, from the worker's /metrics over the cell's batches (NaN when none ran batched). */
  meanDecodeBatch?: number;
  peakRss: number;
  errorSamples: string[];
  batches: BatchRecord[];
}

export interface LoadResult {
  suite: 'load';
  rounds: number;
  roundsPlanned: number;
  concurrency: number[];
  maxTokens: number;
  promptTokens: number;
  prompts: number;
  request: Record<string, unknown>;
  settings: AdmissionSetting[];
  /** MAX_DECODE_BATCH of the batched settings ("off, batched" and "on"): wrangler.toml's [vars], else the built-in default. */
  decodeBatch?: { value: string; from: 'wrangler.toml' | 'built-in' };
  /** The admission settings "on" ran with: wrangler.toml's [vars], else the worker's built-in defaults. */
  onDefaults: Record<string, { value: string; from: 'wrangler.toml' | 'built-in' }>;
  /** Whether the bundled edge worker mentions each admission setting (if not, "on" and "off" are the same worker). */
  admissionInWorker: Record<string, boolean>;
  streamTimeoutMs: number;
  budgetMs: number;
  /** Why the suite stopped before its planned rounds, if it did. */
  stoppedEarly: string | null;
  warmups: number;
  cells: LoadCell[];
  /** The arithmetic floor of 16 batched streams, measured before the workers start. */
  floor?: BatchingFloor;
  memory: Record<AdmissionId, { rssAfter: number; hwm: number }>;
  failures: Failure[];
}

export async function runLoad(ctx: Context): Promise<LoadResult> {
  const quick = ctx.options.quick;
  const roundsPlanned = ctx.rounds(3, 1);
  const maxTokens = quick ? 16 : 64;
  const streamTimeoutMs = quick ? 60_000 : 120_000;
  const budgetMs = quick ? 4 * 60_000 : 15 * 60_000;
  const warmups = quick ? 1 : 2;
  const demo = await ctx.demoBundle();
  const script = ctx.edgeScript();
  const prompts = await promptSet(ctx);
  ctx.log('load: the floor of batching (one matrix product with every weight, onnxruntime-web WASM in Node)');
  const floor = await measureBatchingFloor(readServedGraph(demo.dir, demo.manifest).graph, demo.manifest.config.hidden_size, {
    promptTokens: PROMPT_TOKENS,
    tokens: maxTokens,
    rounds: quick ? 1 : 3,
  });
  const seed = await seedR2(script, [{ dir: demo.dir, model: 'flex', version: demo.manifest.version }]);
  const settings: AdmissionSetting[] = [
    { id: 'off', label: 'off, unbatched', overrides: { ...ADMISSION_OFF, ...UNBATCHED } },
    { id: 'off-batched', label: 'off, batched', overrides: ADMISSION_OFF },
    { id: 'on', label: 'on (defaults, batched)', overrides: {} },
  ];
  const decodeBatch: LoadResult['decodeBatch'] =
    ctx.vars.MAX_DECODE_BATCH !== undefined
      ? { value: ctx.vars.MAX_DECODE_BATCH, from: 'wrangler.toml' }
      : { value: String(DEFAULT_SETTINGS.maxDecodeBatch), from: 'built-in' };
  const onDefaults: LoadResult['onDefaults'] = {};
  for (const [name, field] of Object.entries(ADMISSION_VARS)) {
    const set = ctx.vars[name];
    onDefaults[name] =
      set !== undefined ? { value: set, from: 'wrangler.toml' } : { value: String(DEFAULT_SETTINGS.admission[field]), from: 'built-in' };
  }
  const admissionInWorker = bundleMentions(script, Object.keys(ADMISSION_VARS));
  const body = (prompt: string) => ({ model: 'flex', prompt, max_tokens: maxTokens, temperature: 0 });
  const failures: Failure[] = [];
  const batches = new Map<string, RawBatch[]>();
  const key = (c: number, a: AdmissionId) => `${c}/${a}`;
  let workers: Launched[] = [];
  let stoppedEarly: string | null = null;
  let roundsDone = 0;
  const started = performance.now();
  try {
    // No API key is sent: launchWorker serves anonymous requests (ALLOW_ANONYMOUS) unless vars say otherwise.
    workers = await launchAll(settings.map((s) => ({ scriptDir: script, vars: { ...ctx.vars, ...s.overrides }, seed })));
    const worker = (id: AdmissionId) => workers[settings.findIndex((s) => s.id === id)];
    for (const s of settings) ctx.log(`load: started admission ${s.id} (workerd pid ${worker(s.id).pid})`);
    // Warm-up, nothing measured: the bundle load, the ORT session and the JIT, one stream at a time.
    for (const s of settings) {
      for (let i = 0; i < warmups; i++) {
        for (let attempt = 1; ; attempt++) {
          const r = await timedStream(worker(s.id).url, body(prompts[i % prompts.length]), streamTimeoutMs);
          if (r.outcome === 'ok') break;
          failures.push({ where: `${s.id} warm-up`, message: r.error ?? `HTTP ${r.status}` });
          if (attempt >= 3) throw new Error(`load: warm-up of admission ${s.id} failed: ${r.error ?? `HTTP ${r.status}`}`);
          await sleep(500);
        }
      }
    }
    rounds: for (let round = 0; round < roundsPlanned; round++) {
      for (const [ci, c] of CONCURRENCY.entries()) {
        for (const s of shuffled(settings, round * 16 + ci + 1)) {
          if (performance.now() - started > budgetMs) {
            stoppedEarly = `time budget of ${budgetMs / 1000} s reached in round ${round + 1} (before ${c} streams, admission ${s.id})`;
            ctx.log(`load: ${stoppedEarly}`);
            break rounds;
          }
          const w = worker(s.id);
          const b = await batch(w, prompts, c, body, streamTimeoutMs, round);
          const list = batches.get(key(c, s.id)) ?? [];
          list.push(b);
          batches.set(key(c, s.id), list);
          const count = (o: StreamRecord['outcome']) => b.streams.filter((x) => x.outcome === o).length;
          ctx.log(
            `load: round ${round + 1} C=${c} admission ${s.id}: ${b.tokensPerSecond.toFixed(0)} tokens/s, ok ${count('ok')}, rejected ${count('rejected')}, errors ${count('error')}, ${(b.wallMs / 1000).toFixed(1)} s`,
          );
          await idle(w.url);
        }
      }
      roundsDone = round + 1;
    }
    const cells: LoadCell[] = [];
    for (const c of CONCURRENCY)
      for (const s of settings) if (batches.has(key(c, s.id))) cells.push(aggregate(c, s.id, batches.get(key(c, s.id))!));
    const memory = Object.fromEntries(
      settings.map((s) => {
        const m = worker(s.id).pid ? processMemory(worker(s.id).pid!) : null;
        return [s.id, { rssAfter: m?.rss ?? NaN, hwm: m?.hwm ?? NaN }];
      }),
    ) as LoadResult['memory'];
    return {
      suite: 'load',
      rounds: roundsDone,
      roundsPlanned,
      concurrency: CONCURRENCY,
      maxTokens,
      promptTokens: PROMPT_TOKENS,
      prompts: prompts.length,
      request: { ...body('…'), stream: true },
      settings,
      onDefaults,
      admissionInWorker,
      decodeBatch,
      streamTimeoutMs,
      budgetMs,
      stoppedEarly,
      warmups,
      cells,
      floor,
      memory,
      failures,
    };
  } finally {
    for (const w of workers) await w.dispose().catch(() => {});
  }
}

/** PROMPTS passages of the held-out validation text, about PROMPT_TOKENS tokens each. */
async function promptSet(ctx: Context): Promise<string[]> {
  const tok = await ctx.demoTokenizer();
  const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8');
  const out: string[] = [];
  for (let i = 0; i < PROMPTS; i++) {
    const passage = text.slice(20_000 + i * 2_500, 20_000 + i * 2_500 + PROMPT_TOKENS * 10);
    const start = passage.indexOf('. ') + 2;
    out.push(tok.decode(tok.encode(passage.slice(start)).slice(0, PROMPT_TOKENS)));
  }
  return out;
}

function bundleMentions(scriptDir: string, names: readonly string[]): Record<string, boolean> {
  const js = readdirSync(scriptDir)
    .filter((f) => f.endsWith('.js'))
    .map((f) => readFileSync(join(scriptDir, f), 'utf8'))
    .join('\n');
  return Object.fromEntries(names.map((n) => [n, js.includes(n)]));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Between batches: waits (at most 10 s) until the worker reports no active or queued generation
 * on GET /metrics, so a stream cut at its deadline does not load the next batch; a short pause
 * when the worker has no such gauge.
 */
async function idle(url: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    const r = await requestJson(url, '/metrics').catch(() => null);
    const text = typeof r?.json === 'string' ? r.json : '';
    if (r?.status !== 200 || !/^flexmem_(active|queued)_generations/m.test(text)) break;
    const busy = [...text.matchAll(/^flexmem_(?:active|queued)_generations(?:\{[^}]*\})?\s+(\S+)/gm)].some((m) => Number(m[1]) > 0);
    if (!busy) break;
    await sleep(100);
  }
  await sleep(200);
}

async function batch(
  w: Launched,
  prompts: string[],
  c: number,
  body: (prompt: string) => Record<string, unknown>,
  timeoutMs: number,
  round: number,
): Promise<RawBatch> {
  const counted = await decodeBatchCounters(w.url);
  let peakRss = w.pid ? (processMemory(w.pid)?.rss ?? NaN) : NaN;
  const sampler = setInterval(() => {
    const rss = w.pid ? processMemory(w.pid)?.rss : undefined;
    if (rss !== undefined && !(rss <= peakRss)) peakRss = rss;
  }, 50);
  const t0 = performance.now();
  try {
    // Every request is issued in this same tick.
    const streams = await Promise.all(
      Array.from({ length: c }, (_, i) =>
        timedStream(w.url, body(prompts[i % prompts.length]), timeoutMs).then((r) => ({ ...r, prompt: i % prompts.length })),
      ),
    );
    const wallMs = performance.now() - t0;
    const tokens = streams.reduce((n, s) => n + s.tokens, 0);
    const after = await decodeBatchCounters(w.url);
    const decodeBatches = { runs: after.runs - counted.runs, rows: after.rows - counted.rows };
    return { round, wallMs, tokens, tokensPerSecond: tokens / (wallMs / 1000), peakRss, streams, decodeBatches };
  } finally {
    clearInterval(sampler);
  }
}

interface Timed extends Omit<StreamRecord, 'prompt'> {
  /** Arrival of each text delta, ms since the request was issued (pooled per cell, not stored). */
  arrivals: number[];
}

type RawBatch = Omit<BatchRecord, 'streams'> & { streams: (Timed & { prompt: number })[] };

/** The worker's batched decode runs and the steps in them so far (GET /metrics; 0 when it has no such counters). */
async function decodeBatchCounters(url: string): Promise<{ runs: number; rows: number }> {
  const r = await requestJson(url, '/metrics').catch(() => null);
  const text = typeof r?.json === 'string' ? r.json : '';
  const value = (name: string) => Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)`, 'm'))?.[1] ?? 0);
  return { runs: value('flexmem_decode_batches_total'), rows: value('flexmem_decode_batch_rows_total') };
}

/** A streamed completion that always resolves: status, outcome and the arrival of every token. */
function timedStream(baseUrl: string, body: Record<string, unknown>, timeoutMs: number): Promise<Timed> {
  const target = new URL(`${baseUrl}/v1/completions`);
  const payload = JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const now = () => performance.now() - t0;
    const arrivals: number[] = [];
    let status = 0;
    let headersMs = NaN;
    let usageTokens: number | null = null;
    let done = false;
    let streamError: string | undefined;
    let retryAfter: string | undefined;
    let settled = false;
    const finish = (outcome: StreamRecord['outcome'], error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const g = arrivals.slice(1).map((t, i) => t - arrivals[i]);
      resolve({
        status,
        outcome,
        headersMs,
        firstTokenMs: arrivals[0] ?? NaN,
        endMs: now(),
        tokens: outcome === 'ok' ? (usageTokens ?? arrivals.length) : arrivals.length,
        deltas: arrivals.length,
        gapMedianMs: median(g),
        gapMaxMs: g.length ? Math.max(...g) : NaN,
        arrivals,
        ...(retryAfter !== undefined ? { retryAfter } : {}),
        ...(error ? { error: error.slice(0, 300) } : {}),
      });
    };
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (response) => {
        status = response.statusCode ?? 0;
        headersMs = now();
        const header = response.headers['retry-after'];
        if (header !== undefined) retryAfter = String(header);
        response.setEncoding('utf8');
        response.on('error', (error) => finish('error', `response: ${error.message}`));
        if (status !== 200) {
          let text = '';
          response.on('data', (chunk: string) => {
            if (text.length < 1000) text += chunk;
          });
          response.on('end', () => (REJECTED.has(status) ? finish('rejected') : finish('error', `HTTP ${status}: ${text}`)));
          return;
        }
        let at = 0;
        const parser = createParser({
          onEvent: ({ data }) => {
            if (data === '[DONE]') {
              done = true;
              return;
            }
            let json: any;
            try {
              json = JSON.parse(data);
            } catch {
              streamError ??= 'an event that is not JSON';
              return;
            }
            if (json.error) streamError ??= `stream error: ${json.error.message}`;
            if (json.choices?.[0]?.text) arrivals.push(at);
            if (json.usage) usageTokens = json.usage.completion_tokens;
          },
          onError: (error) => {
            streamError ??= `stream: ${error.message}`;
          },
        });
        response.on('data', (chunk: string) => {
          at = now(); // every event completed by this chunk arrived now
          parser.feed(chunk);
        });
        response.on('end', () =>
          streamError ? finish('error', streamError) : done ? finish('ok') : finish('error', 'the stream ended before [DONE]'),
        );
      },
    );
    const timer = setTimeout(() => {
      finish('error', `no end within ${timeoutMs} ms`);
      request.destroy();
    }, timeoutMs);
    request.on('error', (error) => finish('error', `POST ${target.pathname}: ${error.message}`));
    request.end(payload);
  });
}

function quantiles(values: number[]): Quantiles {
  return { p50: quantile(values, 0.5), p99: quantile(values, 0.99), n: values.filter(Number.isFinite).length };
}

function aggregate(concurrency: number, admission: AdmissionId, batches: RawBatch[]): LoadCell {
  const streams = batches.flatMap((b) => b.streams);
  const statuses: Record<string, number> = {};
  for (const s of streams) statuses[String(s.status)] = (statuses[String(s.status)] ?? 0) + 1;
  const gapsPooled = streams.flatMap((s) => s.arrivals.slice(1).map((t, i) => t - s.arrivals[i]));
  const rejected = streams.filter((s) => s.outcome === 'rejected');
  const rejectMs = rejected.map((s) => s.endMs);
  const ok = streams.filter((s) => s.outcome === 'ok');
  const cell: LoadCell = {
    concurrency,
    admission,
    requests: streams.length,
    ok: ok.length,
    rejected: rejected.length,
    errors: streams.filter((s) => s.outcome === 'error').length,
    statuses,
    tokensPerSecond: summarize(batches.map((b) => b.tokensPerSecond)),
    wallMs: summarize(batches.map((b) => b.wallMs)),
    ttftMs: quantiles(streams.map((s) => s.firstTokenMs)),
    interTokenMs: quantiles(gapsPooled),
    meanInterTokenMs: median(
      streams
        .filter((s) => s.arrivals.length > 1)
        .map((s) => (s.arrivals[s.arrivals.length - 1] - s.arrivals[0]) / (s.arrivals.length - 1)),
    ),
    rejectMs: { min: quantile(rejectMs, 0), p50: quantile(rejectMs, 0.5), max: quantile(rejectMs, 1), n: rejectMs.length },
    tokensPerStream: median(ok.map((s) => s.tokens)),
    meanDecodeBatch:
      batches.reduce((n, b) => n + (b.decodeBatches?.rows ?? 0), 0) / batches.reduce((n, b) => n + (b.decodeBatches?.runs ?? 0), 0),
    peakRss: Math.max(...batches.map((b) => b.peakRss)),
    errorSamples: [...new Set(streams.filter((s) => s.error).map((s) => s.error!))].slice(0, 3),
    // Stored without the arrival times (the pooled quantiles above keep what they say).
    batches: batches.map((b) => ({ ...b, streams: b.streams.map(({ arrivals: _, ...s }) => s) })),
  };
  return cell;
}
