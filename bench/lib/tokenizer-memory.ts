/**
 * The tokenizer's memory and speed, TextTokenizer against @huggingface/tokenizers alone
 * (LibraryTokenizer: what TextTokenizer was before added tokens moved out of the library).
 *
 *   node --expose-gc --import tsx bench/lib/tokenizer-memory.ts [tokenizer.json ...]
 *
 * Without arguments it measures the demo tokenizer (models/flex) and the tokenizers `flexmem init`
 * gives checkpoints of 32,768 and 131,072 ids (trainByteLevelBpe over SAMPLE_TEXT, as
 * cli/random-checkpoint.ts makes them). Memory: heapUsed and external (ArrayBuffers) after GC,
 * before and after `new X(JSON.parse(text))` with the result kept, each in a fresh child process.
 * Speed: CPU time of encoding training/data/valid.txt and of decoding 5,000 of its ids, both
 * implementations in one process, alternating, median of the rounds.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trainByteLevelBpe } from '../../src/tokenizer/byte-level-bpe.ts';
import { LibraryTokenizer } from '../../src/tokenizer/library-tokenizer.ts';
import { SAMPLE_TEXT } from '../../src/tokenizer/sample-text.ts';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { ROOT, WORK } from './paths.ts';

type Impl = 'library' | 'compact';
interface Memory {
  heap: number;
  external: number;
  buildMs: number;
}
const MiB = 2 ** 20;
const ROUNDS = 9;

const collect = () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 4; i++) gc();
};

/** Parses here, so that no frame still measuring holds the parsed JSON in a register. */
function make(impl: Impl, text: string): LibraryTokenizer | TextTokenizer {
  const json = JSON.parse(text) as object;
  return impl === 'library' ? new LibraryTokenizer(json) : new TextTokenizer(json);
}

/** In a child: the heap and external memory one tokenizer keeps, printed as JSON. */
function measureHere(impl: Impl, path: string): void {
  const text = readFileSync(path, 'utf8');
  collect();
  const before = process.memoryUsage();
  const start = performance.now();
  const tokenizer = make(impl, text);
  const buildMs = performance.now() - start;
  collect();
  const after = process.memoryUsage();
  tokenizer.encode('keep it alive');
  const memory: Memory = { heap: after.heapUsed - before.heapUsed, external: after.external - before.external, buildMs };
  process.stdout.write(JSON.stringify(memory));
}

function measureInChild(impl: Impl, path: string): Memory {
  const script = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', script, '--child', impl, path], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  return JSON.parse(out) as Memory;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

/** CPU milliseconds (user + system) of `run`: steadier than wall time on a shared machine. */
function timed(run: () => void): number {
  const start = process.cpuUsage();
  run();
  const spent = process.cpuUsage(start);
  return (spent.user + spent.system) / 1000;
}

function speed(path: string, text: string): void {
  const json = readFileSync(path, 'utf8');
  const impls = { library: new LibraryTokenizer(JSON.parse(json)), compact: new TextTokenizer(JSON.parse(json)) };
  const ids = impls.library.encode(text);
  const decodeIds = ids.slice(0, 5_000);
  const times = {
    library: { encode: [] as number[], decode: [] as number[] },
    compact: { encode: [] as number[], decode: [] as number[] },
  };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which goes first, so neither always runs on a warmer machine.
    const order: Impl[] = round % 2 === 0 ? ['library', 'compact'] : ['compact', 'library'];
    for (const impl of order) {
      let encoded: number[] = [];
      times[impl].encode.push(timed(() => (encoded = impls[impl].encode(text))));
      if (encoded.length !== ids.length || encoded.some((id, i) => id !== ids[i])) throw new Error(`${impl} encodes ${path} differently`);
      times[impl].decode.push(timed(() => impls[impl].decode(decodeIds)));
    }
  }
  const [le, ce] = [median(times.library.encode), median(times.compact.encode)];
  const [ld, cd] = [median(times.library.decode), median(times.compact.decode)];
  console.log(
    `  encode ${(text.length / 1000).toFixed(0)} kchars -> ${ids.length} ids: library ${le.toFixed(0)} ms, compact ${ce.toFixed(0)} ms (compact/library ${(ce / le).toFixed(2)})`,
  );
  console.log(
    `  decode ${decodeIds.length} ids: library ${ld.toFixed(1)} ms, compact ${cd.toFixed(1)} ms (compact/library ${(cd / ld).toFixed(2)})`,
  );
}

function defaultTokenizers(): string[] {
  const dir = join(WORK, 'tokenizer-memory');
  mkdirSync(dir, { recursive: true });
  const paths = [join(ROOT, 'models', 'flex', 'tokenizer.json')];
  for (const vocab of [32_768, 131_072]) {
    const path = join(dir, `init-v${vocab}.json`);
    writeFileSync(path, JSON.stringify(trainByteLevelBpe(SAMPLE_TEXT, vocab).json));
    paths.push(path);
  }
  return paths;
}

function main(): void {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    measureHere(args[1] as Impl, args[2]);
    return;
  }
  const paths = args.length > 0 ? args : defaultTokenizers();
  const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8');
  for (const path of paths) {
    const bytes = readFileSync(path).length;
    console.log(`${path} (${(bytes / MiB).toFixed(1)} MiB)`);
    const memory = { library: measureInChild('library', path), compact: measureInChild('compact', path) };
    for (const impl of ['library', 'compact'] as const) {
      const m = memory[impl];
      console.log(
        `  ${impl.padEnd(8)} heap ${(m.heap / MiB).toFixed(1).padStart(6)} MiB, external ${(m.external / MiB).toFixed(1).padStart(5)} MiB, built in ${m.buildMs.toFixed(0)} ms`,
      );
    }
    const total = (m: Memory) => m.heap + m.external;
    console.log(`  library/compact (heap + external): ${(total(memory.library) / total(memory.compact)).toFixed(1)}x`);
    speed(path, text);
  }
}

main();
