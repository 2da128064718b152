/** `flexmem build` output: a complete, content-addressed bundle that `flexmem run` serves. */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { openLocalBundle } from '../cli/local-bundle.ts';
import { parseManifest } from '../src/bundle/manifest.ts';
import { decodeRowChecksums, firstCorruptRow } from '../src/bundle/row-checksums.ts';
import { encodeFloats } from '../src/tensor/dtype.ts';
import { encodeHeader, headerLength, parseHeader } from '../src/tensor/safetensors.ts';
import { flexmem, flexmemAsync } from './helpers/cli.ts';
import { buildTinyBundle, tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';

const dir = tempDir();
afterAll(() => dir.remove());

const readManifest = (bundle: string) => parseManifest(JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8')));

describe('flexmem build', () => {
  it('lists every object with its size and sha256', async () => {
    const bundle = await buildTinyBundle(dir.path, 'meki', { shardBytes: 10_000 });
    const manifest = readManifest(bundle);
    const { tables } = manifest;
    const objects = [
      manifest.objects.compute,
      manifest.objects.computeOptimized!,
      manifest.objects.computeWeights!,
      manifest.objects.tokenizer,
      manifest.objects.reference!,
      ...tables!.shards,
      tables!.checksums,
    ];
    expect(manifest.tables!.shards.length).toBeGreaterThan(1);
    for (const object of objects) {
      const bytes = readFileSync(join(bundle, object.path));
      expect(bytes.byteLength).toBe(object.bytes);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(object.sha256);
    }
    const covered = manifest.tables!.shards.reduce((n, s) => n + s.tokenCount, 0);
    expect(covered).toBe(manifest.config.vocab_size);
    // One CRC-32C per row of every shard, by token id.
    expect(tables!.checksums).toMatchObject({ path: 'tables/rows.crc32c', algorithm: 'crc32c', bytes: 4 * covered });
    const checksums = decodeRowChecksums(readFileSync(join(bundle, tables!.checksums.path)), covered);
    for (const shard of tables!.shards)
      expect(firstCorruptRow(readFileSync(join(bundle, shard.path)), tables!.layout.rowBytes, shard.firstToken, checksums)).toBe(-1);
  });

  it('refuses a manifest without row checksums (an older bundle) with one line', async () => {
    const manifest = JSON.parse(readFileSync(join(dir.path, 'meki-bundle', 'manifest.json'), 'utf8'));
    delete manifest.tables.checksums;
    expect(() => parseManifest(manifest, 'old/manifest.json')).toThrow(
      'old/manifest.json: a bundle built without row checksums (by an older flexmem); rebuild it with `flexmem build`',
    );
  });

  it('derives the version id from the content: same input, same id; other input, other id', async () => {
    const checkpoint = join(dir.path, 'flex-checkpoint');
    writeTinyCheckpoint(checkpoint, 'flex');
    const options = { dtype: 'f16', reference: false, progress: false } as const;
    const a = await buildBundle(checkpoint, join(dir.path, 'v1'), options);
    const b = await buildBundle(checkpoint, join(dir.path, 'v2'), { ...options, reference: true });
    const c = await buildBundle(checkpoint, join(dir.path, 'v3'), { ...options, dtype: 'int8' });
    expect(b.version).toBe(a.version);
    expect(c.version).not.toBe(a.version);
  });

  it('reads tensors split over several safetensors files, in f16', async () => {
    const checkpoint = join(dir.path, 'split');
    writeTinyCheckpoint(checkpoint, 'memoryllm');
    const whole = readFileSync(join(checkpoint, 'model.safetensors'));
    const n = headerLength(whole.subarray(0, 8), 'x');
    const entries = parseHeader(whole.subarray(8, 8 + n), whole.byteLength, 'x');
    const half = Math.ceil(entries.length / 2);
    [entries.slice(0, half), entries.slice(half)].forEach((part, i) => {
      // Re-encode as f16 (the data of an f32 tensor, narrowed) to cover that dtype too.
      const f32 = part.map((e) => new Float32Array(whole.buffer.slice(whole.byteOffset + e.begin, whole.byteOffset + e.end)));
      const body = Buffer.concat([encodeHeader(part, 'f16'), ...f32.map((values) => encodeFloats(values, 'f16'))]);
      writeFileSync(join(checkpoint, `model-0000${i + 1}-of-00002.safetensors`), body);
    });
    rmSync(join(checkpoint, 'model.safetensors'));
    const manifest = await buildBundle(checkpoint, join(dir.path, 'split-bundle'), { dtype: 'f32', reference: false, progress: false });
    expect(manifest.tables!.shards[0].bytes).toBe(512 * 4 * 64 * 4);
  });

  it('builds a dense model without tables, and `run` prints its greedy continuation', async () => {
    const bundle = await buildTinyBundle(dir.path, 'dense');
    expect(readManifest(bundle).tables).toBeNull();
    const prompt = 'The President said';
    const expected = await greedyByHand(bundle, prompt, 8);
    const result = flexmem('run', bundle, '--prompt', prompt, '--max-tokens', '8', '--temperature', '0');
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${expected}\n`);
    // Control: the greedy text of another model (the meki bundle) is another text.
    expect(await greedyByHand(join(dir.path, 'meki-bundle'), prompt, 8)).not.toBe(expected);
  });
});

describe('flexmem run', () => {
  const prompt = 'The President said';
  const run = async (...args: string[]) => {
    const result = await flexmemAsync(['run', join(dir.path, 'meki-bundle'), '--prompt', prompt, '--max-tokens', '12', ...args]);
    expect(result.status, result.stderr).toBe(0);
    return result.stdout;
  };

  it('streams the greedy continuation, written out here apart from the engine, over the tables and over reference.onnx', async () => {
    const bundle = join(dir.path, 'meki-bundle');
    const expected = await greedyByHand(bundle, prompt, 12);
    // reference.onnx computes the memory path inside the graph, without the tables: an independent oracle.
    expect(await greedyByHand(bundle, prompt, 12, 'reference')).toBe(expected);
    const [fromTables, fromReference] = await Promise.all([run('--temperature', '0'), run('--temperature', '0', '--reference')]);
    expect(fromTables).toBe(`${expected}\n`);
    expect(fromReference).toBe(`${expected}\n`);
  });

  it('samples by --seed: the same seed gives the same text, other seeds other texts', async () => {
    const sampled = (seed: number) => run('--temperature', '1', '--seed', String(seed));
    const [first, again, eight, nine, greedy] = await Promise.all([
      sampled(7),
      sampled(7),
      sampled(8),
      sampled(9),
      run('--temperature', '0'),
    ]);
    expect(again).toBe(first);
    // Controls: a seed that were ignored would give one text for every seed.
    expect(eight).not.toBe(first);
    expect(nine).not.toBe(first);
    expect(eight).not.toBe(nine);
    expect(first).not.toBe(greedy);
  });
});

/** Greedy decoding over a bundle's decoder, written out here apart from the engine's generation loop that `run` uses. */
async function greedyByHand(bundle: string, prompt: string, tokens: number, graph: 'compute' | 'reference' = 'compute'): Promise<string> {
  const { decoder, tokenizer } = await openLocalBundle(bundle, graph);
  const V = decoder.config.vocab_size;
  const state = decoder.start();
  const promptIds = tokenizer.encode(prompt);
  let last = (await decoder.step(state, promptIds)).subarray((promptIds.length - 1) * V);
  const ids: number[] = [];
  while (ids.length < tokens) {
    ids.push(last.indexOf(Math.max(...last)));
    last = await decoder.step(state, [ids.at(-1)!]);
  }
  return prompt + tokenizer.decode(ids);
}
