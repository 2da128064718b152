/**
 * GET /v1/bundles/<version>/<path> (src/api/bundle-objects.ts) in the real worker: immutable,
 * cacheable reads of a published version's objects, ranges as 206, strong ETags that are the
 * manifest's sha256, 304 on If-None-Match; public or behind the keys as the operator chooses.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BundleManifest } from '../../src/bundle/manifest.ts';
import { buildTinyBundle, tempDir } from '../helpers/fixtures.ts';
import { serveBundle, startWorker, type RunningWorker } from '../helpers/worker.ts';

const dir = tempDir();
let bundle: string;
let manifest: BundleManifest;

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
  manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));
}, 120_000);
afterAll(() => dir.remove());

const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers });

describe('an open deployment', () => {
  let worker: RunningWorker;
  let base: string;
  beforeAll(async () => {
    worker = await startWorker({ vars: { CORS_ORIGINS: '*' } });
    const version = await serveBundle(worker, bundle, 'flex');
    base = `${worker.url}/v1/bundles/${version}`;
  });
  afterAll(() => worker?.dispose());

  it('serves a whole object with its sha256 as a strong ETag, immutable for a year', async () => {
    const response = await get(`${base}/tokenizer.json`);
    expect(response.status).toBe(200);
    const bytes = new Uint8Array(await response.arrayBuffer());
    expect(bytes).toEqual(new Uint8Array(readFileSync(join(bundle, 'tokenizer.json'))));
    expect(response.headers.get('etag')).toBe(`"${manifest.objects.tokenizer.sha256}"`);
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(response.headers.get('accept-ranges')).toBe('bytes');
    expect(response.headers.get('access-control-expose-headers')).toMatch(/etag/);
  });

  it('answers a range of a table shard with a 206 and its Content-Range', async () => {
    const shard = manifest.tables!.shards[0];
    const { rowBytes } = manifest.tables!.layout;
    const response = await get(`${base}/${shard.path}`, { range: `bytes=${3 * rowBytes}-${5 * rowBytes - 1}` });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes ${3 * rowBytes}-${5 * rowBytes - 1}/${shard.bytes}`);
    const expected = readFileSync(join(bundle, shard.path)).subarray(3 * rowBytes, 5 * rowBytes);
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(new Uint8Array(expected));
    expect(response.headers.get('etag')).toBe(`"${shard.sha256}"`);
  });

  it('serves the manifest with the sha256 of its bytes as ETag, and 304 when the client has it', async () => {
    const response = await get(`${base}/manifest.json`);
    const bytes = Buffer.from(await response.arrayBuffer());
    expect(response.headers.get('etag')).toBe(`"${createHash('sha256').update(bytes).digest('hex')}"`);
    const again = await get(`${base}/manifest.json`, { 'if-none-match': response.headers.get('etag')! });
    expect(again.status).toBe(304);
    const other = await get(`${base}/manifest.json`, { 'if-none-match': '"0000"' });
    expect(other.status).toBe(200);
  });

  it('refuses what is not an object of a published version: 404, and 416 past the end', async () => {
    const shard = manifest.tables!.shards[0];
    expect((await get(`${base}/published.json`)).status).toBe(404);
    expect((await get(`${base}/../models/flex.json`)).status).toBe(404);
    expect((await get(`${worker.url}/v1/bundles/0123456789abcdef0123/manifest.json`)).status).toBe(404);
    expect((await get(`${worker.url}/v1/bundles/latest/manifest.json`)).status).toBe(404);
    const past = await get(`${base}/${shard.path}`, { range: `bytes=${shard.bytes}-` });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${shard.bytes}`);
  });
});

describe.each([
  { PUBLIC_BUNDLES: 'true', bundles: 200, cacheControl: 'public, max-age=31536000, immutable' },
  { PUBLIC_BUNDLES: '', bundles: 401, cacheControl: 'private, max-age=31536000, immutable' },
])('a deployment with keys, PUBLIC_BUNDLES = "$PUBLIC_BUNDLES"', ({ PUBLIC_BUNDLES, bundles, cacheControl }) => {
  let worker: RunningWorker;
  let base: string;
  beforeAll(async () => {
    worker = await startWorker({ vars: { API_KEYS: 'sesame', ALLOW_ANONYMOUS: 'false', PUBLIC_BUNDLES } });
    const version = await serveBundle(worker, bundle, 'flex');
    base = `${worker.url}/v1/bundles/${version}`;
  });
  afterAll(() => worker?.dispose());

  it(`answers bundle reads without a key with ${bundles}; the rest of the API still needs the key`, async () => {
    expect((await get(`${base}/tokenizer.json`)).status).toBe(bundles);
    expect((await get(`${worker.url}/v1/models`)).status).toBe(401);
    const keyed = await get(`${base}/tokenizer.json`, { authorization: 'Bearer sesame' });
    expect(keyed.status).toBe(200);
    expect(keyed.headers.get('cache-control')).toBe(cacheControl);
    expect((await get(`${base}/tokenizer.json`, { authorization: 'Bearer wrong' })).status).toBe(PUBLIC_BUNDLES ? 200 : 401);
  });
});
