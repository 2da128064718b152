/**
 * The tokenizer's V8 heap inside workerd, TextTokenizer against @huggingface/tokenizers alone
 * (LibraryTokenizer), each in a fresh Miniflare instance, read through workerd's inspector after
 * a full GC (bench/lib/inspector.ts): used heap plus ArrayBuffers, before and after loading.
 *
 *   node --import tsx bench/lib/tokenizer-memory-workerd.ts [tokenizer.json ...]
 *
 * Without arguments: models/flex and the tokenizers `flexmem init` makes for 32,768 and 131,072 ids.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { trainByteLevelBpe } from '../../src/tokenizer/byte-level-bpe.ts';
import { SAMPLE_TEXT } from '../../src/tokenizer/sample-text.ts';
import { freePort, IsolateInspector } from './inspector.ts';
import { ROOT, WORK } from './paths.ts';

const MiB = 2 ** 20;
const dir = join(WORK, 'tokenizer-memory');

function buildWorker(): string {
  mkdirSync(dir, { recursive: true });
  const out = join(dir, 'worker.mjs');
  const entry = join(ROOT, 'bench', 'lib', 'tokenizer-memory.worker.ts');
  execFileSync(
    join(ROOT, 'node_modules', '.bin', 'esbuild'),
    [entry, '--bundle', '--format=esm', '--platform=browser', `--outfile=${out}`],
    { stdio: 'inherit' },
  );
  return readFileSync(out, 'utf8');
}

async function measure(script: string, impl: 'library' | 'compact', body: string): Promise<{ heap: number; buffers: number }> {
  const inspectorPort = await freePort();
  const mf = new Miniflare({ modules: true, script, compatibilityDate: '2026-04-20', inspectorPort, port: 0 });
  try {
    const url = (await mf.ready).toString();
    await (await fetch(url)).text();
    const inspector = await IsolateInspector.connect(inspectorPort);
    const before = await inspector.heap();
    const response = await fetch(new URL(`/load?impl=${impl}`, url), { method: 'POST', body });
    if (!response.ok) throw new Error(`load: ${response.status} ${await response.text()}`);
    await response.text();
    const after = await inspector.heap();
    return { heap: after.usedSize - before.usedSize, buffers: after.backingStorageSize - before.backingStorageSize };
  } finally {
    await mf.dispose();
  }
}

async function main(): Promise<void> {
  const script = buildWorker();
  let paths = process.argv.slice(2);
  if (paths.length === 0) {
    paths = [join(ROOT, 'models', 'flex', 'tokenizer.json')];
    for (const vocab of [32_768, 131_072]) {
      const path = join(dir, `init-v${vocab}.json`);
      writeFileSync(path, JSON.stringify(trainByteLevelBpe(SAMPLE_TEXT, vocab).json));
      paths.push(path);
    }
  }
  for (const path of paths) {
    const body = readFileSync(path, 'utf8');
    console.log(`${path} (${(body.length / MiB).toFixed(1)} MiB)`);
    const result: Record<string, number> = {};
    for (const impl of ['library', 'compact'] as const) {
      const m = await measure(script, impl, body);
      result[impl] = m.heap + m.buffers;
      console.log(
        `  ${impl.padEnd(8)} V8 heap used ${(m.heap / MiB).toFixed(1).padStart(6)} MiB, ArrayBuffers ${(m.buffers / MiB).toFixed(1).padStart(5)} MiB`,
      );
    }
    console.log(`  library/compact (heap + ArrayBuffers): ${(result.library / result.compact).toFixed(1)}x`);
  }
}

await main();
