/**
 * A cold isolate's bundle load (src/serving/model-registry.ts, src/serving/serving-core.ts): the
 * hot set is read as soon as the manifest and the row checksums are known, beside the graph's
 * reads and the session create, instead of after them (docs/architecture.md "Cold start").
 * Behaviour only: which reads are issued while the create runs, and which tier serves the first
 * request's rows; no timing.
 */
import type { InferenceSession } from 'onnxruntime-common';
import * as ortNode from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeSession } from '../cli/node-session.ts';
import { publishBundle } from '../cli/publish.ts';
import type { BundleManifest } from '../src/bundle/manifest.ts';
import { DEFAULT_HIERARCHY } from '../src/memory/memory-hierarchy.ts';
import { createServingCore } from '../src/serving/serving-core.ts';
import type { GraphObjects } from '../src/serving/session-options.ts';
import { bundleKey, type ByteRange } from '../src/storage/object-store.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { MemoryStore } from './helpers/memory-store.ts';

/** A store that logs every read, in order, into a log shared with the session creates. */
class LoggingStore extends MemoryStore {
  constructor(readonly log: string[]) {
    super();
  }
  override get(key: string, range?: ByteRange) {
    this.log.push(range ? `read ${key} @${range.offset}+${range.length}` : `read ${key}`);
    return super.get(key, range);
  }
}

const macrotask = () => new Promise((resolve) => setTimeout(resolve, 0));

const dir = tempDir();
afterAll(() => dir.remove());
let bundle: string;
beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
});

/** A serving core over a freshly published bundle whose session creates wait until `release` is called. */
async function coldCore(settings: Parameters<typeof createServingCore>[0]['settings'] = {}) {
  const log: string[] = [];
  const store = new LoggingStore(log);
  const { version } = await publishBundle(store, bundle, { model: 'flex' });
  const manifest = JSON.parse(new TextDecoder().decode(store.objects.get(bundleKey(version, 'manifest.json')))) as BundleManifest;
  log.length = 0;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const createSession = async (graph: GraphObjects): Promise<InferenceSession> => {
    log.push('create');
    await released;
    return createNodeSession(graph);
  };
  const core = createServingCore({ origin: store, createSession, Tensor: ortNode.Tensor, settings: { graph: 'optimized', ...settings } });
  const tables = manifest.tables!;
  const hotRead = `read ${bundleKey(version, tables.shards[0].path)} @0+${tables.shards[0].tokenCount * tables.layout.rowBytes}`;
  /**
   * Loads the model, holding its session create until the hot set's read has been issued (or for
   * a while, if it is not): the log as it was then, with the create begun and not finished.
   */
  const load = async () => {
    const loading = core.current('flex');
    let settled = false;
    loading.then(
      () => (settled = true),
      () => (settled = true),
    );
    for (let turns = 0; turns < 200 && !settled && !(log.includes('create') && log.includes(hotRead)); turns++) await macrotask();
    const before = [...log];
    release();
    return { before, bundle: await loading };
  };
  return { core, log, store, version, hotRead, load };
}

describe('a cold bundle load', () => {
  it('reads the hot set while the session is created, and the first request takes its rows from it', async () => {
    const { core, log, hotRead, load } = await coldCore();
    const { before, bundle: loaded } = await load();
    // The hot set's read (here the whole table: it is small) was issued before the create finished.
    expect(before).toContain('create');
    expect(before).toContain(hotRead);
    const rows = core.rows(loaded)!;
    await core.hotSetReady(loaded);
    await rows.rows([1, 2, 3, 40]);
    expect(rows.stats.rows).toMatchObject({ hot: 4, origin: 0 });
    expect(log.filter((line) => line === hotRead)).toHaveLength(1);
    await core.close();
  });

  it('reads no rows before the create without a hot set (the control)', async () => {
    const { core, load } = await coldCore({ hierarchy: { ...DEFAULT_HIERARCHY, hotSetBytes: 0 } });
    const { before } = await load();
    expect(before).toContain('create');
    expect(before.filter((line) => line.includes('/tables/rows-'))).toEqual([]);
    await core.close();
  });

  it('keeps none of the rows read for a version whose load failed', async () => {
    const { core, log, store, version, hotRead, load } = await coldCore();
    const tokenizerKey = bundleKey(version, 'tokenizer.json');
    const tokenizer = store.objects.get(tokenizerKey)!;
    store.objects.set(
      tokenizerKey,
      Uint8Array.from(tokenizer, (b, i) => (i === 10 ? b ^ 1 : b)),
    );
    await expect(load()).rejects.toThrow('does not match its sha256');
    store.objects.set(tokenizerKey, tokenizer);
    const loaded = await core.current('flex');
    await core.hotSetReady(loaded);
    // The failed load's hot set was dropped with it, so the second load reads its own.
    expect(log.filter((line) => line === hotRead)).toHaveLength(2);
    const rows = core.rows(loaded)!;
    await rows.rows([1]);
    expect(rows.stats.rows.hot).toBe(1);
    await core.close();
  });
});
