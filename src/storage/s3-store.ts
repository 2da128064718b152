/**
 * An S3-compatible origin over HTTP with SigV4 signing (aws4fetch, which runs on Web standards:
 * fetch + crypto.subtle). Works against AWS S3, R2's S3 endpoint, and s3rver in tests.
 */
import { AwsClient } from 'aws4fetch';
import type { ByteRange, ObjectStore, PutOptions } from './object-store.ts';

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
    });
    this.base = `${options.endpoint.replace(/\/+$/, '')}/${options.bucket}`;
    this.prefix = options.prefix ?? '';
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array | null> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    const response = await this.client.fetch(this.url(key), { headers });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`S3 GET ${key}: HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    // A server that ignores Range answers 200 with the whole object.
    if (range && response.status === 200) return bytes.subarray(range.offset, range.offset + range.length);
    return bytes;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
    const response = await this.client.fetch(this.url(key), { method: 'PUT', body: body as Uint8Array<ArrayBuffer> });
    if (!response.ok) throw new Error(`S3 PUT ${key}: HTTP ${response.status}`);
    options?.onProgress?.(body.byteLength);
  }

  async delete(key: string): Promise<void> {
    const response = await this.client.fetch(this.url(key), { method: 'DELETE' });
    if (!response.ok && response.status !== 404) throw new Error(`S3 DELETE ${key}: HTTP ${response.status}`);
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const query = new URLSearchParams({ 'list-type': '2', prefix: this.prefix + prefix });
      if (token) query.set('continuation-token', token);
      const response = await this.client.fetch(`${this.base}?${query}`);
      if (!response.ok) throw new Error(`S3 LIST ${prefix}: HTTP ${response.status}`);
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

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}
