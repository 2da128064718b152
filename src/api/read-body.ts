/**
 * Reading a JSON request body under a size limit, the way a robust HTTP server does.
 *
 * A server that answers 413 and closes while the client is still uploading makes the client see a
 * reset (`write ECONNRESET`, `EPIPE`) instead of the answer: the kernel discards the unread request
 * bytes and resets the connection, and the response already sent is lost with it. Clients that send
 * `Expect: 100-continue` (curl) wait for the verdict before uploading; most (fetch, the OpenAI SDKs)
 * do not. So the body is read as a stream, counting bytes:
 *
 * - a body declared (Content-Length) larger than the drain cap is refused at once, unread;
 * - a body over the limit is read on and discarded up to the drain cap, then refused: a client
 *   that has sent all of a moderately oversized body reads the 413 instead of a reset;
 * - a body over the drain cap (declared or streamed, e.g. chunked) is cut off at the cap.
 *
 * At most `maxBytes` of the body are ever kept; the bytes past the limit are dropped as they arrive.
 */
import { ApiError } from './errors.ts';

/**
 * How far past the limit a body is still read (and discarded) before answering 413: a fixed
 * 1 MiB rather than a multiple of the limit. Draining costs the time and bandwidth of reading bytes
 * that are thrown away (never memory), so the slack is a constant cost whatever MAX_BODY_BYTES is
 * configured to (2× a 100 MiB limit would read 100 MiB of garbage per refused request), while it
 * still covers the common mistake: a prompt or pasted document somewhat over the limit. With the
 * default 1 MiB limit it equals 2× the limit. A body more than 1 MiB over is refused without
 * draining, as nginx and others do past their own lingering limit.
 */
export const DRAIN_SLACK_BYTES = 1 << 20;

/** The most bytes read from a request whose body is over `maxBytes`, before it is refused. */
export function drainCap(maxBytes: number): number {
  return maxBytes + DRAIN_SLACK_BYTES;
}

/**
 * The JSON body of `request`, at most `maxBytes` long (UTF-8 bytes on the wire).
 * Throws ApiError 413 `request_too_large` for a larger body, 400 `invalid_json` for a body that is
 * not JSON (an empty body included).
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const text = await readBodyText(request, maxBytes);
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(
      400,
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)",
      'invalid_request_error',
      null,
      'invalid_json',
    );
  }
}

/** The body as text (UTF-8, replacing malformed sequences, as Request.text() does), at most `maxBytes` long. */
export async function readBodyText(request: Request, maxBytes: number): Promise<string> {
  const declared = declaredLength(request);
  const cap = drainCap(maxBytes);
  if (declared !== null && declared > cap) throw tooLarge(maxBytes, declared);
  if (!request.body) return '';

  const reader = request.body.getReader();
  const kept: Uint8Array[] = [];
  let total = 0;
  // Known to be over from its Content-Length: nothing is kept, the body is only drained.
  let over = declared !== null && declared > maxBytes;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      // Past the drain cap: stop reading; the client may see the connection close under its upload.
      reader.cancel().catch(() => {});
      throw tooLarge(maxBytes, null);
    }
    if (over) continue;
    if (total > maxBytes) {
      over = true;
      kept.length = 0;
      continue;
    }
    kept.push(value);
  }
  if (over) throw tooLarge(maxBytes, total);
  return new TextDecoder().decode(concat(kept, total));
}

/** The Content-Length header as a number, or null when absent or malformed (the bytes are counted anyway). */
function declaredLength(request: Request): number | null {
  const header = request.headers.get('content-length');
  if (header === null || !/^\s*\d+\s*$/.test(header)) return null;
  return Number(header);
}

function tooLarge(maxBytes: number, size: number | null): ApiError {
  const message =
    size === null
      ? `Request body exceeds the limit of ${maxBytes} bytes.`
      : `Request body of ${size} bytes exceeds the limit of ${maxBytes} bytes.`;
  return new ApiError(413, message, 'invalid_request_error', null, 'request_too_large');
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
