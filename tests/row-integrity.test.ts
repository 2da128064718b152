/**
 * Rows are checked against their checksums before they are used or cached: a byte flipped in a
 * table shard at the origin fails the requests that need that row with a 5xx that names nothing
 * (the log names the shard), never reaches a cache tier, and spares every other row.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalBundle, readLocalManifest } from '../cli/local-bundle.ts';
import { publishPatch } from '../cli/patch.ts';
import type { BundleManifest, TableShard } from '../src/bundle/manifest.ts';
import { objectKey } from '../src/storage/object-store.ts';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

/** Four rows of the tiny f32 table per page, so a corrupt page spares most of the table. */
const PAGE_BYTES = 4096;
const MAX_TOKENS = 8;
const PROMPT = 'In the year 1800 the Congress';
const ELSEWHERE = 'The President said';

const dir = tempDir();
let bundle: string;
let manifest: BundleManifest;
let plain: RunningWorker;
let cached: RunningWorker;
/** A token of PROMPT whose page holds no token that ELSEWHERE's greedy completion reads. */
let victim: { id: number; shard: TableShard; page: number; at: number };
const reference: Record<string, string> = {};

/** The prompt's ids and those of its greedy continuation, by the local engine. */
async function tokensRead(local: Awaited<ReturnType<typeof openLocalBundle>>, prompt: string): Promise<number[]> {
  const { decoder, tokenizer } = local;
  const V = decoder.config.vocab_size;
  const state = decoder.start();
  const ids = tokenizer.encode(prompt);
  let logits = (await decoder.step(state, ids)).subarray((ids.length - 1) * V);
  for (let i = 0; i < MAX_TOKENS; i++) {
    ids.push(logits.indexOf(Math.max(...logits)));
    logits = await decoder.step(state, [ids.at(-1)!]);
  }
  return ids;
}

beforeAll(async () => {
  bundle = await buildTinyBundle(dir.path, 'flex', { reference: false });
  manifest = readLocalManifest(bundle);
  const { rowBytes } = manifest.tables!.layout;
  const rowsPerPage = Math.floor(PAGE_BYTES / rowBytes);
  const pageOf = (id: number) => {
    const shard = manifest.tables!.shards.find((s) => id >= s.firstToken && id < s.firstToken + s.tokenCount)!;
    return { shard, page: Math.floor((id - shard.firstToken) / rowsPerPage) };
  };
  const local = await openLocalBundle(bundle);
  const prompt = local.tokenizer.encode(PROMPT);
  const elsewhere = await tokensRead(local, ELSEWHERE);
  await local.core.close();
  const id = prompt.find((p) => elsewhere.every((e) => pageOf(e).shard !== pageOf(p).shard || pageOf(e).page !== pageOf(p).page));
  if (id === undefined) throw new Error('every token of the prompt shares a page with the other prompt; choose other prompts');
  // The middle of the victim's row.
  victim = { id, ...pageOf(id), at: (id - pageOf(id).shard.firstToken) * rowBytes + rowBytes / 2 };

  // No isolate, hot set or Cache API: every row comes from the origin.
  plain = await startWorker({
    vars: { ISOLATE_CACHE_BYTES: '0', HOT_SET_BYTES: '0', USE_CACHE_API: 'false', PAGE_BYTES: String(PAGE_BYTES) },
  });
  // Every tier but the hot set: the isolate's LRU, the Cache API and KV.
  cached = await startWorker({ kv: true, vars: { HOT_SET_BYTES: '0', PAGE_BYTES: String(PAGE_BYTES) } });
});
afterAll(async () => {
  await plain?.dispose();
  await cached?.dispose();
  dir.remove();
});

const complete = (worker: RunningWorker, prompt: string, stream = false) =>
  post(`${worker.url}/v1/completions`, { model: 'rows', prompt, max_tokens: MAX_TOKENS, temperature: 0, stream });

async function text(response: Response): Promise<string> {
  expect(response.status).toBe(200);
  return (await response.json()).choices[0].text;
}

/** Flips one bit of the victim's row in the worker's bucket (again: flips it back). */
async function flipVictim(worker: RunningWorker): Promise<void> {
  const key = objectKey(manifest.version, victim.shard);
  const bytes = (await worker.bucket.get(key))!;
  bytes[victim.at] ^= 0x10;
  await worker.bucket.put(key, bytes);
}

/** A 500 naming nothing but its request id; the log has the shard, the token and the checksum. */
async function expectCorruptRowFault(worker: RunningWorker, response: Response): Promise<void> {
  expect(response.status).toBe(500);
  const requestId = response.headers.get('x-request-id');
  expect(requestId).toMatch(/^req_[0-9a-f]{32}$/);
  expect((await response.json()).error).toEqual({
    message: `The server had an error while processing your request. (request id ${requestId})`,
    type: 'server_error',
    param: null,
    code: null,
  });
  const shardKey = objectKey(manifest.version, victim.shard).replace(/[.]/g, '\\.');
  await expect
    .poll(() => worker.logs.find((l) => l.message.includes(requestId!))?.message)
    .toMatch(new RegExp(`${shardKey}: the row of token ${victim.id} \\(bytes \\d+\\+\\d+\\) does not match its crc32c, read twice`));
}

describe('a corrupt table row at the origin', () => {
  it('fails the requests that read it with a 5xx naming nothing; other rows serve; repaired, it serves again', async () => {
    expect(await serveBundle(plain, bundle, 'rows')).toBe(manifest.version);
    reference.prompt = await text(await complete(plain, PROMPT));
    reference.elsewhere = await text(await complete(plain, ELSEWHERE));

    await flipVictim(plain);
    await expectCorruptRowFault(plain, await complete(plain, PROMPT));

    const streamed = await complete(plain, PROMPT, true);
    expect(streamed.status).toBe(200); // the status line goes out before the first row is read
    const requestId = streamed.headers.get('x-request-id')!;
    const events = await readAllEvents(streamed);
    const error = events.find((e) => e !== '[DONE]' && 'error' in e) as { error: { message: string } } | undefined;
    expect(error?.error.message).toBe(`The server had an error while processing your request. (request id ${requestId})`);
    expect(JSON.stringify(events)).not.toMatch(/tables\/|bundles\/|rows-\d+|crc32c/);

    expect(await text(await complete(plain, ELSEWHERE))).toBe(reference.elsewhere);

    // A patch that edits the row would bake the corrupt bytes into its overrides: refused.
    const edits = join(dir.path, 'edits.json');
    writeFileSync(edits, JSON.stringify({ edits: [{ token: victim.id, op: 'scale', factor: 0.5 }] }));
    await expect(publishPatch(plain.bucket, manifest.version, edits, 'rows')).rejects.toThrow(
      `version ${manifest.version}: the stored row of token ${victim.id} does not match its crc32c; nothing was published`,
    );

    await flipVictim(plain);
    expect(await text(await complete(plain, PROMPT))).toBe(reference.prompt);
  });

  it('never reaches the isolate, the Cache API or KV', async () => {
    await serveBundle(cached, bundle, 'rows');
    await flipVictim(cached); // before any request: every tier is cold
    await expectCorruptRowFault(cached, await complete(cached, PROMPT));
    expect(await text(await complete(cached, ELSEWHERE))).toBe(reference.elsewhere);

    const rowsPerPage = Math.floor(PAGE_BYTES / manifest.tables!.layout.rowBytes);
    const pageKey = (page: number) => `${manifest.version}/p${rowsPerPage}/${victim.shard.path}/${page}`;
    const kv = await cached.mf.getKVNamespace('ROWS_KV');
    const cache = (await cached.mf.getCaches()).default;
    const kvKeys = async () => (await kv.list({ prefix: `${manifest.version}/` })).keys.map((k) => k.name);
    // Cache fills run in the background: wait until the pages that were read have landed.
    await expect.poll(async () => (await kvKeys()).length, { timeout: 10_000 }).toBeGreaterThan(0);
    const filled = await kvKeys();
    for (const key of filled) expect(await cache.match(`https://rows.flexmem.internal/${key}`)).toBeDefined();
    expect(filled).not.toContain(pageKey(victim.page));
    expect(await cache.match(`https://rows.flexmem.internal/${pageKey(victim.page)}`)).toBeUndefined();

    // Repaired at the origin, the row serves at once: no tier kept the corrupt bytes.
    await flipVictim(cached);
    expect(await text(await complete(cached, PROMPT))).toBe(reference.prompt);
  });
});
