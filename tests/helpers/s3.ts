/** A real S3 protocol server (s3rver) on loopback, for the S3 origin path. */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buffer } from 'node:stream/consumers';
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
  writeBeforeAnswering(server.store);
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

/** The part of s3rver's filesystem store (lib/stores/filesystem.js) that writes objects. */
interface FilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  putObject(object: S3rverObject): Promise<{ size: number; md5: string }>;
}

interface S3rverObject {
  bucket: string;
  key: string;
  metadata: unknown;
  content: Buffer | NodeJS.ReadableStream;
}

/**
 * s3rver 3.7.1 answers a PUT once its hashing stream has seen the body, before the file is
 * written: on a loaded machine a read right after the PUT (publish reads every object back) gets
 * a short file, and an overwritten pointer can still read as the old one. S3 and R2 answer only
 * once the object is stored, so this makes s3rver do the same: the body is written to a temporary
 * file and renamed into place before the PUT is answered.
 */
function writeBeforeAnswering(store: FilesystemStore): void {
  store.putObject = async (object) => {
    const path = store.getResourcePath(object.bucket, object.key, 'object');
    const content = Buffer.isBuffer(object.content) ? object.content : await buffer(object.content);
    const md5 = createHash('md5').update(content).digest('hex');
    await mkdir(dirname(path), { recursive: true });
    await writeFile(`${path}.partial`, content);
    await rename(`${path}.partial`, path);
    await store.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { size: content.length, md5 };
  };
}
