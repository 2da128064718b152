/**
 * Per-request memory overrides: the request's `flexmem.edits` (the format `flexmem patch` reads,
 * src/memory/memory-edits.ts) applied to the rows this one generation reads. The edited rows are
 * made once per request from the rows the hierarchy serves, with the same arithmetic a patch
 * uses; nothing cached, shared or published changes, and other requests never see them. With
 * `flexmem.provenance` the same wrapper records which tier served each fed row (row-provenance.ts).
 */
import type { RowSource } from '../bundle/row-source.ts';
import { applyEdits, EditError, resolveEdits, tokensReadBy, type MemoryEdit, type ResolvedEdit } from '../memory/memory-edits.ts';
import type { LoadedBundle, RowReadWrapper } from '../serving/serving-core.ts';
import { ApiError } from './errors.ts';
import type { ApiHost } from './host.ts';
import type { OverridesSummary } from './openai-format.ts';
import type { CompletionRequest } from './request-schema.ts';
import { recordTiers, type RowTier, type TierRecorder } from './row-provenance.ts';

type FlexmemOptions = NonNullable<CompletionRequest['flexmem']>;

/** How one generation reads its rows for its request's `flexmem` options, and what its response reports of them. */
export interface RequestMemory {
  readRows?: RowReadWrapper;
  /** With `provenance`: the tier of the row the last decode step fed. */
  fedRowTier?: () => RowTier | null;
  summary?: OverridesSummary;
}

/** Resolves a request's edits against the bundle it pinned; a bad edit is a 400 naming its field. */
export function resolveRequestEdits(bundle: LoadedBundle, edits: readonly MemoryEdit[]): ResolvedEdit[] {
  const layout = bundle.manifest.tables?.layout;
  if (!layout)
    throw new ApiError(
      400,
      `Model version ${bundle.version} has no memory rows to override.`,
      'invalid_request_error',
      'flexmem.edits',
      'invalid_value',
    );
  try {
    return resolveEdits(edits, { layout, vocabSize: bundle.manifest.config.vocab_size, encode: (text) => bundle.tokenizer.encode(text) });
  } catch (error) {
    if (!(error instanceof EditError)) throw error;
    const param = `flexmem.edits.${error.index}.${error.field}`;
    throw new ApiError(400, `Invalid value for '${param}': ${error.detail}.`, 'invalid_request_error', param, 'invalid_value');
  }
}

/** `source` with the edited tokens' rows replaced; `tokens` are the edited ones. */
export function overriddenRows(source: RowSource, edits: readonly ResolvedEdit[]): RowSource & { readonly tokens: ReadonlySet<number> } {
  const R = source.rowValues;
  const editedTokens = new Set(edits.map((e) => e.token));
  let edited: Promise<Map<number, Float32Array>> | null = null;
  // Read once, on the first step, through the hierarchy like any other row.
  const editedRows = () => {
    edited ??= (async () => {
      const ids = tokensReadBy(edits);
      const values = await source.rows(ids);
      const rows = new Map(ids.map((id, i) => [id, values.slice(i * R, (i + 1) * R)]));
      const changed = applyEdits(rows, edits);
      return new Map([...rows].filter(([id]) => changed.has(id)));
    })();
    return edited;
  };
  return {
    rowValues: R,
    tokens: editedTokens,
    async rows(tokenIds) {
      const others = tokenIds.filter((id) => !editedTokens.has(id));
      const [overrides, base] = await Promise.all([
        editedRows(),
        others.length === tokenIds.length ? source.rows(tokenIds) : others.length ? source.rows(others) : null,
      ]);
      if (others.length === tokenIds.length) return base!;
      const out = new Float32Array(tokenIds.length * R);
      let next = 0;
      tokenIds.forEach((id, i) => {
        const row = overrides.get(id) ?? base!.subarray(next * R, ++next * R);
        out.set(row, i * R);
      });
      return out;
    },
  };
}

/** What a request's `flexmem` extension asks of its generation: overridden rows, and the tier of each fed row. */
export function requestMemory(host: ApiHost, bundle: LoadedBundle, options: FlexmemOptions | null | undefined): RequestMemory {
  const edits = options?.edits ? resolveRequestEdits(bundle, options.edits) : null;
  if (edits && host.core.settings.graph === 'reference')
    throw new ApiError(
      400,
      'This server runs the reference graph, which reads no memory rows to override.',
      'invalid_request_error',
      'flexmem.edits',
      'unsupported_value',
    );
  const provenance = options?.provenance === true;
  let recorder: TierRecorder | null = null;
  const readRows: RowReadWrapper | undefined =
    edits || provenance
      ? (source) => {
          const rows = edits ? overriddenRows(source, edits) : source;
          if (!provenance) return rows;
          recorder = recordTiers(source.stats, rows, edits ? new Set(edits.map((e) => e.token)) : undefined);
          return recorder.rows;
        }
      : undefined;
  return {
    readRows,
    fedRowTier: provenance ? () => recorder?.lastTier() ?? null : undefined,
    summary: edits ? { edits: edits.length, tokens: [...new Set(edits.map((e) => e.token))].sort((a, b) => a - b) } : undefined,
  };
}
