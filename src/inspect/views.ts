/**
 * The memory inspector's public shapes: what `flexmem inspect --json` prints and what the worker's
 * inspector routes return, field for field (snake_case, like the OpenAI API they sit beside), and
 * the options both parse their input into. docs/inspector.md explains every figure.
 */
import { z } from 'zod';
import { InputError } from '../errors.ts';
import type { MemoryKind } from '../model/config.ts';

/** A token by id, with its text as the tokenizer decodes it alone. */
export interface TokenRef {
  id: number;
  text: string;
}

export interface ScoredToken extends TokenRef {
  /** Direct logit effect of the row on this token (see docs/inspector.md, "Promoted and suppressed"). */
  logit: number;
}

export interface NeighbourToken extends TokenRef {
  /** Cosine between the two tokens' rows in this layer. */
  cosine: number;
}

/** One memory layer of one token: `flexmem inspect --token`. */
export interface TokenLayerView {
  layer: number;
  kind: MemoryKind;
  /** L2 norm of the row's slice, as served (decoded from the table's dtype). */
  norm: number;
  /** `norm` over the layer's median norm over the vocabulary (1 = a typical row). */
  norm_vs_median: number;
  promoted: ScoredToken[];
  suppressed: ScoredToken[];
  neighbours: NeighbourToken[];
}

export interface TokenView {
  object: 'flexmem.memory.token';
  version: string;
  token: TokenRef;
  top_k: number;
  layers: TokenLayerView[];
  /** For gated (MeKi) memory: the approximation behind promoted/suppressed; null for additive memory. */
  approximation: string | null;
  /** What was not recomputed for this version (a patch's edited tokens), or null. */
  note: string | null;
}

/** One memory layer at one prompt position: `flexmem inspect --prompt`. */
export interface PromptLayerView {
  layer: number;
  /** ‖memory output‖: the vector the layer adds to the residual stream for this position. */
  memory_norm: number;
  /** ‖the layer's output without the memory output‖ (the residual stream the memory joins). */
  residual_norm: number;
  /** memory_norm / residual_norm. */
  ratio: number;
  /** Gated memory: mean of σ(W_gate h) over the slice's width; null for additive memory. */
  gate: number | null;
  /** log p(next_token) with this position's row of this layer zeroed, minus without; null when not ablated. */
  delta_logprob: number | null;
}

export interface PromptPositionView {
  index: number;
  token: TokenRef;
  layers: PromptLayerView[];
  /** log p(next_token) with every memory layer of this position zeroed, minus without; null when not ablated. */
  delta_logprob_all: number | null;
}

export interface PromptView {
  object: 'flexmem.memory.prompt';
  version: string;
  ablation: PromptAblation;
  /** The model's greedy next token after the whole prompt, and its log-probability. */
  next_token: TokenRef & { logprob: number };
  positions: PromptPositionView[];
  /** Forward passes run (1 + the ablated variants), for cost accounting. */
  forward_passes: number;
}

export interface DiffLayerSide {
  norm: number;
  promoted: ScoredToken[];
}

export interface DiffLayerView {
  layer: number;
  before: DiffLayerSide;
  after: DiffLayerSide;
}

export interface DiffTokenView {
  token: TokenRef;
  layers: DiffLayerView[];
}

export interface DiffView {
  object: 'flexmem.memory.diff';
  from: string;
  to: string;
  /** Tokens whose stored row differs, in id order (at most `limit` listed). */
  changed: DiffTokenView[];
  /** All tokens whose stored row differs, listed or not. */
  changed_count: number;
  top_k: number;
}

// ---- options: what a CLI flag set or an HTTP body parses into ---------------------------------

/** Ablations of the prompt view: every layer of a position at once, also each layer alone, or one layer. */
export type PromptAblation = 'none' | 'all' | 'each-layer' | { layer: number };

export interface TokenOptions {
  /** Exactly one of `token` (text that is one token) and `id`. */
  token?: string;
  id?: number;
  /** Memory layers to show; all of them by default. */
  layers?: 'all' | number[];
  /** Entries per list (promoted, suppressed, neighbours); at most the bundle's lens depth. */
  top?: number;
}

export interface PromptOptions {
  prompt: string;
  ablate?: PromptAblation;
}

export interface DiffOptions {
  top?: number;
  /** Changed tokens listed at most (the count covers all). */
  limit?: number;
}

export const DEFAULT_TOP = 5;
export const DEFAULT_DIFF_LIMIT = 50;
/** Forward passes one prompt view may run (the 'each-layer' ablation is positions × (layers + 1)). */
export const MAX_PROMPT_PASSES = 4096;

const layersField = z.union([z.literal('all'), z.array(z.number().int().nonnegative()).min(1)]);
const ablationField = z.union([
  z.enum(['none', 'all', 'each-layer']),
  z.object({ layer: z.number().int().nonnegative() }).strict(),
  z.number().int().nonnegative(),
]);

const TokenOptionsSchema = z
  .object({
    token: z.string().min(1).optional(),
    id: z.number().int().nonnegative().optional(),
    layers: layersField.optional(),
    top: z.number().int().positive().optional(),
  })
  .strict()
  .refine((o) => (o.token === undefined) !== (o.id === undefined), { message: 'give exactly one of `token` and `id`' });

const PromptOptionsSchema = z
  .object({ prompt: z.string().min(1, 'the prompt is empty'), ablate: ablationField.optional() })
  .strict()
  .transform((o): PromptOptions => ({ prompt: o.prompt, ablate: typeof o.ablate === 'number' ? { layer: o.ablate } : o.ablate }));

const DiffOptionsSchema = z
  .object({ top: z.number().int().positive().optional(), limit: z.number().int().positive().max(10_000).optional() })
  .strict();

function parseWith<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
  throw new InputError(`${what}: ${where}${issue.message}`);
}

/** Options of a token view from an HTTP body or CLI flags; bundle-dependent checks happen in inspectToken. */
export const parseTokenOptions = (raw: unknown): TokenOptions => parseWith(TokenOptionsSchema, raw, 'token view');
export const parsePromptOptions = (raw: unknown): PromptOptions => parseWith(PromptOptionsSchema, raw, 'prompt view');
export const parseDiffOptions = (raw: unknown): DiffOptions => parseWith(DiffOptionsSchema, raw, 'diff');
