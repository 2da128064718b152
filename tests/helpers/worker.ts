/** The real worker in real workerd (Miniflare), and small clients for it. */
import http from 'node:http';
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
 * POSTs JSON. A request that meets a keep-alive connection the server has just closed (undici's
 * "other side closed", before any response) is sent once more on a fresh connection, as HTTP
 * clients do; any other failure is the test's.
 */
export async function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return sendOnce(() =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...init,
    }),
  );
}

/**
 * POSTs `text` as a stream in chunks of `chunkBytes`, without a Content-Length (chunked transfer
 * encoding), as a client does that does not know the size of what it uploads. Retried as `post` is.
 */
export async function postStreamed(url: string, text: string, chunkBytes = 64 << 10): Promise<Response> {
  const bytes = new TextEncoder().encode(text);
  const body = () => {
    let offset = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        controller.enqueue(bytes.slice(offset, offset + chunkBytes));
        offset += chunkBytes;
      },
    });
  };
  return sendOnce(() =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(), duplex: 'half' } as RequestInit),
  );
}

async function sendOnce(send: () => Promise<Response>): Promise<Response> {
  try {
    return await send();
  } catch (error) {
    if ((error as { cause?: { code?: string } }).cause?.code !== 'UND_ERR_SOCKET') throw error;
    return send();
  }
}

/**
 * Opens a streaming request on a raw socket, reads `events` SSE events, then destroys the socket:
 * a real client disconnect (fetch's AbortController may leave the connection open).
 */
export function streamThenDisconnect(url: string, body: unknown, events: number): Promise<void> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const request = http.request(
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
            request.destroy();
            resolve();
          },
          onError: reject,
        });
        response.setEncoding('utf8'); // decodes characters split across chunks
        response.on('data', (chunk: string) => parser.feed(chunk));
      },
    );
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
}
