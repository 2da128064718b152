/**
 * The client side of a streamed completion, timed where the bytes arrive: workerd's own clock only
 * advances across I/O, so every latency in the report is measured here, in Node.
 */
import http from 'node:http';
import { createParser } from 'eventsource-parser';

export interface StreamedEvent {
  /** Milliseconds since the request was sent. */
  at: number;
  data: Record<string, any> | '[DONE]';
}

export interface StreamResult {
  /** Response headers arrived. */
  headersMs: number;
  events: StreamedEvent[];
  /** Arrival times of the text deltas (one per generated token, unless a token decodes to ''). */
  deltas: number[];
  /** The server's own summary from the finish chunk (flexmem.timing). */
  timing: Record<string, any> | null;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  text: string;
  totalMs: number;
  /** Arrival of the chunk with the finish reason (after the last token). */
  finishMs: number;
}

/** A new connection per request: workerd closes idle keep-alive sockets, and a reused dead one hangs up. */
const agent = false;

/** POSTs a streaming completion and records when each server-sent event arrives. */
export function streamCompletion(baseUrl: string, body: Record<string, unknown>): Promise<StreamResult> {
  const target = new URL(`${baseUrl}/v1/completions`);
  const payload = JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const result: StreamResult = {
      headersMs: NaN,
      events: [],
      deltas: [],
      timing: null,
      usage: null,
      text: '',
      totalMs: NaN,
      finishMs: NaN,
    };
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (response) => {
        result.headersMs = performance.now() - t0;
        if (response.statusCode !== 200) {
          let text = '';
          response.on('data', (c: Buffer) => (text += c.toString()));
          response.on('end', () => reject(new Error(`HTTP ${response.statusCode}: ${text}`)));
          return;
        }
        let at = 0;
        const parser = createParser({
          onEvent: ({ data: text }) => {
            const data = text === '[DONE]' ? '[DONE]' : JSON.parse(text);
            result.events.push({ at, data });
            if (data === '[DONE]') return;
            if (data.error) return reject(new Error(`stream error: ${data.error.message}`));
            const choice = data.choices?.[0];
            if (choice?.text) {
              result.deltas.push(at);
              result.text += choice.text;
            }
            if (choice?.finish_reason) result.finishMs = at;
            if (data.flexmem?.timing) result.timing = data.flexmem.timing;
            if (data.usage) result.usage = data.usage;
          },
          onError: (error) => reject(new Error(`stream: ${error.message}`)),
        });
        response.setEncoding('utf8'); // decodes characters split across chunks
        response.on('data', (chunk: string) => {
          at = performance.now() - t0; // every event completed by this chunk arrived now
          try {
            parser.feed(chunk);
          } catch (error) {
            reject(new Error(`stream: ${(error as Error).message}`)); // an event that is not JSON
          }
        });
        response.on('end', () => {
          result.totalMs = performance.now() - t0;
          resolve(result);
        });
        response.on('error', reject);
      },
    );
    request.on('error', (error) => reject(new Error(`POST ${target.pathname}: ${error.message}`)));
    request.end(payload);
  });
}

/** A plain JSON request (GET when body is undefined); returns the parsed body and the elapsed time. */
export function requestJson(baseUrl: string, path: string, body?: unknown): Promise<{ ms: number; status: number; json: any }> {
  const target = new URL(`${baseUrl}${path}`);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname + target.search,
        method: payload ? 'POST' : 'GET',
        agent,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (response) => {
        let text = '';
        response.on('data', (c: Buffer) => (text += c.toString()));
        response.on('end', () => {
          const ms = performance.now() - t0;
          try {
            resolve({ ms, status: response.statusCode ?? 0, json: JSON.parse(text) });
          } catch {
            resolve({ ms, status: response.statusCode ?? 0, json: text });
          }
        });
      },
    );
    request.on('error', (error) =>
      reject(new Error(`${payload ? 'POST' : 'GET'} ${path} ${payload?.slice(0, 200) ?? ''}: ${error.message}`)),
    );
    request.end(payload);
  });
}

export interface Failure {
  where: string;
  message: string;
}

/**
 * Runs `fn`, retrying up to `attempts` times; every failure is appended to `failures` (the report
 * lists them), so a transient error is neither hidden nor fatal to the whole run.
 */
export async function withRetry<T>(where: string, failures: Failure[], fn: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (error) {
      failures.push({ where, message: String((error as Error)?.message ?? error).slice(0, 300) });
      if (i >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
