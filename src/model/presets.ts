import { FlexmemError } from '../errors.ts';
import type { Architecture, ConfigInput } from './config.ts';

/**
 * Named model shapes. `tiny` is for tests (any architecture); the others are the papers' models,
 * for `flexmem plan` and capacity planning. Where a paper does not state a dimension, the value
 * is flexmem's assumption and is marked so.
 */
export const PRESETS: Record<string, { description: string; config: Partial<ConfigInput> }> = {
  tiny: {
    description: 'a few hundred thousand parameters, for tests',
    config: {
      vocab_size: 512,
      hidden_size: 64,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 128,
      ffn_c_intermediate_size: 32,
      memory_intermediate_size: 256,
      memory_dim: 16,
      memory_gate_intermediate_size: 64,
      max_position_embeddings: 128,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      tie_word_embeddings: true,
    },
  },
  'memoryllm-1b': {
    description: 'MemoryLLM 1B (arXiv 2602.00398): 24 layers, d=2048, 32 heads, Llama-3 vocabulary',
    config: {
      architecture: 'memoryllm',
      vocab_size: 128256,
      hidden_size: 2048,
      num_hidden_layers: 24,
      num_attention_heads: 32,
      num_key_value_heads: 8, // assumption: Llama-3.2-1B's grouping
      intermediate_size: 8192, // assumption: Llama-3.2-1B's FFN width
      memory_intermediate_size: 8192, // assumption: FFN-M as wide as the dense FFN it replaces
      ffn_c_intermediate_size: 1024, // for --arch flex: Flex-1.5·h² (3·d·w = 1.5·d²)
      max_position_embeddings: 2048,
      rope_theta: 500000,
      tie_word_embeddings: true,
    },
  },
  'meki-1.7b': {
    description: 'MeKi 1.7B (arXiv 2602.03359): Qwen3-1.7B backbone, 28 layers, d=2048, d_mem=256',
    config: {
      architecture: 'meki',
      vocab_size: 151680,
      hidden_size: 2048,
      num_hidden_layers: 28,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
      intermediate_size: 6144,
      memory_dim: 256,
      memory_gate_intermediate_size: 1024, // assumption: the paper does not give G's width
      max_position_embeddings: 4096,
      rope_theta: 1000000,
      tie_word_embeddings: true,
    },
  },
};

/** The raw config of a preset, with `architecture` overridden when given. */
export function presetConfig(name: string, architecture?: Architecture): ConfigInput {
  const preset = PRESETS[name];
  if (!preset) throw new FlexmemError(`unknown preset ${JSON.stringify(name)} (expected one of ${Object.keys(PRESETS).join(', ')})`);
  const arch = architecture ?? preset.config.architecture;
  if (!arch) throw new FlexmemError(`preset ${name} needs --arch (dense, memoryllm, flex or meki)`);
  return { ...preset.config, architecture: arch } as ConfigInput;
}
