/**
 * Knowledge edits: a new version whose manifest shares every object with its base and adds an
 * `overrides` object holding full replacement rows for the edited tokens. Only those rows are
 * uploaded. The worker resolves overrides before the base table.
 *
 * The edits file is `{ "edits": [...] }` in the format of src/memory/memory-edits.ts (the same one
 * the completion endpoints take as per-request overrides). For `set`, the values are inline
 * (`values`) or in a file (`file`, relative to edits.json): a JSON array of numbers, or raw
 * little-endian float32 (.f32).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BUNDLE_FORMAT, versionId, type BundleManifest } from '../src/bundle/manifest.ts';
import { decodeRowChecksums, ROW_CHECKSUM_ALGORITHM, rowChecksum } from '../src/bundle/row-checksums.ts';
import { decodeRow, encodeRows } from '../src/bundle/row-codec.ts';
import { InputError } from '../src/errors.ts';
import { applyEdits, EditError, EditsFileSchema, resolveEdits, tokensReadBy, type ResolvedEdit } from '../src/memory/memory-edits.ts';
import { Catalog } from '../src/storage/catalog.ts';
import { objectKey, type ObjectStore } from '../src/storage/object-store.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';
import { readJsonFile } from './checkpoint.ts';
import { patchLens } from './patch-lens.ts';
import { publishVersion, type PublishResult } from './publish.ts';

export function readEdits(path: string, manifest: BundleManifest, tokenizer: TextTokenizer): ResolvedEdit[] {
  const parsed = EditsFileSchema.safeParse(readJsonFile(path, 'edits file'));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`${path}: ${issue.path.join('.') || 'root'}: ${issue.message}`);
  }
  const layout = manifest.tables?.layout;
  if (!layout) throw new InputError(`version ${manifest.version} has no memory tables to edit`);
  try {
    return resolveEdits(parsed.data.edits, {
      layout,
      vocabSize: manifest.config.vocab_size,
      encode: (text) => tokenizer.encode(text),
      readValuesFile: (file) => readValues(resolve(dirname(path), file)),
    });
  } catch (error) {
    if (error instanceof EditError) throw new InputError(`${path}: ${error.message}`);
    throw error;
  }
}

function readValues(file: string): { values: Float32Array; label: string } {
  if (!existsSync(file)) throw new InputError(`values file not found: ${file}`);
  const values = file.endsWith('.json')
    ? Float32Array.from(readJsonFile(file, 'values file') as number[])
    : new Float32Array(new Uint8Array(readFileSync(file)).buffer);
  return { values, label: file };
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
  for (const id of tokensReadBy(edits)) {
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
  const edited = new Set([...baseOverrides.keys(), ...applyEdits(rows, edits)]);

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
    objects: {
      compute: shared(base.objects.compute),
      ...(base.objects.computeOptimized ? { computeOptimized: shared(base.objects.computeOptimized) } : {}),
      ...(base.objects.computeWeights ? { computeWeights: shared(base.objects.computeWeights) } : {}),
      tokenizer: shared(base.objects.tokenizer),
    },
    tables: { layout, shards: tables.shards.map(shared), checksums: shared(tables.checksums) },
    ...(base.chatTemplate ? { chatTemplate: base.chatTemplate } : {}),
    base: baseVersion,
    overrides: { path: 'overrides.bin', bytes: overrides.byteLength, sha256: createHash('sha256').update(overrides).digest('hex'), tokens },
    builtFrom: { tool: 'flexmem patch' },
  };
  const lens = await patchLens(store, base, tokens, overrides); // the edited tokens' inspector records (cli/patch-lens.ts)
  if (lens) partial.lens = lens.ref;
  const manifest: BundleManifest = { ...partial, version: await versionId(partial) };
  const manifestBytes = new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
  const payloads = [{ ref: manifest.overrides!, read: () => overrides }, ...(lens ? [lens.payload] : [])];
  return publishVersion(store, manifest, manifestBytes, payloads, { model });
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
