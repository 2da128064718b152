import { memoryKindOf, type ModelConfig } from './config.ts';

/**
 * Where a checkpoint tensor ends up when served:
 * - `compute`: inside the compute graph, resident in every server;
 * - `memory`:  used only to precompute the token-wise tables (FFN-M, MeKi's M and G),
 *              never resident at inference.
 */
export type TensorRole = 'compute' | 'memory';

export interface TensorSpec {
  name: string;
  shape: number[];
  role: TensorRole;
  /** How `flexmem init` fills it: norms start at one, everything else is random. */
  init: 'ones' | 'normal';
}

/** Every tensor a checkpoint of this config must contain, in a stable order (docs/checkpoint-format.md). */
export function checkpointTensors(config: ModelConfig): TensorSpec[] {
  const { vocab_size: V, hidden_size: d, head_dim: hd } = config;
  const H = config.num_attention_heads;
  const KV = config.num_key_value_heads;
  const specs: TensorSpec[] = [];
  const add = (name: string, shape: number[], role: TensorRole = 'compute') =>
    specs.push({ name, shape, role, init: name.endsWith('norm.weight') ? 'ones' : 'normal' });
  const swiglu = (prefix: string, width: number, role: TensorRole, outDim = d) => {
    add(`${prefix}.gate_proj.weight`, [width, d], role);
    add(`${prefix}.up_proj.weight`, [width, d], role);
    add(`${prefix}.down_proj.weight`, [outDim, width], role);
  };

  add('model.embed_tokens.weight', [V, d]);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [d]);
    add(`${p}.self_attn.q_proj.weight`, [H * hd, d]);
    add(`${p}.self_attn.k_proj.weight`, [KV * hd, d]);
    add(`${p}.self_attn.v_proj.weight`, [KV * hd, d]);
    add(`${p}.self_attn.o_proj.weight`, [d, H * hd]);
    const kind = memoryKindOf(config, l);
    if (kind === null) {
      add(`${p}.post_attention_layernorm.weight`, [d]);
      swiglu(`${p}.mlp`, config.intermediate_size, 'compute');
    } else if (config.architecture === 'memoryllm' || config.architecture === 'flex') {
      if (config.architecture === 'flex') {
        add(`${p}.post_attention_layernorm.weight`, [d]);
        swiglu(`${p}.mlp`, config.ffn_c_intermediate_size!, 'compute');
      }
      add(`${p}.memory.norm.weight`, [d], 'memory');
      swiglu(`${p}.memory`, config.memory_intermediate_size!, 'memory');
    } else {
      const dMem = config.memory_dim!;
      add(`${p}.post_attention_layernorm.weight`, [d]);
      swiglu(`${p}.mlp`, config.intermediate_size, 'compute');
      add(`${p}.memory.table`, [V, dMem], 'memory');
      swiglu(`${p}.memory.dynamic`, config.memory_gate_intermediate_size!, 'memory', dMem);
      add(`${p}.memory.alpha`, [1], 'memory');
      add(`${p}.memory.beta`, [1], 'memory');
      add(`${p}.memory.mix_norm.weight`, [dMem], 'memory');
      add(`${p}.memory.gate_proj.weight`, [dMem, d]);
      add(`${p}.memory.out_proj.weight`, [d, dMem]);
      add(`${p}.memory.post_norm.weight`, [d]);
    }
  }
  add('model.norm.weight', [d]);
  if (!config.tie_word_embeddings) add('lm_head.weight', [V, d]);
  return specs;
}

export const elementCount = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
