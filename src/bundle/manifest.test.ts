import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.ts';
import { parseConfig } from '../model/config.ts';
import { presetConfig } from '../model/presets.ts';
import { BUNDLE_FORMAT, type BundleManifest, MANIFEST_FILE, parseManifest, versionId } from './manifest.ts';
import { rowLayout } from './row-codec.ts';

const hex = (c: string) => c.repeat(64);
const ref = (path: string, c = 'a') => ({ path, bytes: 10, sha256: hex(c) });

/** A manifest as JSON would carry it. */
function raw(arch: 'flex' | 'meki' = 'flex') {
  const config = parseConfig(presetConfig('tiny', arch));
  return {
    format: BUNDLE_FORMAT,
    version: 'v123',
    config,
    objects: { compute: ref('compute.onnx'), tokenizer: ref('tokenizer.json', 'b'), reference: ref('reference.onnx', 'c') },
    tables: {
      layout: rowLayout(config, 'int8'),
      shards: [{ ...ref('tables/rows-00000.bin', 'd'), firstToken: 0, tokenCount: config.vocab_size, from: 'base1' }],
      checksums: { ...ref('tables/rows.crc32c', 'e'), algorithm: 'crc32c' },
    },
    chatTemplate: '{{ messages }}',
    base: 'base1',
    overrides: { ...ref('overrides.bin', 'f'), tokens: [3, 5] },
    builtFrom: { tool: 'flexmem 0.1.0' },
  };
}

/** The InputError message parseManifest gives `value`. */
function refusal(value: unknown, source?: string): string {
  try {
    parseManifest(value, source);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    return (error as Error).message;
  }
  throw new Error('expected parseManifest to refuse it');
}

describe('parseManifest', () => {
  it('reads back every field of a manifest, additive and gated layouts alike', () => {
    for (const arch of ['flex', 'meki'] as const) {
      const manifest = raw(arch);
      expect(parseManifest(JSON.parse(JSON.stringify(manifest)))).toEqual(manifest);
    }
    expect(MANIFEST_FILE).toBe('manifest.json');
    expect(BUNDLE_FORMAT).toBe('flexmem-bundle/1');
  });

  it('reads a model without memory tables (tables: null)', () => {
    expect(parseManifest({ ...raw(), tables: null }).tables).toBeNull();
  });

  it('refuses a bundle built without row checksums, naming its source', () => {
    const { checksums: _, ...tables } = raw().tables;
    expect(refusal({ ...raw(), tables }, 'bundles/v1/manifest.json')).toBe(
      'bundles/v1/manifest.json: a bundle built without row checksums (by an older flexmem); rebuild it with `flexmem build`',
    );
  });

  it('refuses what is not a manifest, naming the first bad field', () => {
    expect(refusal(null)).toMatch(/^manifest\.json: not a flexmem bundle manifest \(root: /);
    expect(refusal('text')).toMatch(/^manifest\.json: not a flexmem bundle manifest \(root: /);
    expect(refusal({ ...raw(), tables: 'rows' })).toMatch(/^manifest\.json: not a flexmem bundle manifest \(tables: /);
    expect(refusal({ ...raw(), format: 'other/1' })).toMatch(/\(format: /);
    const badKind = raw();
    badKind.tables.layout.slices[1].kind = 'multiplicative' as never;
    expect(refusal(badKind)).toMatch(/\(tables\.layout\.slices\.1\.kind: /);
    const noTool = { ...raw(), builtFrom: {} };
    expect(refusal(noTool)).toMatch(/\(builtFrom\.tool: /);
    const badToken = { ...raw(), overrides: { ...raw().overrides, tokens: [-1] } };
    expect(refusal(badToken)).toMatch(/\(overrides\.tokens\.0: /);
    const noCount = raw();
    delete (noCount.tables.shards[0] as Partial<(typeof noCount.tables.shards)[0]>).tokenCount;
    expect(refusal(noCount)).toMatch(/\(tables\.shards\.0\.tokenCount: /);
    const badAlgorithm = raw();
    badAlgorithm.tables.checksums.algorithm = 'crc32';
    expect(refusal(badAlgorithm)).toMatch(/\(tables\.checksums\.algorithm: /);
  });

  it('takes a sha256 of exactly 64 lowercase hex digits', () => {
    const withCompute = (sha256: string) => ({ ...raw(), objects: { ...raw().objects, compute: { ...ref('compute.onnx'), sha256 } } });
    expect(parseManifest(withCompute('0123456789abcdef'.repeat(4))).objects.compute.sha256).toBe('0123456789abcdef'.repeat(4));
    for (const sha256 of [`x${hex('a')}`, `${hex('a')}x`, 'a', hex('A'), hex('g'), hex('a').slice(1)])
      expect(refusal(withCompute(sha256)), sha256).toMatch(/\(objects\.compute\.sha256: /);
    expect(refusal({ ...raw(), objects: { ...raw().objects, compute: { path: 'compute.onnx', bytes: 10 } } })).toMatch(
      /\(objects\.compute\.sha256: /,
    );
  });

  it('checks the config as a model config, naming the manifest', () => {
    expect(refusal({ ...raw(), config: { hidden_size: 'big' } }, 'm.json')).toMatch(/^m\.json config: /);
  });
});

describe('versionId', () => {
  const manifest = (): Omit<BundleManifest, 'version'> => {
    const { version: _, ...rest } = parseManifest(raw());
    return rest;
  };

  it('is 20 hex digits of what is served, the same for the same content', async () => {
    const id = await versionId(manifest());
    expect(id).toMatch(/^[0-9a-f]{20}$/);
    expect(await versionId(manifest())).toBe(id);
  });

  it('changes with anything served, and not with the reference graph or the build tool', async () => {
    const id = await versionId(manifest());
    const changed = async (edit: (m: Omit<BundleManifest, 'version'>) => void) => {
      const m = manifest();
      edit(m);
      return versionId(m);
    };
    expect(await changed((m) => (m.objects.reference = ref('reference.onnx', '9')))).toBe(id);
    expect(await changed((m) => (m.builtFrom = { tool: 'other' }))).toBe(id);
    expect(await changed((m) => (m.objects.compute = ref('compute.onnx', '1')))).not.toBe(id);
    expect(await changed((m) => (m.objects.tokenizer = ref('tokenizer.json', '1')))).not.toBe(id);
    expect(await changed((m) => (m.config = { ...m.config, rope_theta: 1 }))).not.toBe(id);
    expect(await changed((m) => (m.tables = null))).not.toBe(id);
    expect(await changed((m) => (m.chatTemplate = 'x'))).not.toBe(id);
    expect(await changed((m) => (m.base = 'base2'))).not.toBe(id);
    expect(await changed((m) => (m.overrides = undefined))).not.toBe(id);
    expect(await changed((m) => ((m as { format: string }).format = 'flexmem-bundle/2'))).not.toBe(id);
  });
});
