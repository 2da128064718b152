/**
 * Faults of the store are the server's, not the client's: a corrupt or missing object, or a
 * malformed pointer, gives the client a 5xx that names no object, path or version, with a request
 * id that finds the details in the worker's log.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { bundleKey, objectKey, pointerKey } from '../src/storage/object-store.ts';
import { tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const dir = tempDir();
let worker: RunningWorker;
let catalog: Catalog;
const bundles: string[] = [];

beforeAll(async () => {
  // No isolate or Cache API tier: every row read goes to the bucket.
  worker = await startWorker({ vars: { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false' } });
  catalog = new Catalog(worker.bucket);
  // Versions are content-addressed: each test damages a bundle of its own.
  for (const theta of [1000, 2000]) {
    writeTinyCheckpoint(join(dir.path, `checkpoint-${theta}`), 'flex', { rope_theta: theta });
    bundles.push(join(dir.path, `bundle-${theta}`));
    await buildBundle(join(dir.path, `checkpoint-${theta}`), bundles.at(-1)!, { dtype: 'f32', reference: false, progress: false });
  }
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

/** The 500's body names nothing internal, carries the request id of its header, and the log has the details under that id. */
async function expectInternalFault(response: Response, logged: RegExp): Promise<void> {
  expect(response.status).toBe(500);
  const requestId = response.headers.get('x-request-id');
  expect(requestId).toMatch(/^req_[0-9a-f]{32}$/);
  const body = await response.json();
  expect(body.error).toEqual({
    message: `The server had an error while processing your request. (request id ${requestId})`,
    type: 'server_error',
    param: null,
    code: null,
  });
  await expect.poll(() => worker.logs.find((l) => l.message.includes(requestId!))?.message).toMatch(logged);
}

describe('a fault of the store', () => {
  it('a compute graph that fails its hash: a 500 naming no path; the log names the object', async () => {
    const version = await serveBundle(worker, bundles[0], 'tampered');
    const manifest = await catalog.manifest(version);
    // A version the worker has never loaded is corrupted at the origin: the graph the worker loads.
    const key = bundleKey(version, (manifest.objects.computeOptimized ?? manifest.objects.compute).path);
    const bytes = (await worker.bucket.get(key))!;
    bytes[bytes.length - 5] ^= 0xff;
    await worker.bucket.put(key, bytes);
    const response = await post(`${worker.url}/v1/completions`, { model: 'tampered', prompt: 'The', max_tokens: 4 });
    await expectInternalFault(response, new RegExp(`${key.replace(/[.]/g, '\\.')} does not match its sha256`));
  });

  it('a missing table shard: a 500 (or an error event once streaming) naming no path, never empty rows', async () => {
    const version = await serveBundle(worker, bundles[1], 'holes');
    const manifest = await catalog.manifest(version);
    const shardKey = objectKey(version, manifest.tables!.shards[0]);
    await worker.bucket.delete(shardKey);
    const response = await post(`${worker.url}/v1/completions`, { model: 'holes', prompt: 'The President said', max_tokens: 4 });
    await expectInternalFault(response, new RegExp(`${shardKey.replace(/[.]/g, '\\.')} is missing from the store`));

    const streamed = await post(`${worker.url}/v1/completions`, {
      model: 'holes',
      prompt: 'The President said',
      max_tokens: 4,
      stream: true,
    });
    expect(streamed.status).toBe(200); // the status line goes out before the first row is read
    const requestId = streamed.headers.get('x-request-id')!;
    const events = await readAllEvents(streamed);
    const error = events.find((e) => e !== '[DONE]' && 'error' in e) as { error: { message: string } } | undefined;
    expect(error?.error.message).toBe(`The server had an error while processing your request. (request id ${requestId})`);
    expect(JSON.stringify(events)).not.toMatch(/tables\/|bundles\/|rows-\d+/);
  });

  it('a malformed pointer: a 500 for that model naming nothing; a pointer outside bundles/ is refused', async () => {
    await worker.bucket.put(pointerKey('broken'), new TextEncoder().encode('not json'));
    await expectInternalFault(
      await post(`${worker.url}/v1/completions`, { model: 'broken', prompt: 'The', max_tokens: 2 }),
      /models\/broken\.json/,
    );
    await worker.bucket.put(
      pointerKey('escape'),
      new TextEncoder().encode(JSON.stringify({ model: 'escape', version: '../../x', updatedAt: new Date().toISOString() })),
    );
    await expectInternalFault(
      await post(`${worker.url}/v1/completions`, { model: 'escape', prompt: 'The', max_tokens: 2 }),
      /models\/escape\.json: the pointer is malformed/,
    );
  });

  it("an unknown model is the client's error: a 404 that says so", async () => {
    const response = await post(`${worker.url}/v1/completions`, { model: 'nobody', prompt: 'The', max_tokens: 2 });
    expect(response.status).toBe(404);
    expect((await response.json()).error).toMatchObject({
      message: 'The model `nobody` does not exist',
      type: 'not_found_error',
      code: 'model_not_found',
    });
  });
});
