/**
 * Holds one of the isolate's generation slots (src/serving/admission.ts) for a request's whole
 * life: until its JSON answer is ready, or until its event stream ends, fails or is cancelled, or
 * the client goes away. A request that gets no slot is answered 503 at once, before its body is
 * read. Here rather than in complete(), so that every way out of a request releases the slot.
 */
import type { MiddlewareHandler } from 'hono';
import { ApiError } from './errors.ts';
import type { ApiHost } from './host.ts';

/** A slot frees about every 0.6 s under full load (src/serving/admission.ts), and a retry may reach another isolate. */
const RETRY_AFTER_SECONDS = 1;

export const admitted: MiddlewareHandler<{ Variables: { host: ApiHost } }> = async (c, next) => {
  const { admission } = c.var.host.core;
  const slot = await admission.acquire(c.req.raw.signal);
  if (!slot) {
    const response = new ApiError(
      503,
      `The server is overloaded: all ${admission.limits.maxActive} generation slots of this instance are busy. Please try again in ${RETRY_AFTER_SECONDS}s.`,
      'service_unavailable',
      null,
      'server_overloaded',
    ).toResponse();
    response.headers.set('retry-after', String(RETRY_AFTER_SECONDS));
    return response;
  }
  let streaming = false;
  try {
    await next();
    const { body, headers } = c.res;
    if (body && (headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      c.res = new Response(releasedAtEnd(body, slot.release), c.res);
      streaming = true;
    }
  } finally {
    if (!streaming) slot.release();
  }
};

/** The same stream, pulled chunk by chunk as before (no buffering), calling `release` once it ends either way. */
function releasedAtEnd(body: ReadableStream<Uint8Array>, release: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (!done) return controller.enqueue(value);
          release();
          controller.close();
        } catch (error) {
          release();
          controller.error(error);
        }
      },
      cancel(reason) {
        release();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
