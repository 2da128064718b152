/**
 * An S3-compatible origin over HTTP with SigV4 signing (aws4fetch, which runs on Web standards:
 * fetch + crypto.subtle). Works against AWS S3, R2's S3 endpoint, and s3rver in tests. It makes
 * one request per call: retrying is the caller's (src/serving/retry.ts), so the two never stack.
 */
import { AwsClient } from 'aws4fetch';
import type { ByteRange, ObjectStore, PutOptions } from './object-store.ts';
import { StoreHttpError } from './store-error.ts';

export interface S3Options {
  /** e.g. https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:4568 */
  endpoint: string;
  bucket: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Key prefix inside the bucket, e.g. "flexmem/" (empty for the bucket root). */
  prefix?: string;
}

export class S3Store implements ObjectStore {
  private readonly client: AwsClient;
  private readonly base: string;
  private readonly prefix: string;

  constructor(options: S3Options) {
    this.client = new AwsClient({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      region: options.region ?? 'auto',
      service: 's3',
      // Its default (10 retries, backoff up to 51 s) would stall a stream for a minute.
      retries: 0,
    });
    this.base = `${options.endpoint.replace(/\/+$/, '')}/${options.bucket}`;
    this.prefix = options.prefix ?? '';
  }

  async get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Uint8Array | null> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    const response = await this.client.fetch(this.url(key), { headers, signal });
    if (response.status === 404) {
      await discard(response);
      return null;
    }
    await refuseError(response, `S3 GET ${key}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    // A connection cut mid-body can end the stream quietly; the declared length tells.
    const declared = response.headers.get('content-length');
    if (declared !== null && !response.headers.has('content-encoding') && Number(declared) !== bytes.byteLength)
      throw new Error(`S3 GET ${key}: ${bytes.byteLength} of ${declared} bytes arrived`);
    // A server that ignores Range answers 200 with the whole object.
    if (range && response.status === 200) return bytes.subarray(range.offset, range.offset + range.length);
    return bytes;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
    const response = await this.client.fetch(this.url(key), { method: 'PUT', body: body as Uint8Array<ArrayBuffer> });
    await refuseError(response, `S3 PUT ${key}`);
    await discard(response);
    options?.onProgress?.(body.byteLength);
  }

  async delete(key: string): Promise<void> {
    const response = await this.client.fetch(this.url(key), { method: 'DELETE' });
    if (response.status !== 404) await refuseError(response, `S3 DELETE ${key}`);
    await discard(response);
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const query = new URLSearchParams({ 'list-type': '2', prefix: this.prefix + prefix });
      if (token) query.set('continuation-token', token);
      const response = await this.client.fetch(`${this.base}?${query}`);
      await refuseError(response, `S3 LIST ${prefix}`);
      const xml = await response.text();
      for (const match of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) keys.push(unescapeXml(match[1]).slice(this.prefix.length));
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]*)</.exec(xml)?.[1] : undefined;
    } while (token);
    return keys.sort();
  }

  private url(key: string): string {
    return `${this.base}/${(this.prefix + key).split('/').map(encodeURIComponent).join('/')}`;
  }
}

/** Throws a StoreHttpError for an error status, after letting go of its body (and so of its connection). */
async function refuseError(response: Response, what: string): Promise<void> {
  if (response.ok) return;
  await discard(response);
  throw new StoreHttpError(`${what}: HTTP ${response.status}`, response.status);
}

async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}
