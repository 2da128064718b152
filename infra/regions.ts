/** The regions flexmem deploys to, read from infra/regions.json and checked. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { InputError } from '../src/errors.ts';

const RegionSchema = z.object({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/),
  /** R2 bucket of the region. */
  bucket: z.string().regex(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/),
  /** R2 jurisdiction (data stays inside it), e.g. "eu" or "fedramp". */
  jurisdiction: z.enum(['eu', 'fedramp']).optional(),
  /** R2 location hint when there is no jurisdiction: wnam, enam, weur, eeur, apac, oc. */
  locationHint: z.enum(['wnam', 'enam', 'weur', 'eeur', 'apac', 'oc']).optional(),
  kvNamespace: z.string(),
  kvNamespaceId: z.string().regex(/^[0-9a-f]{32}$/),
  placement: z.enum(['smart', 'off']),
});

export type Region = z.infer<typeof RegionSchema>;

export const REGIONS_FILE = fileURLToPath(new URL('./regions.json', import.meta.url));

export function loadRegions(path = REGIONS_FILE): Region[] {
  const parsed = z.object({ regions: z.array(RegionSchema).min(1) }).safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success) throw new InputError(`${path}: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`);
  return parsed.data.regions;
}

/** `all` or a comma-separated list of region names. */
export function selectRegions(selection: string, regions = loadRegions()): Region[] {
  if (selection === 'all') return regions;
  return selection.split(',').map((name) => {
    const region = regions.find((r) => r.name === name.trim());
    if (!region) throw new InputError(`unknown region ${JSON.stringify(name)} (regions: ${regions.map((r) => r.name).join(', ')})`);
    return region;
  });
}

/**
 * The S3 endpoint of a region's bucket: R2 puts jurisdictional buckets on their own host. With
 * R2_ACCOUNT_ID set it is derived; otherwise the endpoint given for all regions is used.
 */
export function regionEndpoint(region: Region, fallback?: string): string | undefined {
  const account = process.env.R2_ACCOUNT_ID;
  if (!account) return fallback;
  return `https://${account}.${region.jurisdiction ? `${region.jurisdiction}.` : ''}r2.cloudflarestorage.com`;
}
