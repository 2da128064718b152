/**
 * The origin read path against the S3 protocol (s3rver) and local R2 (Miniflare), with range
 * reads; and the worker serving from an S3 origin and through the KV tier.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { until } from './helpers/deadline.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { startS3, type RunningS3 } from './helpers/s3.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const dir = tempDir();
let s3: RunningS3;
let r2Worker: RunningWorker;
let bundle: string;

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'flex', { reference: false, dtype: 'f16' });
  s3 = await startS3('flexmem-bundles', 'edge/');
  r2Worker = await startWorker({ vars: { HOT_SET_BYTES: '0' } });
});
afterAll(async () => {
  await r2Worker?.dispose();
  await s3?.close();
  dir.remove();
});

describe.each([
  ['S3 (s3rver)', () => s3.store],
  ['local R2', () => r2Worker.bucket],
])('object store over %s', (_, storeOf) => {
  let store: ObjectStore;
  beforeAll(() => {
    store = storeOf();
  });

  it('puts, gets whole objects and byte ranges, lists and deletes', async () => {
    const bytes = Uint8Array.from({ length: 5000 }, (_, i) => i % 251);
    await store.put('probe/a b.bin', bytes);
    await store.put('probe/c.bin', bytes.subarray(0, 10));
    expect(await store.get('probe/a b.bin')).toEqual(bytes);
    expect(await store.get('probe/a b.bin', { offset: 1000, length: 300 })).toEqual(bytes.subarray(1000, 1300));
    expect(await store.list('probe/')).toEqual(['probe/a b.bin', 'probe/c.bin']);
    await store.delete('probe/c.bin');
    expect(await store.get('probe/c.bin')).toBeNull();
    expect(await store.list('probe/')).toEqual(['probe/a b.bin']);
  });
});

describe('the worker', () => {
  const request = { model: 'tiny-flex', prompt: 'In the year 1800 the Congress', max_tokens: 12, temperature: 0 };

  it('serves the same tokens from an S3 origin as from R2, reading rows with range requests', async () => {
    await serveBundle(r2Worker, bundle, 'tiny-flex');
    const fromR2 = await (await post(`${r2Worker.url}/v1/completions`, request)).json();

    const { publishBundle, localBundle } = await import('../cli/publish.ts');
    await publishBundle(s3.store, bundle, { model: 'tiny-flex' });
    const { manifest } = localBundle(bundle);
    const o = s3.options;
    const s3Worker = await startWorker({
      vars: {
        ORIGIN: 's3',
        S3_ENDPOINT: o.endpoint,
        S3_BUCKET: o.bucket,
        S3_REGION: o.region!,
        S3_ACCESS_KEY_ID: o.accessKeyId,
        S3_SECRET_ACCESS_KEY: o.secretAccessKey,
        STORE_PREFIX: 'edge/',
        HOT_SET_BYTES: '0',
        PAGE_BYTES: '1',
        COALESCE_GAP_BYTES: '0',
      },
    });
    try {
      const response = await post(`${s3Worker.url}/v1/completions`, request);
      const fromS3 = await response.json();
      expect(response.status).toBe(200);
      expect(fromS3.choices[0].text).toBe(fromR2.choices[0].text);
      // One row per page: exactly the rows read came over the wire, by range requests.
      const { rowBytes } = manifest.tables!.layout;
      const timing = fromS3.flexmem.timing;
      expect(timing.rows.origin).toBeGreaterThan(0);
      expect(timing.origin_bytes).toBe(timing.rows.origin * rowBytes);
      expect(timing.origin_requests).toBeLessThanOrEqual(timing.rows.origin);
    } finally {
      await s3Worker.dispose();
    }
  });

  it('fills and then serves from the KV tier when the isolate and Cache API tiers are off', async () => {
    const worker = await startWorker({ kv: true, vars: { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' } });
    try {
      await serveBundle(worker, bundle, 'tiny-flex');
      const first = (await (await post(`${worker.url}/v1/completions`, request)).json()).flexmem.timing;
      expect(first.rows.origin).toBeGreaterThan(0);
      let second = first;
      // KV writes happen in the background (waitUntil): retry until they have landed.
      await until(
        async () => {
          second = (await (await post(`${worker.url}/v1/completions`, request)).json()).flexmem.timing;
          return second.rows.origin === 0;
        },
        'the KV tier never served every row',
        { timeoutMs: 15_000, everyMs: 50 },
      );
      expect(second.rows.kv).toBeGreaterThan(0);
      expect(second.rows.origin).toBe(0);
      expect(second.rows.hot + second.rows.lru + second.rows.cache).toBe(0);
    } finally {
      await worker.dispose();
    }
  });
});
