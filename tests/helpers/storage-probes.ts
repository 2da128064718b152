/**
 * Probes for the storage tests, so that they assert what the store holds rather than what a
 * command printed: writes recorded at the store (a wrapping ObjectStore) or on the wire (a proxy in
 * front of s3rver), a store that stops a publisher before a chosen write, the full contents of a
 * store, a hermetic environment for child CLIs, and waiting with a deadline.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { ObjectStore } from '../../src/storage/object-store.ts';

export interface StoreWrite {
  op: 'put' | 'delete';
  key: string;
}

const describeWrite = (w: StoreWrite) => `${w.op} ${w.key}`;

/** Wraps a store: every put and delete is recorded, in order, then passed on. */
export function recordingStore(store: ObjectStore): { store: ObjectStore; writes: StoreWrite[] } {
  const writes: StoreWrite[] = [];
  return {
    writes,
    store: {
      get: (key, range, signal) => store.get(key, range, signal),
      list: (prefix) => store.list(prefix),
      put: (key, body, options) => {
        writes.push({ op: 'put', key });
        return store.put(key, body, options);
      },
      delete: (key) => {
        writes.push({ op: 'delete', key });
        return store.delete(key);
      },
    },
  };
}

/** What a stopping store throws instead of making the write it stops at. */
export class StoppedBeforeWrite extends Error {}

/**
 * Wraps a store: writes are passed on until one matches `stopAt`; that one is not made and throws
 * StoppedBeforeWrite (the publisher dies between two steps of its protocol), and so does every
 * later write.
 */
export function stoppingStore(store: ObjectStore, stopAt: (write: StoreWrite) => boolean): { store: ObjectStore; stopped: () => boolean } {
  let stopped = false;
  const gate = (write: StoreWrite) => {
    if (stopped || stopAt(write)) {
      stopped = true;
      throw new StoppedBeforeWrite(`stopped before ${describeWrite(write)}`);
    }
  };
  return {
    stopped: () => stopped,
    store: {
      get: (key, range, signal) => store.get(key, range, signal),
      list: (prefix) => store.list(prefix),
      put: async (key, body, options) => {
        gate({ op: 'put', key });
        return store.put(key, body, options);
      },
      delete: async (key) => {
        gate({ op: 'delete', key });
        return store.delete(key);
      },
    },
  };
}

/** Every key under `prefix` with the sha256 of its bytes. */
export async function snapshot(store: ObjectStore, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const key of await store.list(prefix)) {
    const bytes = await store.get(key);
    out[key] = bytes ? createHash('sha256').update(bytes).digest('hex') : 'missing';
  }
  return out;
}

/**
 * The environment of a child CLI: this process's, without any variable that picks a store, an
 * endpoint, credentials or an R2 account (AWS_*, FLEXMEM_*, R2_*), plus exactly `vars`. Nothing
 * storage-related is inherited from whoever runs the tests.
 */
export function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!/^(AWS_|FLEXMEM_|R2_)/.test(name)) env[name] = value;
  return { ...env, ...vars };
}

export interface WireRequest {
  method: string;
  /** Bucket, key and query, as the client sent them. */
  path: string;
  held: boolean;
}

/**
 * An HTTP proxy in front of s3rver that logs every request, can hold requests (never forwarded
 * nor answered: the client waits until it is killed) and can corrupt answers (the first byte of a
 * body flipped, its length unchanged). Requests are forwarded unchanged, Host header included, so
 * SigV4 signatures made for the proxy's address still verify upstream.
 */
export class WireProxy {
  readonly log: WireRequest[] = [];
  private readonly holds: RegExp[] = [];
  private readonly corruptions: RegExp[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;

  private constructor(private readonly upstream: URL) {
    this.server = http.createServer((request, response) => this.handle(request, response));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  static async start(upstream: string): Promise<WireProxy> {
    const proxy = new WireProxy(new URL(upstream));
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Holds every request whose `METHOD path` matches, until the returned function is called (held ones stay held). */
  hold(match: RegExp): () => void {
    this.holds.push(match);
    return () => {
      const i = this.holds.indexOf(match);
      if (i >= 0) this.holds.splice(i, 1);
    };
  }

  /** Corrupts the answer to every GET whose path matches, until the returned function is called. */
  corrupt(match: RegExp): () => void {
    this.corruptions.push(match);
    return () => {
      const i = this.corruptions.indexOf(match);
      if (i >= 0) this.corruptions.splice(i, 1);
    };
  }

  /**
   * The writes (PUT, POST, DELETE) under a path prefix (`/bucket/prefix/`) from log entry `since`
   * on, as `METHOD key` with the prefix and the query cut.
   */
  writes(pathPrefix: string, since = 0): string[] {
    return this.log
      .slice(since)
      .filter((r) => r.method !== 'GET' && r.method !== 'HEAD' && r.path.startsWith(pathPrefix))
      .map((r) => `${r.method} ${r.path.slice(pathPrefix.length).replace(/\?.*$/, '')}`);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const method = request.method ?? 'GET';
    const path = request.url ?? '/';
    const held = this.holds.some((m) => m.test(`${method} ${path}`));
    this.log.push({ method, path, held });
    if (held) return;
    const corrupt = method === 'GET' && this.corruptions.some((m) => m.test(path));
    const upstream = http.request(
      { host: this.upstream.hostname, port: this.upstream.port, method, path, headers: request.headers, agent: false },
      (answer) => {
        if (!corrupt || answer.statusCode !== 200) {
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
          return;
        }
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          if (body.length) body[0] ^= 0xff;
          const { 'transfer-encoding': _, ...headers } = answer.headers;
          response.writeHead(200, { ...headers, 'content-length': String(body.length) });
          response.end(body);
        });
      },
    );
    upstream.on('error', () => response.socket?.destroy());
    request.pipe(upstream);
  }
}
