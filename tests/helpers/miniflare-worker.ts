/**
 * The worker as wrangler bundles it (`wrangler deploy --dry-run --outdir <dir>`), in real workerd
 * through Miniflare, with a local R2 bucket and, when built beside it, the playground page as
 * static assets routed as wrangler.toml's `[assets]` says. Shared by the tests and the benchmarks.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { parse } from 'smol-toml';
import { miniflareR2Store } from '../../cli/stores/miniflare-r2.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';

export interface WorkerOptions {
  vars?: Record<string, string>;
  kv?: boolean;
  /** A RATE_LIMITER binding (src/api/rate-limit.ts): `limit` requests per key per `period` seconds. None by default. */
  rateLimit?: { limit: number; period: 10 | 60 };
}

/** A line the worker logged (console.log, console.error, ...). */
export interface WorkerLog {
  level: string;
  message: string;
}

export interface RunningWorker {
  url: string;
  /** Everything the worker logged so far (printed too when FLEXMEM_TEST_LOGS=1). */
  logs: WorkerLog[];
  mf: Miniflare;
  /** The BUNDLES bucket, as an ObjectStore. */
  bucket: ObjectStore;
  dispose(): Promise<void>;
}

/** Where tests/global-setup.ts builds the page for the worker built in `workerDir`. */
export const assetsDirOf = (workerDir: string) => `${workerDir}-assets`;

/** The paths wrangler.toml sends to the worker even where an asset matches (`run_worker_first`). */
function workerFirstPaths(): string[] {
  const config = parse(readFileSync(new URL('../../wrangler.toml', import.meta.url), 'utf8')) as {
    assets?: { run_worker_first?: string[] };
  };
  return config.assets?.run_worker_first ?? [];
}

/** Workers static assets: an asset answers its path, any other path reaches the worker. */
function staticAssets(workerDir: string) {
  const directory = assetsDirOf(workerDir);
  if (!existsSync(directory)) return {};
  return {
    assets: {
      directory,
      routerConfig: { has_user_worker: true, static_routing: { user_worker: workerFirstPaths() } },
    },
  };
}

/** The Miniflare options that load wrangler's bundle of the worker, as wrangler.toml configures it. */
export function workerScript(workerDir: string) {
  const files = readdirSync(workerDir);
  return {
    // Listed explicitly: Miniflare's module scan trips on onnxruntime-web's dynamic import().
    modules: [
      { type: 'ESModule' as const, path: join(workerDir, files.find((f) => f.endsWith('.js'))!) },
      ...files.filter((f) => f.endsWith('.wasm')).map((f) => ({ type: 'CompiledWasm' as const, path: join(workerDir, f) })),
    ],
    modulesRoot: workerDir,
    compatibilityDate: '2026-04-20',
    compatibilityFlags: ['enable_request_signal'],
  };
}

export async function launchWorker(workerDir: string, options: WorkerOptions = {}): Promise<RunningWorker> {
  const logs: WorkerLog[] = [];
  const mf = new Miniflare({
    ...workerScript(workerDir),
    ...staticAssets(workerDir),
    r2Buckets: { BUNDLES: 'flexmem-bundles' },
    kvNamespaces: options.kv ? ['ROWS_KV'] : [],
    ratelimits: options.rateLimit ? { RATE_LIMITER: { simple: options.rateLimit } } : {},
    // Anonymous unless a test says otherwise: access control has its own tests (tests/access.test.ts).
    bindings: { POINTER_TTL_SECONDS: '1', ALLOW_ANONYMOUS: 'true', ...options.vars },
    port: 0,
    handleStructuredLogs: ({ level, message }: WorkerLog) => {
      logs.push({ level, message });
      if (process.env.FLEXMEM_TEST_LOGS === '1') process.stderr.write(`[worker ${level}] ${message}\n`);
    },
  });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const bucket = miniflareR2Store(await mf.getR2Bucket('BUNDLES'));
  return { url, mf, bucket, logs, dispose: () => mf.dispose() };
}
