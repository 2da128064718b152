/**
 * Reading and dropping the body of a request refused before its body was read (no key, not JSON),
 * for the reason src/api/read-body.ts drains an oversized one: a server that answers and closes
 * while the client is still uploading makes the client see a reset instead of the answer.
 */
import { drainCap } from './read-body.ts';

/** Reads `request`'s body to its end and drops it, unless it is longer than the drain cap of `maxBytes`. */
export async function discardBody(request: Request, maxBytes: number): Promise<void> {
  if (!request.body || request.bodyUsed) return;
  const cap = drainCap(maxBytes);
  const declared = Number(request.headers.get('content-length') ?? 0);
  const reader = request.body.getReader();
  try {
    if (declared > cap) return;
    let total = 0;
    while (total <= cap) {
      const { value, done } = await reader.read();
      if (done) return;
      total += value.byteLength;
    }
  } catch {
    // The client went away: there is nobody left to answer.
  } finally {
    reader.cancel().catch(() => {});
  }
}
