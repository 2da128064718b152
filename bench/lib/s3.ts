/** A real S3 protocol server (s3rver) on loopback, as the S3 origin of the worker. */
import { mkdirSync } from 'node:fs';
// @ts-expect-error s3rver ships no type declarations
import S3rver from 's3rver';
import { S3Store, type S3Options } from '../../src/storage/s3-store.ts';

export interface RunningS3 {
  options: S3Options;
  store: S3Store;
  /** The worker's settings for this origin. */
  vars: Record<string, string>;
  close(): Promise<void>;
}

/** Starts s3rver over `directory` (kept between runs, so large uploads are not repeated). */
export async function startS3(directory: string, bucket = 'flexmem-bench'): Promise<RunningS3> {
  mkdirSync(directory, { recursive: true });
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: bucket }] });
  const { port } = (await server.run()) as { port: number };
  const options: S3Options = {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    prefix: '',
  };
  return {
    options,
    store: new S3Store(options),
    vars: {
      ORIGIN: 's3',
      S3_ENDPOINT: options.endpoint,
      S3_BUCKET: bucket,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      STORE_PREFIX: '',
    },
    close: () => server.close(),
  };
}
