/**
 * S3 (and R2's S3 endpoint) for the CLI, with the AWS SDK: multipart uploads for large objects,
 * SHA-256 checksums sent with every upload, pagination. The worker uses the much smaller
 * src/storage/s3-store.ts; both speak the same protocol to the same layout.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, NoSuchKey, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { ByteRange, ObjectStore, PutOptions } from '../../src/storage/object-store.ts';

export interface AwsS3Options {
  endpoint?: string;
  region: string;
  bucket: string;
  prefix: string;
  accessKeyId?: string;
  secretAccessKey?: string;
}

const PART_BYTES = 8 * 1024 * 1024;

// The SDK warns on every run that its releases after January 2027 will need Node 22. This
// project pins a release that runs on Node 20 (docs/platform.md); the warning would break the
// CLI's one-line error output, so that one warning is dropped.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  if (String(warning).startsWith('NodeVersionSupportWarning')) return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

export class AwsS3Store implements ObjectStore {
  private readonly client: S3Client;

  constructor(private readonly options: AwsS3Options) {
    this.client = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: !!options.endpoint,
      credentials:
        options.accessKeyId && options.secretAccessKey
          ? { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey }
          : undefined,
      // Checksums are computed up front and sent as headers (not aws-chunked trailers), which
      // every S3-compatible server understands.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
    });
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.options.bucket,
          Key: this.key(key),
          Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
        }),
      );
      return await out.Body!.transformToByteArray();
    } catch (error) {
      if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return null;
      throw error;
    }
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.options.bucket, Key: this.key(key), Body: body, ChecksumAlgorithm: 'SHA256' },
      partSize: PART_BYTES,
      queueSize: 4,
    });
    upload.on('httpUploadProgress', (p) => options?.onProgress?.(p.loaded ?? 0));
    await upload.done();
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: this.key(prefix), ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) keys.push(object.Key!.slice(this.options.prefix.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.key(key) }));
  }

  close(): void {
    this.client.destroy();
  }

  private key(key: string): string {
    return this.options.prefix + key;
  }
}
