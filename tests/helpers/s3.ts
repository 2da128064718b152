/** A real S3 protocol server (s3rver) on loopback, for the S3 origin path. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error s3rver ships no type declarations
import S3rver from 's3rver';
import { S3Store, type S3Options } from '../../src/storage/s3-store.ts';

export interface RunningS3 {
  options: S3Options;
  store: S3Store;
  close(): Promise<void>;
}

export async function startS3(bucket = 'flexmem', prefix = '', otherBuckets: string[] = []): Promise<RunningS3> {
  const directory = mkdtempSync(join(tmpdir(), 'flexmem-s3rver-'));
  const server = new S3rver({
    port: 0,
    address: '127.0.0.1',
    silent: true,
    directory,
    configureBuckets: [bucket, ...otherBuckets].map((name) => ({ name })),
  });
  const { port } = (await server.run()) as { port: number };
  // s3rver's built-in credentials.
  const options: S3Options = {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    prefix,
  };
  return {
    options,
    store: new S3Store(options),
    close: async () => {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
