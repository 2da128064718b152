import type { Command } from 'commander';
import { generateTokens, TextStreamer } from '../../src/engine/generate.ts';
import { FlexmemError } from '../../src/errors.ts';
import { openLocalBundle } from '../local-bundle.ts';
import { integerAtLeast, numberInRange } from '../options.ts';

interface RunOptions {
  prompt: string;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  reference?: boolean;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('generate text from a bundle, streaming tokens to stdout (the engine the worker uses)')
    .argument('<bundle>', 'bundle folder')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-tokens <n>', 'tokens to generate', integerAtLeast(1), 64)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', numberInRange(0, 10), 0.8)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = all)', integerAtLeast(0), 0)
    .option('--top-p <p>', 'nucleus sampling mass', numberInRange(0, 1), 1)
    .option('--seed <n>', 'random seed', integerAtLeast(0), 0)
    .option('--reference', 'run reference.onnx instead of compute.onnx + tables')
    .action(async (dir: string, opts: RunOptions) => {
      const { tokenizer, decoder, manifest } = await openLocalBundle(dir, opts.reference ? 'reference' : 'compute');
      const promptIds = tokenizer.encode(opts.prompt);
      if (promptIds.length === 0) throw new FlexmemError('the prompt is empty');
      const eos = manifest.config.eos_token_id;
      const streamer = new TextStreamer((ids) => tokenizer.decode(ids));
      process.stdout.write(opts.prompt);
      for await (const { id } of generateTokens(decoder, promptIds, { ...opts, stopTokenIds: eos === undefined ? [] : [eos] })) {
        process.stdout.write(streamer.push(id));
      }
      process.stdout.write(streamer.flush() + '\n');
    });
}
