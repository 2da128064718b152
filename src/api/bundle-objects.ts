/**
 * GET /v1/bundles/<version>/<object path>: the objects of a published bundle version as plain,
 * immutable, cacheable reads, for clients that compute themselves (the browser client of
 * src/web/) and read only the graph, the tokenizer and memory rows from the edge.
 *
 * A version never changes (its id hashes what it serves), so every response is `immutable` for a
 * year with a strong ETag: the object's sha256 from the manifest (for manifest.json, the sha256
 * of its bytes). `Range: bytes=a-b` is answered with a 206, which is how table rows are read.
 * Reads go through the serving core's origin reader, under the same retry and deadline policy as
 * the worker's own reads. Only objects the version's manifest lists are served.
 *
 * Access is the operator's choice (docs/browser.md): PUBLIC_BUNDLES = "true" opens this route to
 * anyone while the rest of the API keeps its keys; otherwise it takes a key like any other route.
 * Keyed responses are `private`, so no shared cache keeps them.
 */
import type { Context, Hono, MiddlewareHandler } from 'hono';
import { bundleObjects, MANIFEST_FILE, parseManifest, type ObjectRef } from '../bundle/manifest.ts';
import { InternalError } from '../errors.ts';
import { parseStored, type BundleReader } from '../serving/bundle-reader.ts';
import { bundleKey, VERSION_ID } from '../storage/object-store.ts';
import { sha256Hex } from '../util/sha256.ts';
import { requireApiKey } from './access.ts';
import type { ApiEnv } from './app.ts';
import { corsHeaders } from './cors.ts';
import { ApiError } from './errors.ts';
import { type ApiHost, VERSION_HEADER } from './host.ts';

/** A pattern that does not end in `*`, so the request metrics name the route (src/api/observe.ts). */
export const BUNDLE_OBJECT_ROUTE = '/v1/bundles/:version/:path{.+}';

/** Larger responses are streamed in reads of this size: a 512 MiB shard never sits in the isolate's 128 MB. */
const CHUNK_BYTES = 4 << 20;
/** Manifests kept per isolate: each object request needs its version's. */
const MANIFESTS_KEPT = 16;
const YEAR_SECONDS = 31_536_000;

interface ServedObject {
  ref: ObjectRef;
  contentType: string;
}

interface VersionEntry {
  manifestBytes: Uint8Array;
  manifestSha256: string;
  objects: Map<string, ServedObject>;
}

export function registerBundleObjectRoutes<E extends object>(app: Hono<ApiEnv<E>>): void {
  app.get(BUNDLE_OBJECT_ROUTE, corsHeaders, keyUnlessPublic, async (c) => {
    const { version, path } = c.req.param();
    const reader = c.var.host.core.origin;
    const entry = VERSION_ID.test(version) ? await versionEntry(reader, version) : null;
    if (!entry) throw notFound(`No bundle version ${version}`);
    exposeHeaders(c);
    const scope = isPublic(c.var.host, c.env) ? 'public' : 'private';
    const common = {
      'cache-control': `${scope}, max-age=${YEAR_SECONDS}, immutable`,
      'accept-ranges': 'bytes',
      [VERSION_HEADER]: version,
    };
    if (path === MANIFEST_FILE) {
      return respond(c, `"${entry.manifestSha256}"`, entry.manifestBytes.byteLength, 'application/json', common, (offset, length) =>
        Promise.resolve(entry.manifestBytes.subarray(offset, offset + length)),
      );
    }
    const served = entry.objects.get(path);
    if (!served) throw notFound(`Bundle version ${version} has no object ${path}`);
    const ranges = reader.ranges(version);
    return respond(c, `"${served.ref.sha256}"`, served.ref.bytes, served.contentType, common, (offset, length) =>
      ranges.read(served.ref, offset, length),
    );
  });
}

/** PUBLIC_BUNDLES: "true" opens the route; unset, blank or "false" leaves it behind the keys. */
function publicBundles(env: unknown): boolean {
  const raw = (env as { PUBLIC_BUNDLES?: string } | undefined)?.PUBLIC_BUNDLES ?? '';
  if (!['', 'true', 'false'].includes(raw))
    throw new InternalError(`setting PUBLIC_BUNDLES must be "true" or "false", got ${JSON.stringify(raw)}`);
  return raw === 'true';
}

/** Whether anyone may read the route: opened by PUBLIC_BUNDLES, or a deployment that serves everything without keys. */
function isPublic(host: ApiHost, env: unknown): boolean {
  const { keys, allowAnonymous } = host.access;
  return publicBundles(env) || (keys.count === 0 && allowAnonymous);
}

const keyUnlessPublic: MiddlewareHandler<{ Variables: { host: ApiHost } }> = (c, next) =>
  publicBundles(c.env) ? next() : requireApiKey(c, next);

/** A browser may read these headers of a cross-origin answer only when they are exposed. */
function exposeHeaders(c: Context): void {
  const exposed = c.res.headers.get('access-control-expose-headers');
  if (exposed !== null) c.header('access-control-expose-headers', `${exposed},etag,content-range,accept-ranges`);
}

const notFound = (message: string) => new ApiError(404, message, 'not_found_error', null, 'object_not_found');

/** Answers a conditional or ranged GET of an object of `size` bytes whose bytes `read` gives. */
async function respond(
  c: Context,
  etag: string,
  size: number,
  contentType: string,
  common: Record<string, string>,
  read: (offset: number, length: number) => Promise<Uint8Array>,
): Promise<Response> {
  const headers: Record<string, string> = { ...common, etag };
  if (matchesAny(c.req.header('if-none-match'), etag)) return c.body(null, 304, headers);
  const ifRange = c.req.header('if-range');
  const range = ifRange === undefined || ifRange === etag ? parseRange(c.req.header('range'), size) : null;
  if (range === 'unsatisfiable') return c.body(null, 416, { ...headers, 'content-range': `bytes */${size}` });
  const { offset, length } = range ?? { offset: 0, length: size };
  const status = range ? 206 : 200;
  Object.assign(headers, { 'content-type': contentType, 'content-length': String(length) });
  if (range) headers['content-range'] = `bytes ${offset}-${offset + length - 1}/${size}`;
  // The first read happens before the status line, so a missing object or an origin outage is an
  // error status, not a cut stream; only bodies larger than one read are streamed.
  const first = length === 0 ? new Uint8Array(0) : await read(offset, Math.min(length, CHUNK_BYTES));
  if (first.byteLength === length) return c.body(first as Uint8Array<ArrayBuffer>, status, headers);
  let position = offset + first.byteLength;
  const end = offset + length;
  const body = new ReadableStream<Uint8Array>(
    {
      start: (controller) => controller.enqueue(first),
      async pull(controller) {
        const bytes = await read(position, Math.min(end - position, CHUNK_BYTES));
        controller.enqueue(bytes);
        position += bytes.byteLength;
        if (position >= end) controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return c.body(body, status, headers);
}

/** If-None-Match: `*` or a list of entity tags, compared weakly as RFC 9110 says for this header. */
function matchesAny(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/**
 * One `bytes=` range of an object of `size` bytes (`a-b`, `a-` or `-n`), or null to answer the
 * whole object: RFC 9110 lets a server ignore a Range it does not support (several ranges) or
 * cannot parse.
 */
export function parseRange(header: string | undefined, size: number): { offset: number; length: number } | 'unsatisfiable' | null {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!match || (match[1] === '' && match[2] === '')) return null;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { offset: Math.max(0, size - suffix), length: Math.min(suffix, size) };
  }
  const first = Number(match[1]);
  const last = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (match[2] !== '' && Number(match[2]) < first) return null;
  if (first >= size) return 'unsatisfiable';
  return { offset: first, length: last - first + 1 };
}

const manifests = new WeakMap<BundleReader, Map<string, Promise<VersionEntry | null>>>();

/** The manifest of `version` and the objects it lists, read once per isolate (null when there is no such version). */
function versionEntry(reader: BundleReader, version: string): Promise<VersionEntry | null> {
  const held = manifests.get(reader) ?? manifests.set(reader, new Map()).get(reader)!;
  let entry = held.get(version);
  if (!entry) {
    entry = readVersion(reader, version);
    held.set(version, entry);
    entry.catch(() => held.delete(version));
    while (held.size > MANIFESTS_KEPT) held.delete(held.keys().next().value!);
  }
  return entry;
}

async function readVersion(reader: BundleReader, version: string): Promise<VersionEntry | null> {
  const key = bundleKey(version, MANIFEST_FILE);
  const manifestBytes = await reader.optional(key);
  if (!manifestBytes) return null;
  const manifest = parseStored(key, () => parseManifest(JSON.parse(new TextDecoder().decode(manifestBytes)), key));
  if (manifest.version !== version) throw new InternalError(`${key} is the manifest of version ${manifest.version}`);
  const objects = new Map<string, ServedObject>();
  for (const ref of bundleObjects(manifest))
    objects.set(ref.path, { ref, contentType: ref.path.endsWith('.json') ? 'application/json' : 'application/octet-stream' });
  return { manifestBytes, manifestSha256: await sha256Hex(manifestBytes), objects };
}
