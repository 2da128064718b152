import { z } from 'zod';
import { InputError } from '../errors.ts';

export const ARCHITECTURES = ['dense', 'memoryllm', 'flex', 'meki'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** How a layer's memory row slice enters the residual stream (see docs/checkpoint-format.md). */
export type MemoryKind = 'additive' | 'gated';

const positiveInt = z.number().int().positive();

/**
 * `config.json` of a checkpoint. Field names are the checkpoint's own (Hugging Face style),
 * so the file reads the same as the object.
 */
const ConfigSchema = z
  .object({
    architecture: z.enum(ARCHITECTURES, {
      error: (issue) => `unknown architecture ${JSON.stringify(issue.input)} (expected one of ${ARCHITECTURES.join(', ')})`,
    }),
    vocab_size: positiveInt,
    hidden_size: positiveInt,
    num_hidden_layers: positiveInt,
    num_attention_heads: positiveInt,
    num_key_value_heads: positiveInt.optional(),
    head_dim: positiveInt.optional(),
    intermediate_size: positiveInt,
    ffn_c_intermediate_size: positiveInt.optional(),
    memory_intermediate_size: positiveInt.optional(),
    memory_dim: positiveInt.optional(),
    memory_gate_intermediate_size: positiveInt.optional(),
    memory_layers: z.array(z.number().int().nonnegative()).optional(),
    rms_norm_eps: z.number().positive().default(1e-5),
    rope_theta: z.number().positive().default(10000),
    max_position_embeddings: positiveInt,
    tie_word_embeddings: z.boolean().default(true),
    bos_token_id: z.number().int().nonnegative().optional(),
    eos_token_id: z.number().int().nonnegative().optional(),
  })
  .loose();

export type ConfigInput = z.input<typeof ConfigSchema>;

/** A validated config with every default filled in. */
export interface ModelConfig {
  architecture: Architecture;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  intermediate_size: number;
  ffn_c_intermediate_size?: number;
  memory_intermediate_size?: number;
  memory_dim?: number;
  memory_gate_intermediate_size?: number;
  memory_layers: number[];
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  bos_token_id?: number;
  eos_token_id?: number;
}

/** Which config keys each architecture needs beyond the common ones. */
const REQUIRED_KEYS: Record<Architecture, (keyof ModelConfig)[]> = {
  dense: [],
  memoryllm: ['memory_intermediate_size'],
  flex: ['memory_intermediate_size', 'ffn_c_intermediate_size'],
  meki: ['memory_dim', 'memory_gate_intermediate_size'],
};

/** Parses and checks a config object; throws a InputError naming the first problem. */
export function parseConfig(raw: unknown, source = 'config.json'): ModelConfig {
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    throw new InputError(`${source}: ${where}${issue.message}`);
  }
  const c = parsed.data;
  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  const headDim = c.head_dim ?? c.hidden_size / heads;
  const fail = (msg: string): never => {
    throw new InputError(`${source}: ${msg}`);
  };
  if (!Number.isInteger(headDim)) fail(`hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${heads}; set head_dim`);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} must be even for rotary positions`);
  if (heads % kvHeads !== 0) fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  for (const key of REQUIRED_KEYS[c.architecture]) {
    if (c[key] === undefined) fail(`${key} is required for architecture ${c.architecture}`);
  }
  const allLayers = [...Array(c.num_hidden_layers).keys()];
  const memoryLayers = c.architecture === 'dense' ? [] : (c.memory_layers ?? allLayers);
  if (c.architecture === 'dense' && c.memory_layers?.length) fail('memory_layers must be empty for architecture dense');
  for (const l of memoryLayers) {
    if (l >= c.num_hidden_layers) fail(`memory_layers has layer ${l}, but the model has ${c.num_hidden_layers} layers`);
  }
  if (new Set(memoryLayers).size !== memoryLayers.length) fail('memory_layers lists a layer twice');
  for (const key of ['bos_token_id', 'eos_token_id'] as const) {
    const id = c[key];
    if (id !== undefined && id >= c.vocab_size) fail(`${key} ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
  }
  return {
    ...c,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    memory_layers: [...memoryLayers].sort((a, b) => a - b),
  };
}

/** The memory kind of a layer, or null for a layer without memory. */
export function memoryKindOf(config: ModelConfig, layer: number): MemoryKind | null {
  if (!config.memory_layers.includes(layer)) return null;
  return config.architecture === 'meki' ? 'gated' : 'additive';
}

/** Width (values per token) of a layer's table slice: d for additive memory, d_mem for gated. */
export function memoryWidthOf(config: ModelConfig, layer: number): number {
  const kind = memoryKindOf(config, layer);
  if (kind === null) return 0;
  return kind === 'gated' ? config.memory_dim! : config.hidden_size;
}

/** One layer's part of a token's memory row, in f32 values (as the compute graph receives it). */
export interface MemorySlice {
  layer: number;
  kind: MemoryKind;
  width: number;
  /** Offset in values within the f32 row fed to the graph. */
  offset: number;
}

/** The layers' slices of a token's memory row, in layer order: row(v) = [slice_l0 | slice_l1 | ...]. */
export function memorySlices(config: ModelConfig): MemorySlice[] {
  let offset = 0;
  return config.memory_layers.map((layer) => {
    const slice = { layer, kind: memoryKindOf(config, layer)!, width: memoryWidthOf(config, layer), offset };
    offset += slice.width;
    return slice;
  });
}

/** Values per token row over all memory layers (R). */
export const rowWidth = (config: ModelConfig): number => memorySlices(config).reduce((n, s) => n + s.width, 0);
