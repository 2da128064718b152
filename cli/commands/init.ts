import { existsSync, readdirSync } from 'node:fs';
import type { Command } from 'commander';
import { FlexmemError } from '../../src/errors.ts';
import { ARCHITECTURES, parseConfig, type Architecture } from '../../src/model/config.ts';
import { initialValues } from '../../src/model/init.ts';
import { presetConfig, PRESETS } from '../../src/model/presets.ts';
import { checkpointTensors } from '../../src/model/tensors.ts';
import { trainByteLevelBpe } from '../../src/tokenizer/byte-level-bpe.ts';
import { SAMPLE_TEXT } from '../../src/tokenizer/sample-text.ts';
import { writeCheckpoint } from '../checkpoint.ts';
import { integerAtLeast, oneOf } from '../options.ts';

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
      if (existsSync(dir) && readdirSync(dir).length > 0) throw new FlexmemError(`folder is not empty: ${dir} (init never overwrites)`);
      const raw = presetConfig(opts.preset, opts.arch);
      const { json: tokenizer, endOfTextId } = trainByteLevelBpe(SAMPLE_TEXT, raw.vocab_size);
      const configJson = { ...raw, bos_token_id: endOfTextId, eos_token_id: endOfTextId };
      const config = parseConfig(configJson);
      const tensors = checkpointTensors(config);
      writeCheckpoint(dir, configJson, tokenizer, tensors, (spec) => initialValues(spec, opts.seed), opts.dtype);
      console.log(`wrote ${config.architecture} checkpoint (${opts.preset}, seed ${opts.seed}, ${tensors.length} tensors) to ${dir}`);
    });
}
