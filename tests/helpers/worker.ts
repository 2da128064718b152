/** The real worker in real workerd (Miniflare), and small clients for it. */
import http from 'node:http';
import { Readable } from 'node:stream';
import { createParser } from 'eventsource-parser';
import { inject } from 'vitest';
import { publishBundle } from '../../cli/publish.ts';
import { within } from './deadline.ts';
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

/**
 * POSTs JSON on a raw socket of its own, for tests that need what a Response hides: `request.destroy()`
 * is a real client disconnect, and the Node response can be paused or read chunk by chunk.
 */
export function postRaw(url: string, body: unknown): { request: http.ClientRequest; response: Promise<http.IncomingMessage> } {
  const target = new URL(url);
  let request!: http.ClientRequest;
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json' },
      },
      resolve,
    );
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
  return { request, response };
}

/**
 * Opens a streaming request on a raw socket, reads `events` SSE events, then destroys the socket:
 * a real client disconnect (fetch's AbortController may leave the connection open). Fails if the
 * events have not arrived within `timeoutMs`.
 */
export function streamThenDisconnect(url: string, body: unknown, events: number, timeoutMs = 30_000): Promise<void> {
  const { request, response } = postRaw(url, body);
  const disconnected = response.then(
    (stream) =>
      new Promise<void>((resolve, reject) => {
        let seen = 0;
        const parser = createParser({
          onEvent: () => {
            if (seen >= events || ++seen < events) return;
            request.destroy();
            resolve();
          },
          onError: reject,
        });
        stream.setEncoding('utf8'); // decodes characters split across chunks
        stream.on('data', (chunk: string) => parser.feed(chunk));
        stream.on('end', () => reject(new Error(`the stream ended after ${seen} of the ${events} events to read`)));
      }),
  );
  return within(timeoutMs, `reading ${events} events of ${url} before disconnecting`, disconnected).finally(() => request.destroy());
}
