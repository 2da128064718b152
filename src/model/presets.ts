import { InputError } from '../errors.ts';
import type { Architecture, ConfigInput } from './config.ts';

interface Preset {
  description: string;
  /** `intermediate_size` is a fixed per-layer FFN budget: `flex` is derived from it as Flex-βh². */
  ffnBudget?: boolean;
  config: Partial<ConfigInput>;
}

/**
 * Named model shapes. `tiny` is for tests (any architecture); the others are the papers' models,
 * for `flexmem plan` and capacity planning. Where a paper does not state a dimension, the value
 * is flexmem's assumption and is marked so.
 */
export const PRESETS: Record<string, Preset> = {
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
    description: 'MemoryLLM-1B (arXiv 2602.00398, Table 5): 24 layers, d=2048, 32 heads (MHA), FFN width 5464, Llama-3 vocabulary',
    // The paper's figures, from `flexmem plan --preset memoryllm-1b [--arch dense|flex]`. Active
    // parameters without the embedding: the paper's numbers are the weight matrices rounded *down*
    // to millions (to nearest they would read 403M and 705M); our counts add the norms (2,048
    // each, 0.05–0.1M in all), which leaves the million unchanged:
    //   memoryllm: attention only, 24 · 4·2048²                  =   402,653,184 → 402M
    //   dense:     + SwiGLU FFN, 24 · (4·2048² + 3·2048·5464)     = 1,208,352,768 → 1,208M
    //   flex:      + FFN-C of 3h², 24 · (4·2048² + 3·2048²)       =   704,643,072 → 704M
    //   ToL:       24 · 2048 · 128256 = 6,304,038,912 values, ×2 bytes = 12.6 GB at fp16
    ffnBudget: true,
    config: {
      architecture: 'memoryllm',
      vocab_size: 128256,
      hidden_size: 2048,
      num_hidden_layers: 24,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      intermediate_size: 5464, // the dense base's FFN: the FFN budget of every layer (3·d·5464 ≈ 8.004·d²)
      memory_intermediate_size: 5464, // MemoryLLM moves the whole FFN to FFN-M
      // Not in the paper's table and in none of its figures, so assumptions: Llama-3's θ and ε, a
      // 2,048 context, and an embedding tied to the LM head as in Llama-3.2-1B (the figures exclude
      // the embedding, so they cannot tell; untied adds 263M to the active count with embedding).
      max_position_embeddings: 2048,
      rope_theta: 500000,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: true,
    },
  },
  'meki-1.7b': {
    description: 'MeKi-1.7B (arXiv 2602.03359): Qwen3-1.7B backbone, 28 layers, d=2048, d_mem=256',
    // Tables: 28 · 256 · 151680 = 1,087,242,240 values (1.09B); a row is 28 · 256 · 2 = 14,336 bytes at fp16.
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
      memory_gate_intermediate_size: 1024, // assumption: the paper does not give G's width (G is folded into the table)
      max_position_embeddings: 4096,
      rope_theta: 500000, // MeKi's own, not Qwen3's 1,000,000
      rms_norm_eps: 1e-6,
      tie_word_embeddings: true,
    },
  },
};

/**
 * Flex-βh² (arXiv 2602.00398): FFN-C holds β·h² parameters moved *out of* FFN-M, so the layer's
 * FFN budget stays fixed. A SwiGLU of width w has 3·h·w parameters, hence
 * FFN-C width = β·h/3 (β = 3: as wide as h) and FFN-M width = budget − β·h/3.
 */
export function flexWidths(
  hidden: number,
  budget: number,
  beta = 3,
): Pick<ConfigInput, 'ffn_c_intermediate_size' | 'memory_intermediate_size'> {
  const ffnC = (beta * hidden) / 3;
  if (!Number.isInteger(ffnC) || ffnC < 1 || ffnC >= budget) {
    throw new InputError(`Flex-${beta}h² needs an FFN-C width β·h/3 (${ffnC}) that is a whole number below the FFN width ${budget}`);
  }
  return { ffn_c_intermediate_size: ffnC, memory_intermediate_size: budget - ffnC };
}

/** The raw config of a preset, with `architecture` overridden when given; `beta` sizes a derived flex. */
export function presetConfig(name: string, architecture?: Architecture, beta?: number): ConfigInput {
  const preset = PRESETS[name];
  if (!preset) throw new InputError(`unknown preset ${JSON.stringify(name)} (expected one of ${Object.keys(PRESETS).join(', ')})`);
  const arch = architecture ?? preset.config.architecture;
  if (!arch) throw new InputError(`preset ${name} needs --arch (dense, memoryllm, flex or meki)`);
  const derived = preset.ffnBudget && arch === 'flex';
  if (beta !== undefined && !derived) {
    throw new InputError(`--beta sizes a flex derived from a preset's FFN budget (${budgetPresets().join(', ')} with --arch flex)`);
  }
  const widths = derived ? flexWidths(preset.config.hidden_size!, preset.config.intermediate_size!, beta) : {};
  return { ...preset.config, ...widths, architecture: arch } as ConfigInput;
}

const budgetPresets = () => Object.keys(PRESETS).filter((name) => PRESETS[name].ffnBudget);
