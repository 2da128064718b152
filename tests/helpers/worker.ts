/** The real worker in real workerd (Miniflare), and small clients for it. */
import http from 'node:http';
import { Readable } from 'node:stream';
import { createParser } from 'eventsource-parser';
import { inject } from 'vitest';
import { publishBundle } from '../../cli/publish.ts';
import { launchWorker, type RunningWorker, type WorkerOptions } from './miniflare-worker.ts';

export type { RunningWorker, WorkerOptions } from './miniflare-worker.ts';

/** The worker built once for this test run (tests/global-setup.ts). */
export function startWorker(options: WorkerOptions = {}): Promise<RunningWorker> {
  return launchWorker(inject('workerDir'), options);
}

/** Uploads a local bundle to the worker's bucket and points `model` at it. */
export async function serveBundle(worker: RunningWorker, bundleDir: string, model: string): Promise<string> {
  return (await publishBundle(worker.bucket, bundleDir, { model })).version;
}

/**
 * The requests of these helpers each go out on a connection of their own (node:http without an
 * agent), and are answered as fetch answers (a Response). None is ever sent twice, and none can
 * meet a pooled keep-alive connection that the server closed while it sat idle: workerd closes
 * idle connections, and a test that blocks its event loop (spawnSync, say) does not see the close
 * in time, so a pooled client such as fetch would write into it and fail. Here a connection the
 * server drops is the server's doing, and fails the test with that reason.
 */
function send(
  url: string,
  method: string,
  headers: HeadersInit,
  body: string | ReadableStream<Uint8Array> | null,
  signal?: AbortSignal | null,
) {
  const target = new URL(url);
  const sent: Record<string, string> = {};
  new Headers(headers).forEach((value, name) => {
    sent[name] = value;
  });
  if (typeof body === 'string') sent['content-length'] = String(Buffer.byteLength(body));
  return new Promise<Response>((resolve, reject) => {
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method,
        agent: false,
        headers: sent,
        signal: signal ?? undefined,
      },
      (response) => {
        const answered = new Headers();
        for (const [name, value] of Object.entries(response.headers)) for (const v of [value ?? []].flat()) answered.append(name, v);
        const status = response.statusCode!;
        const stream = status === 204 || status === 304 ? null : (Readable.toWeb(response) as ReadableStream<Uint8Array>);
        resolve(new Response(stream, { status, statusText: response.statusMessage, headers: answered }));
      },
    );
    request.on('error', (error) =>
      reject(new Error(`${method} ${url}: the connection failed before any response (${error.message})`, { cause: error })),
    );
    if (body instanceof ReadableStream) Readable.fromWeb(body as import('node:stream/web').ReadableStream).pipe(request);
    else request.end(body ?? undefined);
  });
}

/** GETs `url`, on a connection of its own. */
export function get(url: string): Promise<Response> {
  return send(url, 'GET', {}, null);
}

/** POSTs JSON (or `body` as it is, when a string), on a connection of its own; `init` may set the method, headers and signal. */
export function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return send(url, init.method ?? 'POST', init.headers ?? { 'content-type': 'application/json' }, text, init.signal);
}

/**
 * POSTs `text` as a stream in chunks of `chunkBytes`, without a Content-Length (chunked transfer
 * encoding), as a client does that does not know the size of what it uploads; on a connection of its own.
 */
export function postStreamed(url: string, text: string, chunkBytes = 64 << 10): Promise<Response> {
  const bytes = new TextEncoder().encode(text);
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunkBytes));
      offset += chunkBytes;
    },
  });
  return send(url, 'POST', { 'content-type': 'application/json' }, body);
}

/** Resolves or rejects as `promise` does, or rejects with `what` once `ms` have passed: a wait that cannot hang. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Calls `read` every `everyMs` until `done(value)` holds, and returns that value; fails with
 * `what` and the last value read once `timeoutMs` have passed.
 */
export async function pollUntil<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  { timeoutMs = 20_000, everyMs = 50 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still not the case after ${timeoutMs} ms (last seen: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * Opens a streaming request on a raw socket, reads `events` SSE events, then destroys the socket:
 * a real client disconnect (fetch's AbortController may leave the connection open). Fails if the
 * events have not arrived within `timeoutMs`.
 */
export function streamThenDisconnect(url: string, body: unknown, events: number, timeoutMs = 30_000): Promise<void> {
  const target = new URL(url);
  let request: http.ClientRequest | undefined;
  const disconnected = new Promise<void>((resolve, reject) => {
    request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json' },
      },
      (response) => {
        let seen = 0;
        const parser = createParser({
          onEvent: () => {
            if (seen >= events || ++seen < events) return;
            request!.destroy();
            resolve();
          },
          onError: reject,
        });
        response.setEncoding('utf8'); // decodes characters split across chunks
        response.on('data', (chunk: string) => parser.feed(chunk));
        response.on('end', () => reject(new Error(`the stream ended after ${seen} of the ${events} events to read`)));
      },
    );
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
  return within(timeoutMs, `reading ${events} events of ${url} before disconnecting`, disconnected).finally(() => request?.destroy());
}
