/**
 * manifest.json: the description of a bundle, the unit that is built, published and served.
 * Every object is listed with its size and sha256; the version id is derived from the content,
 * so building the same checkpoint twice gives the same id.
 */
import { z } from 'zod';
import { InputError } from '../errors.ts';
import { parseConfig, type ModelConfig } from '../model/config.ts';
import { COMPUTE_DTYPES, type ComputeDtype } from '../model/quantize.ts';
import { LENS_FORMAT } from '../inspect/lens-format.ts';
import { sha256Hex } from '../util/sha256.ts';
import { TABLE_DTYPES, type RowLayout } from './row-codec.ts';
import { ROW_CHECKSUM_ALGORITHM } from './row-checksums.ts';

export const BUNDLE_FORMAT = 'flexmem-bundle/1';
export const MANIFEST_FILE = 'manifest.json';

const ObjectRefSchema = z.object({
  path: z.string(),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Set when the object belongs to another version (a patch shares its base's objects). */
  from: z.string().optional(),
});
export type ObjectRef = z.infer<typeof ObjectRefSchema>;

const ShardSchema = ObjectRefSchema.extend({ firstToken: z.number().int().nonnegative(), tokenCount: z.number().int().positive() });
export type TableShard = z.infer<typeof ShardSchema>;

/** The checksum of every table row (src/bundle/row-checksums.ts): range reads are checked against it. */
const RowChecksumsSchema = ObjectRefSchema.extend({ algorithm: z.literal(ROW_CHECKSUM_ALGORITHM) });
export type RowChecksumsRef = z.infer<typeof RowChecksumsSchema>;

/** The memory inspector's side table (src/inspect/lens-format.ts), read by range like the tables. */
const LensSchema = z.object({
  format: z.literal(LENS_FORMAT),
  k: z.number().int().positive(),
  /** Per memory layer, in slice order: the median row norm over the vocabulary. */
  layers: z.array(z.object({ layer: z.number().int().nonnegative(), medianNorm: z.number().nonnegative() })),
  recordBytes: z.number().int().positive(),
  entries: ObjectRefSchema,
  /** For a patch: recomputed records of its edited tokens, in this order. */
  overrides: ObjectRefSchema.extend({ tokens: z.array(z.number().int().nonnegative()) }).optional(),
});
export type LensRef = z.infer<typeof LensSchema>;

const ManifestSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  version: z.string(),
  config: z.unknown(),
  computeDtype: z.enum(COMPUTE_DTYPES).optional(),
  objects: z.object({
    compute: ObjectRefSchema,
    computeOptimized: ObjectRefSchema.optional(),
    computeWeights: ObjectRefSchema.optional(),
    tokenizer: ObjectRefSchema,
    reference: ObjectRefSchema.optional(),
  }),
  tables: z
    .object({
      layout: z.object({
        dtype: z.enum(TABLE_DTYPES),
        rowBytes: z.number().int().positive(),
        rowValues: z.number().int().positive(),
        slices: z.array(
          z.object({
            layer: z.number().int().nonnegative(),
            kind: z.enum(['additive', 'gated']),
            width: z.number().int().positive(),
            byteOffset: z.number().int().nonnegative(),
            valueOffset: z.number().int().nonnegative(),
          }),
        ),
      }),
      shards: z.array(ShardSchema),
      checksums: RowChecksumsSchema,
    })
    .nullable(),
  chatTemplate: z.string().optional(),
  base: z.string().optional(),
  overrides: ObjectRefSchema.extend({ tokens: z.array(z.number().int().nonnegative()) }).optional(),
  lens: LensSchema.optional(),
  builtFrom: z.object({ tool: z.string() }).optional(),
});

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: string;
  config: ModelConfig;
  /** The dtype of the compute graph's matrix weights (src/model/quantize.ts); absent (older bundles) is f32. */
  computeDtype?: ComputeDtype;
  objects: {
    compute: ObjectRef;
    /**
     * The compute graph optimized at build time for onnxruntime's CPU kernels (cli/optimize-graph.ts);
     * what the worker and the CLI load when present. An ONNX graph whose weights are `computeWeights`,
     * or, in bundles built before those existed, one ORT-format file with its weights inside. Absent in
     * bundles built before either.
     */
    computeOptimized?: ObjectRef;
    /**
     * The weights of `computeOptimized` as ONNX external data (the graph names this object by its
     * path): onnxruntime copies each one straight to where it lives, instead of first copying the
     * whole graph into its heap (docs/architecture.md "Large models in 128 MB").
     */
    computeWeights?: ObjectRef;
    tokenizer: ObjectRef;
    reference?: ObjectRef;
  };
  /** Null for a model without memory layers. */
  tables: { layout: RowLayout; shards: TableShard[]; checksums: RowChecksumsRef } | null;
  /** The checkpoint's Jinja chat template (tokenizer_config.json), if it has one. */
  chatTemplate?: string;
  /** For a patch: the version it edits. */
  base?: string;
  /** For a patch: full replacement rows (table layout) of `tokens`, in that order. */
  overrides?: ObjectRef & { tokens: number[] };
  /** The inspector's build-time side table; absent in bundles built before it existed. */
  lens?: LensRef;
  builtFrom?: { tool: string };
}

/** Every object a manifest lists, its own and those it shares with a base (the reference graph too: it is published with the version). */
export function bundleObjects(manifest: BundleManifest): ObjectRef[] {
  const { objects, tables, overrides, lens } = manifest;
  const all = [
    objects.compute,
    objects.computeOptimized,
    objects.computeWeights,
    objects.tokenizer,
    objects.reference,
    ...(tables ? [...tables.shards, tables.checksums] : []),
    overrides,
    lens?.entries,
    lens?.overrides,
  ];
  return all.filter((o): o is ObjectRef => !!o);
}

/**
 * The objects of the graph the worker and the CLI load: the graph optimized at build time and its
 * weights when the bundle has it, else compute.onnx (src/serving/model-registry.ts).
 */
export function servedGraphObjects(manifest: BundleManifest): ObjectRef[] {
  const { compute, computeOptimized, computeWeights } = manifest.objects;
  if (!computeOptimized) return [compute];
  return computeWeights ? [computeOptimized, computeWeights] : [computeOptimized];
}

/**
 * The version id: a hash of everything that is served (config, row layout, served objects'
 * hashes). The optional reference graph is an oracle, not served, so it does not change the id.
 */
export async function versionId(manifest: Omit<BundleManifest, 'version'>): Promise<string> {
  const served = {
    format: manifest.format,
    config: manifest.config,
    // Absent and f32 mean the same graph, so they hash the same; the graph's own hash differs anyway.
    computeDtype: manifest.computeDtype === 'f32' ? undefined : manifest.computeDtype,
    compute: manifest.objects.compute,
    computeOptimized: manifest.objects.computeOptimized,
    computeWeights: manifest.objects.computeWeights,
    tokenizer: manifest.objects.tokenizer,
    tables: manifest.tables,
    chatTemplate: manifest.chatTemplate,
    base: manifest.base,
    overrides: manifest.overrides,
    lens: manifest.lens,
  };
  return (await sha256Hex(new TextEncoder().encode(JSON.stringify(served)))).slice(0, 20);
}

export function parseManifest(raw: unknown, source = MANIFEST_FILE): BundleManifest {
  // Rows that cannot be checked are not served: a corrupt row still yields fluent, wrong text.
  const tables = (raw as { tables?: unknown } | null)?.tables;
  if (tables && typeof tables === 'object' && !('checksums' in tables))
    throw new InputError(`${source}: a bundle built without row checksums (by an older flexmem); rebuild it with \`flexmem build\``);
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`${source}: not a flexmem bundle manifest (${issue.path.join('.') || 'root'}: ${issue.message})`);
  }
  if (parsed.data.objects.computeWeights && !parsed.data.objects.computeOptimized)
    throw new InputError(`${source}: not a flexmem bundle manifest (objects.computeWeights: the weights of no computeOptimized graph)`);
  return { ...parsed.data, config: parseConfig(parsed.data.config, `${source} config`) } as BundleManifest;
}
