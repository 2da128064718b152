import { existsSync, readdirSync } from 'node:fs';
import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
import { ARCHITECTURES, type Architecture } from '../../src/model/config.ts';
import { PRESETS } from '../../src/model/presets.ts';
import { oneOf, integerAtLeast } from '../options.ts';
import { writeRandomCheckpoint } from '../random-checkpoint.ts';

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('write a random-initialised checkpoint (deterministic for a seed) with a tokenizer')
    .argument('<dir>', 'checkpoint folder to create')
    .option('--arch <arch>', `architecture: ${ARCHITECTURES.join(', ')}`, oneOf(ARCHITECTURES))
    .option('--preset <name>', `shape: ${Object.keys(PRESETS).join(', ')}`, oneOf(Object.keys(PRESETS)), 'tiny')
    .option('--seed <n>', 'random seed', integerAtLeast(0), 0)
    .option('--dtype <dtype>', 'weight dtype: f32 or f16', oneOf(['f32', 'f16'] as const), 'f32')
    .action((dir: string, opts: { arch?: Architecture; preset: string; seed: number; dtype: 'f32' | 'f16' }) => {
      if (existsSync(dir) && readdirSync(dir).length > 0) throw new InputError(`folder is not empty: ${dir} (init never overwrites)`);
      const config = writeRandomCheckpoint(dir, opts);
      console.log(`wrote ${config.architecture} checkpoint (${opts.preset}, seed ${opts.seed}) to ${dir}`);
    });
}
