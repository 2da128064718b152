import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { perplexity } from '../../src/engine/perplexity.ts';
import { InputError } from '../../src/errors.ts';
import { openLocalBundle } from '../local-bundle.ts';
import { integerAtLeast } from '../options.ts';

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('print the perplexity of a text file under a bundle')
    .argument('<bundle>', 'bundle folder')
    .requiredOption('--text <file>', 'UTF-8 text file')
    .option('--reference', 'evaluate reference.onnx instead of compute.onnx + tables')
    .option('--windows <n>', 'evaluate only the first n context windows', integerAtLeast(1))
    .option('--json', 'print JSON')
    .action(async (dir: string, opts: { text: string; reference?: boolean; json?: boolean; windows?: number }) => {
      if (!existsSync(opts.text)) throw new InputError(`text file not found: ${opts.text}`);
      const { tokenizer, decoder, manifest } = await openLocalBundle(dir, opts.reference ? 'reference' : 'optimized');
      const ids = tokenizer.encode(readFileSync(opts.text, 'utf8'));
      if (ids.length < 2) throw new InputError(`${opts.text} has fewer than 2 tokens; nothing to predict`);
      const result = await perplexity(decoder, ids, { maxWindows: opts.windows });
      const dtype = manifest.tables?.layout.dtype ?? 'none';
      // reference.onnx is always f32 (the oracle); compute.onnx is what the manifest says.
      const compute = opts.reference ? 'f32' : (manifest.computeDtype ?? 'f32');
      if (opts.json) console.log(JSON.stringify({ bundle: manifest.version, compute, tables: dtype, ...result }));
      else
        console.log(
          `perplexity ${result.perplexity.toFixed(4)} over ${result.predictedTokens} tokens in ${result.windows} windows (bundle ${manifest.version}, ${compute} compute, ${dtype} tables)`,
        );
    });
}
