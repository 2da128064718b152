/** The real worker (as wrangler bundles it) in real workerd through Miniflare, with local R2. */
import { readdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { inject } from 'vitest';
import { publishBundle } from '../../cli/publish.ts';
import { miniflareR2Store } from '../../cli/stores/miniflare-r2.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';

export interface WorkerOptions {
  vars?: Record<string, string>;
  kv?: boolean;
}

export interface RunningWorker {
  url: string;
  mf: Miniflare;
  /** The BUNDLES bucket, as an ObjectStore. */
  bucket: ObjectStore;
  dispose(): Promise<void>;
}

export async function startWorker(options: WorkerOptions = {}): Promise<RunningWorker> {
  const dir = inject('workerDir');
  const files = readdirSync(dir);
  const mf = new Miniflare({
    // Listed explicitly: Miniflare's module scan trips on onnxruntime-web's dynamic import().
    modules: [
      { type: 'ESModule', path: join(dir, files.find((f) => f.endsWith('.js'))!) },
      ...files.filter((f) => f.endsWith('.wasm')).map((f) => ({ type: 'CompiledWasm' as const, path: join(dir, f) })),
    ],
    modulesRoot: dir,
    compatibilityDate: '2026-04-20',
    compatibilityFlags: ['enable_request_signal'],
    r2Buckets: { BUNDLES: 'flexmem-bundles' },
    kvNamespaces: options.kv ? ['ROWS_KV'] : [],
    bindings: { POINTER_TTL_SECONDS: '1', ...options.vars },
    port: 0,
  });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const bucket = miniflareR2Store(await mf.getR2Bucket('BUNDLES'));
  return { url, mf, bucket, dispose: () => mf.dispose() };
}

/** Uploads a local bundle to the worker's bucket and points `model` at it. */
export async function serveBundle(worker: RunningWorker, bundleDir: string, model: string): Promise<string> {
  return (await publishBundle(worker.bucket, bundleDir, { model })).version;
}

export function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });
}

/**
 * Opens a streaming request on a raw socket, reads `events` SSE events, then destroys the socket:
 * a real client disconnect (fetch's AbortController may leave the connection open).
 */
export function streamThenDisconnect(url: string, body: unknown, events: number): Promise<void> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (response) => {
      let seen = '';
      response.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.split('\n\n').length > events) {
          request.destroy();
          resolve();
        }
      });
    });
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
}
