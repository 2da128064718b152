import { parseConfig, type Architecture, type ConfigInput, type ModelConfig } from '../src/model/config.ts';
import { initialValues } from '../src/model/init.ts';
import { presetConfig } from '../src/model/presets.ts';
import { checkpointTensors } from '../src/model/tensors.ts';
import { trainByteLevelBpe } from '../src/tokenizer/byte-level-bpe.ts';
import { SAMPLE_TEXT } from '../src/tokenizer/sample-text.ts';
import { writeCheckpoint } from './checkpoint.ts';

export interface RandomCheckpointOptions {
  preset: string;
  arch?: Architecture;
  seed: number;
  dtype: 'f32' | 'f16';
  /** Config keys to change from the preset (tests use this to vary shapes). */
  overrides?: Partial<ConfigInput>;
}

/** Writes a random-initialised checkpoint with a trained byte-level BPE tokenizer of the right size. */
export function writeRandomCheckpoint(dir: string, options: RandomCheckpointOptions): ModelConfig {
  const raw = { ...presetConfig(options.preset, options.arch), ...options.overrides } as ConfigInput;
  const { json: tokenizer, endOfTextId } = trainByteLevelBpe(SAMPLE_TEXT, raw.vocab_size);
  const configJson = { ...raw, bos_token_id: endOfTextId, eos_token_id: endOfTextId };
  const config = parseConfig(configJson);
  writeCheckpoint(dir, configJson, tokenizer, checkpointTensors(config), (spec) => initialValues(spec, options.seed), options.dtype);
  return config;
}
