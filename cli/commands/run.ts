import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
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
      const { core, bundle, tokenizer } = await openLocalBundle(dir, opts.reference ? 'reference' : 'optimized');
      const promptIds = tokenizer.encode(opts.prompt);
      if (promptIds.length === 0) throw new InputError('the prompt is empty');
      // Ctrl-C stops the generation the way a client disconnect stops the worker's.
      const interrupt = new AbortController();
      process.once('SIGINT', () => interrupt.abort());
      const { deltas } = core.generate(bundle, {
        promptIds,
        maxTokens: opts.maxTokens,
        sampling: { temperature: opts.temperature, topK: opts.topK, topP: opts.topP, seed: opts.seed },
        stop: [],
        logprobs: null,
        signal: interrupt.signal,
      });
      process.stdout.write(opts.prompt);
      for await (const { text } of deltas) process.stdout.write(text);
      process.stdout.write('\n');
    });
}
