/** The worker's bindings and settings (wrangler.toml [vars], secrets), mapped onto the serving core's parts once per isolate. */
import type { AccessSettings } from '../src/api/access.ts';
import { ApiKeys } from '../src/api/api-keys.ts';
import { parseCorsOrigins } from '../src/api/cors.ts';
import type { ApiLimits } from '../src/api/host.ts';
import type { RateLimitSettings } from '../src/api/rate-limit.ts';
import { InternalError } from '../src/errors.ts';
import { DEFAULT_HIERARCHY } from '../src/memory/memory-hierarchy.ts';
import { CacheApiPageCache, KvPageCache, type PageCache } from '../src/memory/page-cache.ts';
import { DEFAULT_SETTINGS, type ServingSettings } from '../src/serving/serving-core.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { DelayedStore } from '../src/storage/delayed-store.ts';
import { S3Store } from '../src/storage/s3-store.ts';
import { R2Store } from './r2-store.ts';

export interface Env {
  /** L3 origin when ORIGIN is "r2" (the default). */
  BUNDLES?: R2Bucket;
  /** Optional L2 tier. */
  ROWS_KV?: KVNamespace;
  ORIGIN?: string;
  /** Key prefix of the bundles in the bucket. */
  STORE_PREFIX?: string;
  S3_ENDPOINT?: string;
  S3_BUCKET?: string;
  S3_REGION?: string;
  S3_ACCESS_KEY_ID?: string;
  S3_SECRET_ACCESS_KEY?: string;
  POINTER_TTL_SECONDS?: string;
  /** How long a model keeps serving the pointer it holds while the origin cannot be read. */
  POINTER_MAX_STALE_SECONDS?: string;
  /** Tries of one origin read, the first included. */
  ORIGIN_ATTEMPTS?: string;
  /** Budget of one origin read, every attempt and backoff included. */
  ORIGIN_DEADLINE_MS?: string;
  /** Longest wait before the first retry (doubling, jittered). */
  ORIGIN_BACKOFF_MS?: string;
  ISOLATE_CACHE_BYTES?: string;
  HOT_SET_BYTES?: string;
  PAGE_BYTES?: string;
  /** "false" turns the Cache API tier off (benchmarks of the cold path). */
  USE_CACHE_API?: string;
  MAX_BODY_BYTES?: string;
  /** Largest gap merged into one origin read when a wave has more than six reads. */
  COALESCE_GAP_BYTES?: string;
  /** Added latency per origin read, for benchmarks of a far-away bucket. */
  ORIGIN_LATENCY_MS?: string;
  DEFAULT_MAX_TOKENS?: string;
  /** Secret: comma-separated API keys, or `sha256:<hex>` digests of keys. */
  API_KEYS?: string;
  /** "true" serves without keys when API_KEYS is empty; otherwise such a deployment refuses requests. */
  ALLOW_ANONYMOUS?: string;
  /** "true": GET /v1/bundles/* (bundle objects and table rows for browser clients, src/api/bundle-objects.ts) needs no key; the rest still does. */
  PUBLIC_BUNDLES?: string;
  /** Comma-separated origins browsers may call from, or "*". */
  CORS_ORIGINS?: string;
  /** Optional rate-limiting binding ([[ratelimits]]); without it there is no rate limit. */
  RATE_LIMITER?: RateLimit;
  /** The binding's simple.period, sent as Retry-After with a 429 (infra/sync-wrangler.ts keeps them equal). */
  RATE_LIMIT_PERIOD_SECONDS?: string;
  /** Generations at once per isolate, requests that may wait for one, and how long (src/serving/admission.ts). */
  MAX_ACTIVE_GENERATIONS?: string;
  MAX_QUEUED_GENERATIONS?: string;
  QUEUE_WAIT_MS?: string;
  /** Most decode steps of concurrent generations run as one session.run; "1" runs each alone (src/engine/step-batcher.ts). */
  MAX_DECODE_BATCH?: string;
  /** Most prompt tokens per session.run; a longer prompt runs in parts (src/engine/decoder.ts). Unset or "0": at once. */
  MAX_RUN_TOKENS?: string;
}

function number(env: Env, key: keyof Env, fallback: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0)
    throw new InternalError(`setting ${key} must be a non-negative number, got ${JSON.stringify(raw)}`);
  return value;
}

export function readSettings(env: Env): ServingSettings {
  return {
    ...DEFAULT_SETTINGS,
    pointerTtlMs: number(env, 'POINTER_TTL_SECONDS', DEFAULT_SETTINGS.pointerTtlMs / 1000) * 1000,
    pointerMaxStaleMs: number(env, 'POINTER_MAX_STALE_SECONDS', DEFAULT_SETTINGS.pointerMaxStaleMs / 1000) * 1000,
    origin: {
      attempts: number(env, 'ORIGIN_ATTEMPTS', DEFAULT_SETTINGS.origin.attempts),
      deadlineMs: number(env, 'ORIGIN_DEADLINE_MS', DEFAULT_SETTINGS.origin.deadlineMs),
      backoffMs: number(env, 'ORIGIN_BACKOFF_MS', DEFAULT_SETTINGS.origin.backoffMs),
    },
    hierarchy: {
      isolateBytes: number(env, 'ISOLATE_CACHE_BYTES', DEFAULT_HIERARCHY.isolateBytes),
      hotSetBytes: number(env, 'HOT_SET_BYTES', DEFAULT_HIERARCHY.hotSetBytes),
      pageBytes: number(env, 'PAGE_BYTES', DEFAULT_HIERARCHY.pageBytes),
      originConcurrency: DEFAULT_HIERARCHY.originConcurrency,
      coalesceGapBytes: number(env, 'COALESCE_GAP_BYTES', DEFAULT_HIERARCHY.coalesceGapBytes),
    },
    admission: {
      maxActive: number(env, 'MAX_ACTIVE_GENERATIONS', DEFAULT_SETTINGS.admission.maxActive),
      maxQueued: number(env, 'MAX_QUEUED_GENERATIONS', DEFAULT_SETTINGS.admission.maxQueued),
      queueWaitMs: number(env, 'QUEUE_WAIT_MS', DEFAULT_SETTINGS.admission.queueWaitMs),
    },
    maxDecodeBatch: Math.max(1, Math.floor(number(env, 'MAX_DECODE_BATCH', DEFAULT_SETTINGS.maxDecodeBatch))),
    maxRunTokens: Math.max(0, Math.floor(number(env, 'MAX_RUN_TOKENS', DEFAULT_SETTINGS.maxRunTokens))),
  };
}

export function apiLimits(env: Env): ApiLimits {
  return { maxBodyBytes: number(env, 'MAX_BODY_BYTES', 1 << 20), defaultMaxTokens: number(env, 'DEFAULT_MAX_TOKENS', 256) };
}

/** The rate limiter, when the RATE_LIMITER binding exists (src/api/rate-limit.ts). */
export function rateLimitSettings(env: Env): RateLimitSettings | undefined {
  return env.RATE_LIMITER && { limiter: env.RATE_LIMITER, periodSeconds: number(env, 'RATE_LIMIT_PERIOD_SECONDS', 60) };
}

/** API keys, anonymous access and CORS origins (src/api/access.ts). */
export function accessSettings(env: Env): AccessSettings {
  const anonymous = env.ALLOW_ANONYMOUS ?? '';
  if (!['', 'true', 'false'].includes(anonymous))
    throw new InternalError(`setting ALLOW_ANONYMOUS must be "true" or "false", got ${JSON.stringify(anonymous)}`);
  return {
    keys: ApiKeys.parse(env.API_KEYS ?? ''),
    allowAnonymous: anonymous === 'true',
    corsOrigins: parseCorsOrigins(env.CORS_ORIGINS ?? ''),
  };
}

/** L1 (the Cache API, unless USE_CACHE_API is "false") and L2 (Workers KV, when bound). */
export function pageCaches(env: Env): PageCache[] {
  const caches_: PageCache[] = [];
  if (env.USE_CACHE_API !== 'false') caches_.push(new CacheApiPageCache((caches as unknown as { default: Cache }).default));
  if (env.ROWS_KV) caches_.push(new KvPageCache(env.ROWS_KV));
  return caches_;
}

/** The origin bucket: the R2 binding, or an S3-compatible endpoint given by secrets. */
export function originStore(env: Env): ObjectStore {
  const latency = number(env, 'ORIGIN_LATENCY_MS', 0);
  const store = bucketStore(env);
  return latency > 0 ? new DelayedStore(store, latency) : store;
}

function bucketStore(env: Env): ObjectStore {
  const prefix = env.STORE_PREFIX ?? '';
  if ((env.ORIGIN ?? 'r2') === 's3') {
    const { S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY } = env;
    if (!S3_ENDPOINT || !S3_BUCKET || !S3_ACCESS_KEY_ID || !S3_SECRET_ACCESS_KEY) {
      throw new InternalError('ORIGIN is s3 but S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY_ID or S3_SECRET_ACCESS_KEY is not set');
    }
    return new S3Store({
      endpoint: S3_ENDPOINT,
      bucket: S3_BUCKET,
      region: env.S3_REGION,
      accessKeyId: S3_ACCESS_KEY_ID,
      secretAccessKey: S3_SECRET_ACCESS_KEY,
      prefix,
    });
  }
  if (!env.BUNDLES) throw new InternalError('no BUNDLES R2 binding (or set ORIGIN = "s3")');
  return new R2Store(env.BUNDLES, prefix);
}
