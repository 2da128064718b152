/**
 * Issue 6, item 4: random-weight models whose tables are hundreds of MB (far larger than their
 * compute weights), served by the real edge worker from an S3 origin (s3rver, so table bytes
 * never pass through workerd except the rows it reads). Measured from outside: workerd's RSS
 * (/proc) and the isolate's V8 heap (inspector), and per generated token the memory wait and the
 * origin bytes, for 2-3 table sizes side by side.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { streamCompletion, withRetry, type Failure, type StreamResult } from '../lib/client.ts';
import type { Context } from '../lib/context.ts';
import { scaleBundle, tableBytes, type ScaleShape } from '../lib/bundles.ts';
import { heapOf, type HeapUsage } from '../lib/inspector.ts';
import { WORK } from '../lib/paths.ts';
import { startS3 } from '../lib/s3.ts';
import { median, shuffled, summarize, type Summary } from '../lib/stats.ts';
import { bundleKey } from '../../src/storage/object-store.ts';
import { initializerBytes } from './steps.ts';
import { launchAll, processMemory, publish, type Launched } from '../lib/worker.ts';

export interface ScaleInstance {
  shape: ScaleShape;
  setting: 'cold' | 'default';
  tableBytes: number;
  computeBytes: number;
  rowBytes: number;
  rssIdle: number;
  rssAfter: number;
  hwm: number;
  heapIdle: HeapUsage | null;
  /** After serving, after a full GC (what stays resident). */
  heapAfter: HeapUsage | null;
  /** After serving, before that GC (includes garbage). */
  heapAfterNoGc: HeapUsage | null;
  /** Client: (finish of an N-token stream - finish of a 1-token stream) / (N - 1). */
  decodePerTokenMs: Summary;
  memoryPerDecodeMs: Summary;
  /** The origin alone: one page-sized range read of this table from Node (s3rver), median. */
  originReadMs: number;
  originBytesPerToken: number;
  originRequestsPerToken: number;
  rowsByTier: Record<string, number>;
}

export interface ScaleResult {
  suite: 'scale';
  rounds: number;
  maxTokens: number;
  instances: ScaleInstance[];
  buildSeconds: Record<string, number>;
  /** Requests that failed and were retried. */
  failures: Failure[];
}

export function scaleShapes(quick: boolean): ScaleShape[] {
  const base = { layers: 32, hidden: 128 };
  return (quick ? [8192, 16384] : [8192, 16384, 32768]).map((vocab) => ({ vocab, ...base }));
}

export async function runScale(ctx: Context): Promise<ScaleResult> {
  const rounds = ctx.rounds(5, 2);
  const maxTokens = ctx.options.quick ? 16 : 32;
  const shapes = scaleShapes(ctx.options.quick);
  const buildSeconds: Record<string, number> = {};
  const bundles = [];
  for (const shape of shapes) {
    ctx.log(`scale: bundle vocab ${shape.vocab} x ${shape.layers} layers x d ${shape.hidden} ...`);
    const b = await scaleBundle(shape);
    if (b.buildSeconds) buildSeconds[`scale v${shape.vocab}`] = b.buildSeconds;
    bundles.push(b);
  }
  const script = ctx.edgeScript();
  // s3rver keeps its folder between runs, so publishing skips versions already complete there; a
  // folder holding other versions (the bundles were rebuilt) is emptied first, so it does not grow.
  const s3Dir = join(WORK, 's3-scale');
  const stamp = join(WORK, 's3-scale.versions');
  const versions = bundles.map((b) => b.manifest.version).join(',');
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== versions) rmSync(s3Dir, { recursive: true, force: true });
  writeFileSync(stamp, versions);
  const s3 = await startS3(s3Dir);
  const prompt = await ctx.prompt(32);
  const body = (model: string, max_tokens: number) => ({ model, prompt, max_tokens, temperature: 0.8, seed: 5 });
  const failures: Failure[] = [];
  const workers: {
    key: string;
    shape: ScaleShape;
    setting: 'cold' | 'default';
    w: Launched;
    model: string;
    rssIdle: number;
    heapIdle: HeapUsage | null;
    runs: { full: StreamResult; pre: StreamResult }[];
  }[] = [];
  try {
    for (const [i, b] of bundles.entries()) {
      const t = performance.now();
      const model = `scale-v${shapes[i].vocab}`;
      await publish(s3.store, b.dir, model);
      ctx.log(
        `scale: ${model} published to s3rver in ${((performance.now() - t) / 1000).toFixed(1)} s (${(tableBytes(b.manifest) / 2 ** 20).toFixed(0)} MiB of tables)`,
      );
    }
    // Quick mode measures the cold setting only.
    const settings = ctx.options.quick ? (['cold'] as const) : (['cold', 'default'] as const);
    const plan = shapes.flatMap((shape) => settings.map((setting) => ({ shape, setting })));
    const launched = await launchAll(
      plan.map(({ setting }) => ({
        scriptDir: script,
        vars: {
          ...ctx.vars,
          ...s3.vars,
          ...(setting === 'cold' ? { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' } : {}),
        },
        inspect: true,
      })),
    );
    // Registered at once, so the finally below disposes them even if a later step fails.
    for (const [i, { shape, setting }] of plan.entries())
      workers.push({
        key: `${shape.vocab}/${setting}`,
        shape,
        setting,
        w: launched[i],
        model: `scale-v${shape.vocab}`,
        rssIdle: NaN,
        heapIdle: null,
        runs: [],
      });
    for (const x of workers) {
      // Idle: the script is loaded and has answered one request that touches no bundle.
      await fetch(`${x.w.url}/health`).then((r) => r.text());
      x.rssIdle = (x.w.pid && processMemory(x.w.pid)?.rss) || NaN;
      x.heapIdle = await heapOf(x.w);
    }
    // Warm-up, one instance at a time (s3rver shares this process with the client; parallel loads
    // made workerd's reads from it fail).
    for (const x of workers) {
      for (let i = 0; i < (ctx.options.quick ? 1 : 2); i++)
        await withRetry(`${x.key} warm-up`, failures, () => streamCompletion(x.w.url, body(x.model, maxTokens)));
    }
    for (let round = 0; round < rounds; round++) {
      for (const x of shuffled(workers, round + 7)) {
        const full = await withRetry(`${x.key} round ${round + 1}`, failures, () => streamCompletion(x.w.url, body(x.model, maxTokens)));
        const pre = await withRetry(`${x.key} round ${round + 1} (1 token)`, failures, () => streamCompletion(x.w.url, body(x.model, 1)));
        x.runs.push({ full, pre });
      }
      ctx.log(`scale: round ${round + 1}/${rounds} done`);
    }
    // Control: the origin's own time for one page-sized range read of each table, from Node.
    const originRead = new Map<number, number>();
    for (const [i, b] of bundles.entries()) {
      const shard = b.manifest.tables!.shards[0];
      const key = bundleKey(b.manifest.version, shard.path);
      const times: number[] = [];
      for (let k = 0; k < 30; k++) {
        const offset = Math.floor((((k * 7919) % 1000) / 1000) * (shard.bytes - 32768));
        const t = performance.now();
        await s3.store.get(key, { offset, length: 32768 });
        times.push(performance.now() - t);
      }
      originRead.set(shapes[i].vocab, median(times));
    }
    const instances: ScaleInstance[] = [];
    for (const x of workers) {
      const b = bundles[shapes.indexOf(x.shape)];
      const m = (x.w.pid && processMemory(x.w.pid)) || { rss: NaN, hwm: NaN };
      const per = (r: { full: StreamResult; pre: StreamResult }, key: string) =>
        ((r.full.timing?.[key] ?? NaN) - (r.pre.timing?.[key] ?? NaN)) / ((r.full.usage?.completion_tokens ?? NaN) - 1);
      const rowsByTier: Record<string, number> = {};
      for (const r of x.runs)
        for (const [tier, n] of Object.entries((r.full.timing?.rows ?? {}) as Record<string, number>))
          rowsByTier[tier] = (rowsByTier[tier] ?? 0) + n;
      instances.push({
        shape: x.shape,
        setting: x.setting,
        tableBytes: tableBytes(b.manifest),
        computeBytes: initializerBytes(join(b.dir, b.manifest.objects.compute.path)),
        rowBytes: b.manifest.tables!.layout.rowBytes,
        rssIdle: x.rssIdle,
        rssAfter: m.rss,
        hwm: m.hwm,
        heapIdle: x.heapIdle,
        heapAfterNoGc: await heapOf(x.w, false),
        heapAfter: await heapOf(x.w),
        decodePerTokenMs: summarize(x.runs.map((r) => (r.full.finishMs - r.pre.finishMs) / ((r.full.usage?.completion_tokens ?? NaN) - 1))),
        originReadMs: originRead.get(x.shape.vocab) ?? NaN,
        memoryPerDecodeMs: summarize(x.runs.map((r) => per(r, 'memory_wait_ms'))),
        originBytesPerToken: median(x.runs.map((r) => per(r, 'origin_bytes'))),
        originRequestsPerToken: median(x.runs.map((r) => per(r, 'origin_requests'))),
        rowsByTier,
      });
    }
    return { suite: 'scale', rounds, maxTokens, instances, buildSeconds, failures };
  } finally {
    for (const x of workers) await x.w.dispose().catch(() => {});
    await s3.close().catch(() => {});
  }
}
