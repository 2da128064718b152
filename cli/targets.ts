/**
 * Where `publish`, `versions`, `rollback`, `gc`, `patch` and `status` act:
 *   s3://bucket/prefix   any S3-compatible store (R2's S3 endpoint included); endpoint, region and
 *                        credentials from flags or the environment
 *   local[://bucket]     the local R2 of `wrangler dev` (its state folder, .wrangler/state/v3)
 */
import { InputError } from '../src/errors.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { AwsS3Store } from './stores/aws-s3-store.ts';
import { miniflareR2Store } from './stores/miniflare-r2.ts';

export interface TargetOptions {
  endpoint?: string;
  region?: string;
  /** wrangler dev's state folder, for local targets. */
  persistTo?: string;
  /** Defaults to $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export interface OpenTarget {
  label: string;
  store: ObjectStore;
  close(): Promise<void>;
}

export const DEFAULT_LOCAL_BUCKET = 'flexmem-bundles';
export const WRANGLER_STATE = '.wrangler/state/v3';

export async function openTarget(spec: string, options: TargetOptions = {}): Promise<OpenTarget> {
  const s3 = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(spec);
  if (s3) {
    const [, bucket, rawPrefix = ''] = s3;
    const prefix = rawPrefix && !rawPrefix.endsWith('/') ? `${rawPrefix}/` : rawPrefix;
    const env = process.env;
    const store = new AwsS3Store({
      bucket,
      prefix,
      endpoint: options.endpoint ?? env.FLEXMEM_S3_ENDPOINT ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL,
      region: options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'auto',
      accessKeyId: options.credentials?.accessKeyId ?? env.AWS_ACCESS_KEY_ID,
      secretAccessKey: options.credentials?.secretAccessKey ?? env.AWS_SECRET_ACCESS_KEY,
    });
    return { label: spec, store, close: async () => store.close() };
  }
  const local = /^local(?::\/\/([a-z0-9][a-z0-9-]{1,61}[a-z0-9]))?$/.exec(spec);
  if (local) {
    const bucket = local[1] ?? DEFAULT_LOCAL_BUCKET;
    // Loaded only for local targets: importing Miniflare costs about 1.4 s of every CLI start.
    const { Miniflare } = await import('miniflare');
    const mf = new Miniflare({
      modules: true,
      script: 'export default { fetch() { return new Response(null, { status: 404 }); } }',
      r2Buckets: { BUCKET: bucket },
      defaultPersistRoot: options.persistTo ?? WRANGLER_STATE,
    });
    const store = miniflareR2Store(await mf.getR2Bucket('BUCKET'));
    return { label: `local R2 bucket ${bucket}`, store, close: () => mf.dispose() };
  }
  throw new InputError(`unknown target ${JSON.stringify(spec)} (expected s3://bucket/prefix or local[://bucket])`);
}

/** Opens a target, runs `body`, and always closes it. */
export async function withTarget<T>(spec: string, options: TargetOptions, body: (target: OpenTarget) => Promise<T>): Promise<T> {
  const target = await openTarget(spec, options);
  try {
    return await body(target);
  } finally {
    await target.close();
  }
}
