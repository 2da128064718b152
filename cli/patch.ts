/**
 * Knowledge edits: a new version whose manifest shares every object with its base and adds an
 * `overrides` object holding full replacement rows for the edited tokens. Only those rows are
 * uploaded. The worker resolves overrides before the base table.
 *
 * edits.json:
 *   { "edits": [
 *       { "token": " Congress", "op": "ablate" },                          memory scaled to zero
 *       { "token": 1234, "op": "scale", "factor": 0.5, "layers": [0, 1] },
 *       { "token": " Senate", "op": "copy", "from": " House" },            another token's memory
 *       { "token": " war", "op": "set", "file": "rows.json" }               values from a file
 *   ] }
 * A token is an id or a string that is exactly one token; `layers` defaults to every memory layer.
 * For `set`, the file holds the chosen layers' slices in layer order: a JSON array of numbers, or
 * raw little-endian float32 (.f32).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { BUNDLE_FORMAT, versionId, type BundleManifest } from '../src/bundle/manifest.ts';
import { decodeRowChecksums, ROW_CHECKSUM_ALGORITHM, rowChecksum } from '../src/bundle/row-checksums.ts';
import { decodeRow, encodeRows } from '../src/bundle/row-codec.ts';
import { InputError } from '../src/errors.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { objectKey, type ObjectStore } from '../src/storage/object-store.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { readJsonFile } from './checkpoint.ts';
import { publishVersion, type PublishResult } from './publish.ts';

const tokenRef = z.union([z.number().int(), z.string().min(1)]);
const EditSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('ablate'), token: tokenRef, layers: z.array(z.number().int()).optional() }),
  z.object({ op: z.literal('scale'), token: tokenRef, factor: z.number(), layers: z.array(z.number().int()).optional() }),
  z.object({ op: z.literal('copy'), token: tokenRef, from: tokenRef, layers: z.array(z.number().int()).optional() }),
  z.object({ op: z.literal('set'), token: tokenRef, file: z.string(), layers: z.array(z.number().int()).optional() }),
]);
const EditsSchema = z.object({ edits: z.array(EditSchema).min(1) });
type Edit = z.infer<typeof EditSchema>;

/** An edit with its tokens resolved to ids and its layers checked. */
interface ResolvedEdit {
  edit: Edit;
  token: number;
  from?: number;
  slices: NonNullable<BundleManifest['tables']>['layout']['slices'];
  values?: Float32Array;
}

export function readEdits(path: string, manifest: BundleManifest, tokenizer: TextTokenizer): ResolvedEdit[] {
  const parsed = EditsSchema.safeParse(readJsonFile(path, 'edits file'));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`${path}: ${issue.path.join('.') || 'root'}: ${issue.message}`);
  }
  const layout = manifest.tables?.layout;
  if (!layout) throw new InputError(`version ${manifest.version} has no memory tables to edit`);
  return parsed.data.edits.map((edit, i) => {
    const where = `${path}: edit ${i + 1}`;
    const resolveToken = (ref: string | number): number => {
      if (typeof ref === 'number') {
        if (ref < 0 || ref >= manifest.config.vocab_size)
          throw new InputError(`${where}: unknown token id ${ref} (vocabulary is 0-${manifest.config.vocab_size - 1})`);
        return ref;
      }
      const ids = tokenizer.encode(ref);
      if (ids.length !== 1)
        throw new InputError(
          `${where}: unknown token ${JSON.stringify(ref)} (it is ${ids.length} tokens: [${ids}]; give one token or its id)`,
        );
      return ids[0];
    };
    const memoryLayers = layout.slices.map((s) => s.layer);
    const slices = (edit.layers ?? memoryLayers).map((layer) => {
      const slice = layout.slices.find((s) => s.layer === layer);
      if (!slice) throw new InputError(`${where}: layer ${layer} is out of range (memory layers: ${memoryLayers.join(', ')})`);
      return slice;
    });
    const resolved: ResolvedEdit = { edit, token: resolveToken(edit.token), slices };
    if (edit.op === 'copy') resolved.from = resolveToken(edit.from);
    if (edit.op === 'set')
      resolved.values = readValues(
        resolve(dirname(path), edit.file),
        slices.reduce((n, s) => n + s.width, 0),
        where,
      );
    return resolved;
  });
}

function readValues(file: string, expected: number, where: string): Float32Array {
  if (!existsSync(file)) throw new InputError(`${where}: values file not found: ${file}`);
  const values = file.endsWith('.json')
    ? Float32Array.from(readJsonFile(file, 'values file') as number[])
    : new Float32Array(new Uint8Array(readFileSync(file)).buffer);
  if (values.length !== expected || values.some((v) => !Number.isFinite(v))) {
    throw new InputError(`${where}: ${file} holds ${values.length} values; the chosen layers need ${expected} finite numbers`);
  }
  return values;
}

/** Builds the patch of `baseVersion` in `store`, publishes it, and points `model` at it. */
export async function publishPatch(
  store: ObjectStore,
  baseVersion: string,
  editsPath: string,
  model: string | undefined,
): Promise<PublishResult> {
  const catalog = new Catalog(store);
  const base = await catalog.manifest(baseVersion);
  const tokenizerBytes = await store.get(objectKey(baseVersion, base.objects.tokenizer));
  if (!tokenizerBytes) throw new InputError(`version ${baseVersion} is missing its tokenizer`);
  const tokenizer = new TextTokenizer(JSON.parse(new TextDecoder().decode(tokenizerBytes)));
  const edits = readEdits(editsPath, base, tokenizer);
  const tables = base.tables!;
  const { layout } = tables;

  // Current rows (f32) of every token an edit reads or writes: the base's override, else its table.
  const baseOverrides = await overrideRows(store, base);
  const checksums = await rowChecksums(store, base);
  const rows = new Map<number, Float32Array>(baseOverrides);
  for (const id of new Set(edits.flatMap((e) => (e.from === undefined ? [e.token] : [e.token, e.from])))) {
    if (rows.has(id)) continue;
    const shard = tables.shards.find((s) => id >= s.firstToken && id < s.firstToken + s.tokenCount)!;
    const bytes = await store.get(objectKey(baseVersion, shard), {
      offset: (id - shard.firstToken) * layout.rowBytes,
      length: layout.rowBytes,
    });
    if (!bytes) throw new InputError(`version ${baseVersion} is missing the row of token ${id}`);
    if (rowChecksum(bytes) !== checksums[id])
      throw new InputError(
        `version ${baseVersion}: the stored row of token ${id} does not match its ${ROW_CHECKSUM_ALGORITHM}; nothing was published`,
      );
    const row = new Float32Array(layout.rowValues);
    decodeRow(bytes, layout, row, 0);
    rows.set(id, row);
  }
  const edited = new Set(baseOverrides.keys());
  for (const e of edits) {
    const row = rows.get(e.token)!.slice();
    let offset = 0;
    for (const s of e.slices) {
      const target = row.subarray(s.valueOffset, s.valueOffset + s.width);
      if (e.edit.op === 'ablate') target.fill(0);
      else if (e.edit.op === 'scale') {
        const { factor } = e.edit;
        for (let i = 0; i < target.length; i++) target[i] *= factor;
      } else if (e.edit.op === 'copy') target.set(rows.get(e.from!)!.subarray(s.valueOffset, s.valueOffset + s.width));
      else target.set(e.values!.subarray(offset, offset + s.width));
      offset += s.width;
    }
    rows.set(e.token, row);
    edited.add(e.token);
  }

  const tokens = [...edited].sort((a, b) => a - b);
  const values = new Float32Array(tokens.length * layout.rowValues);
  tokens.forEach((id, i) => {
    values.set(rows.get(id)!, i * layout.rowValues);
  });
  const overrides = encodeRows(values, tokens.length, layout);
  const shared = <T extends { from?: string }>(ref: T): T => ({ ...ref, from: ref.from ?? baseVersion });
  const partial: Omit<BundleManifest, 'version'> = {
    format: BUNDLE_FORMAT,
    config: base.config,
    objects: { compute: shared(base.objects.compute), tokenizer: shared(base.objects.tokenizer) },
    tables: { layout, shards: tables.shards.map(shared), checksums: shared(tables.checksums) },
    ...(base.chatTemplate ? { chatTemplate: base.chatTemplate } : {}),
    base: baseVersion,
    overrides: { path: 'overrides.bin', bytes: overrides.byteLength, sha256: createHash('sha256').update(overrides).digest('hex'), tokens },
    builtFrom: { tool: 'flexmem patch' },
  };
  const manifest: BundleManifest = { ...partial, version: await versionId(partial) };
  const manifestBytes = new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
  return publishVersion(store, manifest, manifestBytes, [{ ref: manifest.overrides!, read: () => overrides }], { model });
}

/** A version's row checksums, checked against its manifest. */
async function rowChecksums(store: ObjectStore, manifest: BundleManifest): Promise<Uint32Array> {
  const ref = manifest.tables!.checksums;
  const bytes = await store.get(objectKey(manifest.version, ref));
  if (!bytes || createHash('sha256').update(bytes).digest('hex') !== ref.sha256)
    throw new InputError(`version ${manifest.version}: ${ref.path} is missing or does not match its sha256`);
  return decodeRowChecksums(bytes, manifest.config.vocab_size);
}

/** A version's existing override rows, decoded. */
async function overrideRows(store: ObjectStore, manifest: BundleManifest): Promise<Map<number, Float32Array>> {
  const rows = new Map<number, Float32Array>();
  if (!manifest.overrides || !manifest.tables) return rows;
  const bytes = await store.get(objectKey(manifest.version, manifest.overrides));
  if (!bytes) throw new InputError(`version ${manifest.version} is missing its overrides`);
  const { layout } = manifest.tables;
  manifest.overrides.tokens.forEach((id, i) => {
    const row = new Float32Array(layout.rowValues);
    decodeRow(bytes.subarray(i * layout.rowBytes), layout, row, 0);
    rows.set(id, row);
  });
  return rows;
}
