/**
 * The browser client's origin: the worker's bundle-object route (GET /v1/bundles/<version>/<path>,
 * src/api/bundle-objects.ts) seen as an ObjectStore, so the serving core's BundleReader reads it
 * under the same retry and deadline policy as the worker reads its bucket. Table rows are range
 * reads (`Range: bytes=a-b`, answered 206). It counts what went over the network.
 */
import { InternalError } from '../errors.ts';
import type { ByteRange, ObjectStore } from '../storage/object-store.ts';
import { StoreHttpError } from '../storage/store-error.ts';

/** What one client sent and received over the network. */
export interface Traffic {
  requests: number;
  bytes: number;
}

export interface EdgeConnection {
  /** The worker's URL, without a trailing slash. */
  url: string;
  /** Sent as `Authorization: Bearer <key>` when set. */
  apiKey?: string;
  fetch: typeof fetch;
}

/** Headers that carry the key, when there is one. */
export function authHeaders(edge: EdgeConnection): Headers {
  const headers = new Headers();
  if (edge.apiKey) headers.set('authorization', `Bearer ${edge.apiKey}`);
  return headers;
}

/** Keys of the bucket layout (src/storage/object-store.ts) that the route serves. */
const BUNDLE_KEY = /^bundles\/([0-9a-f]{20})\/(.+)$/;

export class EdgeObjectStore implements ObjectStore {
  readonly traffic: Traffic = { requests: 0, bytes: 0 };

  constructor(
    private readonly edge: EdgeConnection,
    /** `no-store` when the client keeps its own copies (Cache Storage): the HTTP cache would hold them twice. */
    private readonly httpCache: RequestCache = 'default',
  ) {}

  async get(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Uint8Array | null> {
    const match = BUNDLE_KEY.exec(key);
    // Pointers are not read from here: the client asks GET /v1/models for the version.
    if (!match) return null;
    const headers = authHeaders(this.edge);
    if (range) headers.set('range', `bytes=${range.offset}-${range.offset + range.length - 1}`);
    const url = `${this.edge.url}/v1/bundles/${match[1]}/${match[2].split('/').map(encodeURIComponent).join('/')}`;
    const response = await this.edge.fetch(url, { headers, signal, cache: this.httpCache });
    this.traffic.requests++;
    if (response.status === 404) return null;
    if (!response.ok) throw new StoreHttpError(`GET ${url}: ${response.status} ${response.statusText}`, response.status);
    if (range && response.status !== 206)
      throw new InternalError(`GET ${url} with a Range answered ${response.status}, not 206: is this a flexmem worker?`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    this.traffic.bytes += bytes.byteLength;
    return bytes;
  }

  put(): Promise<void> {
    return Promise.reject(new InternalError('the browser client never writes to the edge'));
  }

  list(): Promise<string[]> {
    return Promise.resolve([]);
  }

  delete(): Promise<void> {
    return Promise.reject(new InternalError('the browser client never writes to the edge'));
  }
}
