/**
 * The one format of knowledge edits, read by `flexmem patch` (edits.json) and by the completion
 * endpoints (the request's `flexmem.edits`, tried for one request before it is published):
 *
 *   { "edits": [
 *       { "token": " Congress", "op": "ablate" },                          memory scaled to zero
 *       { "token": 1234, "op": "scale", "factor": 0.5, "layers": [0, 1] },
 *       { "token": " Senate", "op": "copy", "from": " House" },            another token's memory
 *       { "token": " war", "op": "set", "values": [0.1, ...] },            values given inline
 *       { "token": " war", "op": "set", "file": "rows.json" }              values from a file (CLI only)
 *   ] }
 *
 * A token is an id or a string that is exactly one token; `layers` defaults to every memory layer.
 * For `set`, the values are the chosen layers' slices in layer order. Resolution (token text to
 * id, layers to row slices) and the arithmetic on decoded f32 rows live here, so a patch and a
 * per-request override make the same row of the same edit.
 */
import { z } from 'zod';
import type { RowLayout, RowSlice } from '../bundle/row-codec.ts';
import { InputError } from '../errors.ts';

const TokenRefSchema = z.union([z.number().int(), z.string().min(1)]);
const LayersSchema = z.array(z.number().int()).min(1).optional();

export const MemoryEditSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('ablate'), token: TokenRefSchema, layers: LayersSchema }).strict(),
  z.object({ op: z.literal('scale'), token: TokenRefSchema, factor: z.number(), layers: LayersSchema }).strict(),
  z.object({ op: z.literal('copy'), token: TokenRefSchema, from: TokenRefSchema, layers: LayersSchema }).strict(),
  z
    .object({
      op: z.literal('set'),
      token: TokenRefSchema,
      values: z.array(z.number()).min(1).optional(),
      file: z.string().min(1).optional(),
      layers: LayersSchema,
    })
    .strict()
    .refine((e) => (e.values === undefined) !== (e.file === undefined), { message: 'a set edit takes exactly one of values or file' }),
]);

/** The most edits one edits file or one request may hold. */
export const MAX_EDITS = 64;

export const MemoryEditsSchema = z.array(MemoryEditSchema).min(1).max(MAX_EDITS, `at most ${MAX_EDITS} edits`);

/** The edits.json file of `flexmem patch`. */
export const EditsFileSchema = z.object({ edits: MemoryEditsSchema });

export type MemoryEdit = z.infer<typeof MemoryEditSchema>;

/** An edit with its tokens resolved to ids, its layers to row slices and its `set` values read. */
export interface ResolvedEdit {
  edit: MemoryEdit;
  token: number;
  /** The token whose row a `copy` reads. */
  from?: number;
  slices: RowSlice[];
  /** A `set`'s values, the chosen slices' widths in order. */
  values?: Float32Array;
}

/** A refused edit: which edit (0-based), which of its fields, and why (one line, for the user). */
export class EditError extends InputError {
  override name = 'EditError';

  constructor(
    readonly index: number,
    readonly field: 'token' | 'from' | 'layers' | 'values' | 'file',
    readonly detail: string,
  ) {
    super(`edit ${index + 1}: ${detail}`);
  }
}

/** What resolving needs of a bundle version. */
export interface EditTarget {
  layout: RowLayout;
  vocabSize: number;
  encode(text: string): number[];
  /** Reads a `set` edit's values file (the CLI); absent where no file can be read (HTTP). */
  readValuesFile?: (file: string) => { values: Float32Array; label: string };
}

export function resolveEdits(edits: readonly MemoryEdit[], target: EditTarget): ResolvedEdit[] {
  const { layout, vocabSize } = target;
  const memoryLayers = layout.slices.map((s) => s.layer);
  return edits.map((edit, index) => {
    const resolveToken = (ref: string | number, field: 'token' | 'from'): number => {
      if (typeof ref === 'number') {
        if (ref < 0 || ref >= vocabSize) throw new EditError(index, field, `unknown token id ${ref} (vocabulary is 0-${vocabSize - 1})`);
        return ref;
      }
      const ids = target.encode(ref);
      if (ids.length !== 1)
        throw new EditError(
          index,
          field,
          `unknown token ${JSON.stringify(ref)} (it is ${ids.length} tokens: [${ids}]; give one token or its id)`,
        );
      return ids[0];
    };
    const slices = (edit.layers ?? memoryLayers).map((layer) => {
      const slice = layout.slices.find((s) => s.layer === layer);
      if (!slice) throw new EditError(index, 'layers', `layer ${layer} is out of range (memory layers: ${memoryLayers.join(', ')})`);
      return slice;
    });
    const resolved: ResolvedEdit = { edit, token: resolveToken(edit.token, 'token'), slices };
    if (edit.op === 'copy') resolved.from = resolveToken(edit.from, 'from');
    if (edit.op === 'set') resolved.values = setValues(edit, index, slices, target);
    return resolved;
  });
}

function setValues(edit: Extract<MemoryEdit, { op: 'set' }>, index: number, slices: RowSlice[], target: EditTarget): Float32Array {
  const expected = slices.reduce((n, s) => n + s.width, 0);
  let values: Float32Array;
  let label: string;
  if (edit.values) {
    values = Float32Array.from(edit.values);
    label = 'values';
  } else {
    if (!target.readValuesFile) throw new EditError(index, 'file', 'a values file cannot be read here; give the values inline as "values"');
    try {
      ({ values, label } = target.readValuesFile(edit.file!));
    } catch (error) {
      if (error instanceof InputError) throw new EditError(index, 'file', error.message);
      throw error;
    }
  }
  if (values.length !== expected || values.some((v) => !Number.isFinite(v)))
    throw new EditError(
      index,
      edit.values ? 'values' : 'file',
      `${label} holds ${values.length} values; the chosen layers need ${expected} finite numbers`,
    );
  return values;
}

/** Every token whose current row the edits read: the edited ones and the sources of copies. */
export function tokensReadBy(edits: readonly ResolvedEdit[]): number[] {
  return [...new Set(edits.flatMap((e) => (e.from === undefined ? [e.token] : [e.token, e.from])))];
}

/**
 * Applies the edits in order to `rows` (decoded f32 rows by token id, holding every token the
 * edits read) and returns the edited tokens. Edits are sequential: a later edit sees an earlier
 * one's result (a copy from a token edited before copies the edited row).
 */
export function applyEdits(rows: Map<number, Float32Array>, edits: readonly ResolvedEdit[]): Set<number> {
  const edited = new Set<number>();
  for (const e of edits) {
    const current = rows.get(e.token);
    if (!current) throw new Error(`applyEdits: no row for token ${e.token}`);
    const row = current.slice();
    let offset = 0;
    for (const s of e.slices) {
      const target = row.subarray(s.valueOffset, s.valueOffset + s.width);
      const { edit } = e;
      if (edit.op === 'ablate') target.fill(0);
      else if (edit.op === 'scale') for (let i = 0; i < target.length; i++) target[i] *= edit.factor;
      else if (edit.op === 'copy') {
        const source = rows.get(e.from!);
        if (!source) throw new Error(`applyEdits: no row for token ${e.from}`);
        target.set(source.subarray(s.valueOffset, s.valueOffset + s.width));
      } else target.set(e.values!.subarray(offset, offset + s.width));
      offset += s.width;
    }
    rows.set(e.token, row);
    edited.add(e.token);
  }
  return edited;
}
