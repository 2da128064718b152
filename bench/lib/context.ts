/** What every suite shares: options, the built worker scripts, the demo bundles, the prompt. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TextTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { demoBundle, denseEquivalent, type BuiltBundle } from './bundles.ts';
import { ROOT, WORK } from './paths.ts';
import { buildWorkerScript, wranglerVars } from './worker.ts';

export interface Options {
  quick: boolean;
  /** Rounds of interleaved measurements (overrides the suite's default). */
  rounds?: number;
  verbose: boolean;
}

export class Context {
  private edge: string | null = null;
  private bench: string | null = null;
  private demo: Promise<BuiltBundle> | null = null;
  private demoF32: Promise<BuiltBundle> | null = null;
  private dense: Promise<BuiltBundle> | null = null;
  private tokenizer: TextTokenizer | null = null;
  readonly vars = wranglerVars(join(ROOT, 'wrangler.toml'));
  readonly buildSeconds: Record<string, number> = {};

  constructor(readonly options: Options) {}

  rounds(full: number, quick: number): number {
    return this.options.rounds ?? (this.options.quick ? quick : full);
  }

  log(...args: unknown[]): void {
    const stamp = new Date().toISOString().slice(11, 19);
    console.log(`[${stamp}]`, ...args);
  }

  /** The real edge worker, bundled by wrangler as `deploy` would. */
  edgeScript(): string {
    if (!this.edge) {
      const t = performance.now();
      this.edge = buildWorkerScript(null, join(WORK, 'edge-worker'));
      this.buildSeconds['edge worker (wrangler deploy --dry-run)'] = (performance.now() - t) / 1000;
    }
    return this.edge;
  }

  /** The benchmark-only worker (bench/worker), bundled the same way. */
  benchScript(): string {
    if (!this.bench) {
      const t = performance.now();
      this.bench = buildWorkerScript(join(ROOT, 'bench', 'worker', 'wrangler.toml'), join(WORK, 'bench-worker'));
      this.buildSeconds['bench worker'] = (performance.now() - t) / 1000;
    }
    return this.bench;
  }

  private track(name: string, p: Promise<BuiltBundle>): Promise<BuiltBundle> {
    return p.then((b) => {
      if (b.buildSeconds) this.buildSeconds[name] = b.buildSeconds;
      return b;
    });
  }

  demoBundle(): Promise<BuiltBundle> {
    this.demo ??= this.track('demo bundle (models/flex, f16 tables + reference.onnx)', demoBundle('flex', 'f16'));
    return this.demo;
  }

  demoBundleF32(): Promise<BuiltBundle> {
    this.demoF32 ??= this.track('demo bundle (models/flex, f32 tables)', demoBundle('flex', 'f32'));
    return this.demoF32;
  }

  async denseBundle(): Promise<BuiltBundle> {
    this.dense ??= denseEquivalent(await this.demoBundle());
    return this.dense;
  }

  async demoTokenizer(): Promise<TextTokenizer> {
    if (!this.tokenizer) {
      const demo = await this.demoBundle();
      this.tokenizer = new TextTokenizer(JSON.parse(readFileSync(join(demo.dir, demo.manifest.objects.tokenizer.path), 'utf8')));
    }
    return this.tokenizer;
  }

  /** A passage of the held-out validation text, `tokens` tokens long in `tokenizer` (the demo model's by default), as the prompt. */
  async prompt(tokens: number, tokenizer?: TextTokenizer): Promise<string> {
    const tok = tokenizer ?? (await this.demoTokenizer());
    const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8').slice(20_000, 40_000);
    const start = text.indexOf('. ') + 2;
    const ids = tok.encode(text.slice(start, start + tokens * 8)).slice(0, tokens);
    return tok.decode(ids);
  }

  /** Token ids of the validation text, for the step benchmarks' fixed sequences. */
  async validationIds(count: number, offset = 5000): Promise<number[]> {
    const tok = await this.demoTokenizer();
    const text = readFileSync(join(ROOT, 'training', 'data', 'valid.txt'), 'utf8').slice(offset, offset + count * 10);
    return tok.encode(text).slice(0, count);
  }
}
