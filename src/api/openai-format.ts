/** The response objects of OpenAI's completions and chat completions APIs, plus flexmem's extension. */
import type { FinishReason, TokenLogprob } from '../engine/generation.ts';
import type { TierStats } from '../memory/memory-hierarchy.ts';
import type { GenerationMetrics } from '../serving/serving-core.ts';

export type Endpoint = 'text' | 'chat';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Where a response's time and rows went. compute_ms is everything that was not memory wait. */
export interface TimingSummary {
  total_ms: number;
  memory_wait_ms: number;
  compute_ms: number;
  row_lookups: number;
  rows: TierStats['rows'];
  origin_requests: number;
  origin_bytes: number;
}

export function timingSummary(totalMs: number, { memoryWaitMs, tiers }: GenerationMetrics): TimingSummary {
  const round = (ms: number) => Math.round(ms * 1000) / 1000;
  return {
    total_ms: round(totalMs),
    memory_wait_ms: round(memoryWaitMs),
    compute_ms: round(totalMs - memoryWaitMs),
    row_lookups: tiers.lookups,
    rows: { ...tiers.rows },
    origin_requests: tiers.originRequests,
    origin_bytes: tiers.originBytes,
  };
}

/** The Server-Timing header of a non-streaming response. */
export function serverTimingHeader(t: TimingSummary): string {
  const rows = Object.entries(t.rows)
    .map(([tier, n]) => `${tier}=${n}`)
    .join(' ');
  return `total;dur=${t.total_ms}, memory;dur=${t.memory_wait_ms}, compute;dur=${t.compute_ms}, rows;desc="${rows} origin_requests=${t.origin_requests} origin_bytes=${t.origin_bytes}"`;
}

export interface ResponseContext {
  endpoint: Endpoint;
  id: string;
  created: number;
  model: string;
  version: string;
  /** The request's memory overrides, reported in the first and last chunks and the response. */
  overrides?: OverridesSummary;
}

/** What a response says of the memory overrides it was generated with. */
export interface OverridesSummary {
  edits: number;
  /** The token ids whose rows were overridden. */
  tokens: number[];
}

/** A generated token and where its memory row came from (`tier` arrives in a later chunk, see FedRow). */
export interface TokenProvenance {
  position: number;
  id: number;
  text: string;
}

/** The provenance a delta chunk carries: its tokens, and the tiers of rows fed since the previous chunk. */
export interface ChunkProvenance {
  tokens: TokenProvenance[];
  rows: { position: number; tier: string | null }[];
}

const base = (r: ResponseContext, object: string) => ({
  id: r.id,
  object,
  created: r.created,
  model: r.model,
  system_fingerprint: `flexmem-${r.version}`,
});

/** A token as OpenAI's logprobs show it: its text and its exact bytes. */
export type TokenText = (id: number) => { token: string; bytes: number[] };

export function tokenTextOf(tokenBytes: (id: number) => Uint8Array): TokenText {
  const decoder = new TextDecoder();
  return (id) => {
    const bytes = tokenBytes(id);
    return { token: decoder.decode(bytes), bytes: [...bytes] };
  };
}

/** The `logprobs` of a choice: chat's `{ content: [...] }` or completions' parallel arrays. */
export function formatLogprobs(endpoint: Endpoint, tokens: TokenLogprob[], text: TokenText, textOffset = 0): object {
  if (endpoint === 'chat') {
    return {
      content: tokens.map((t) => ({
        ...text(t.id),
        logprob: t.logprob,
        top_logprobs: t.top.map((a) => ({ ...text(a.id), logprob: a.logprob })),
      })),
      refusal: null,
    };
  }
  const strings = tokens.map((t) => text(t.id).token);
  const offsets = strings.map((_, i) => textOffset + strings.slice(0, i).join('').length);
  return {
    tokens: strings,
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((a) => [text(a.id).token, a.logprob]))),
    text_offset: offsets,
  };
}

const chunkObject = (r: ResponseContext) => (r.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion');

/**
 * A streamed chunk of one choice. Chat: each choice's first delta names the role, its last is
 * empty with the finish reason. Chunks of several choices interleave, told apart by `index`.
 */
function chunk(
  r: ResponseContext,
  index: number,
  delta: Record<string, string>,
  text: string,
  finishReason: FinishReason | null,
  extra: object,
  logprobs: object | null = null,
): object {
  const choice =
    r.endpoint === 'chat'
      ? { index, delta, logprobs, finish_reason: finishReason }
      : { index, text, logprobs, finish_reason: finishReason };
  return { ...base(r, chunkObject(r)), choices: [choice], ...extra };
}

/** A choice's first chunk: it carries the bundle version the whole response uses. */
export const startChunk = (r: ResponseContext, index: number) =>
  chunk(r, index, { role: 'assistant', content: '' }, '', null, { flexmem: { bundle_version: r.version, ...overridesOf(r) } });
export const deltaChunk = (
  r: ResponseContext,
  index: number,
  text: string,
  logprobs: object | null = null,
  provenance: ChunkProvenance | null = null,
) => chunk(r, index, { content: text }, text, null, provenance ? { flexmem: provenance } : {}, logprobs);
/** A choice's last chunk: its finish reason; the last choice to finish carries the timing summary of the response. */
export const finishChunk = (
  r: ResponseContext,
  index: number,
  finishReason: FinishReason,
  timing: TimingSummary | null,
  provenance: ChunkProvenance | null = null,
) =>
  chunk(r, index, {}, '', finishReason, {
    flexmem: { bundle_version: r.version, ...overridesOf(r), ...(timing && { timing }), ...provenance },
  });

const overridesOf = (r: ResponseContext) => (r.overrides ? { overrides: r.overrides } : {});

export function usageChunk(r: ResponseContext, usage: Usage): object {
  return { ...base(r, chunkObject(r)), choices: [], usage };
}

/** One finished choice of a non-streamed response. */
export interface ChoiceOutput {
  text: string;
  finishReason: FinishReason;
  logprobs: object | null;
}

export function completeResponse(
  r: ResponseContext,
  choices: ChoiceOutput[],
  usage: Usage,
  timing: TimingSummary,
  provenance: (TokenProvenance & { tier: string | null })[][] | null = null,
): object {
  return {
    ...base(r, r.endpoint === 'chat' ? 'chat.completion' : 'text_completion'),
    choices: choices.map(({ text, finishReason, logprobs }, index) =>
      r.endpoint === 'chat'
        ? { index, message: { role: 'assistant', content: text, refusal: null }, logprobs, finish_reason: finishReason }
        : { index, text, logprobs, finish_reason: finishReason },
    ),
    usage,
    flexmem: { bundle_version: r.version, ...overridesOf(r), timing, ...(provenance && { tokens: provenance }) },
  };
}
