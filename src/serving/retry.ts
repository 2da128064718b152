/**
 * The origin read policy: how many times and for how long one read of the origin is tried. It is
 * owned here alone (the S3 client's own retries are off), so retries never stack, and a read that
 * cannot succeed ends within its deadline instead of leaving a stream silent for a minute.
 * docs/architecture.md ("Errors") explains the choices.
 */
import { InternalError } from '../errors.ts';
import { StoreHttpError } from '../storage/store-error.ts';

export interface OriginPolicy {
  /** Tries of one read, the first included. */
  attempts: number;
  /** Wall-clock budget of one read, every attempt and wait included. */
  deadlineMs: number;
  /** The longest wait before the first retry; it doubles per retry, and the wait is drawn below it (full jitter). */
  backoffMs: number;
}

export const DEFAULT_ORIGIN_POLICY: OriginPolicy = { attempts: 3, deadlineMs: 5000, backoffMs: 100 };

/**
 * A large object (a compute graph, a hot set) gets extra time at this floor throughput, 1 MiB/s:
 * the deadline is for a hung origin, not for a slow one that is still delivering.
 */
const FLOOR_BYTES_PER_MS = (1 << 20) / 1000;

/** The origin did not answer usably in time: the client gets a 503 and may try again. */
export class OriginUnavailableError extends InternalError {
  override name = 'OriginUnavailableError';
}

/** An attempt that ran out of its share of the deadline. */
class AttemptTimeout extends Error {
  override name = 'AttemptTimeout';
}

/**
 * Runs `read` under `policy`. A store's refusal (a 4xx status) fails at once; anything else (5xx,
 * 408, 429, a dropped connection, a cut body, a hung read) is tried again, each attempt getting an
 * equal share of what is left of the deadline, so a hung connection is given up on early enough
 * for a fresh one to be tried. `bytes` is the size expected, when known.
 */
export async function withinPolicy<T>(
  policy: OriginPolicy,
  what: string,
  bytes: number,
  read: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const started = Date.now();
  const deadline = started + policy.deadlineMs + bytes / FLOOR_BYTES_PER_MS;
  let lastError: unknown;
  let attempt = 1;
  for (; attempt <= policy.attempts; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      return await attemptWithin(left / (policy.attempts - attempt + 1), read);
    } catch (error) {
      if (refused(error)) throw new InternalError(`reading ${what} failed: ${messageOf(error)}`, { cause: error });
      lastError = error;
    }
    if (attempt < policy.attempts) await sleep(Math.min(Math.random() * policy.backoffMs * 2 ** (attempt - 1), deadline - Date.now()));
  }
  throw new OriginUnavailableError(
    `reading ${what} failed after ${attempt - 1} attempts in ${Date.now() - started} ms: ${messageOf(lastError)}`,
    { cause: lastError },
  );
}

/** 404 never gets here (it is "missing", a null from the store); 408 and 429 mean "later". */
function refused(error: unknown): boolean {
  return error instanceof StoreHttpError && error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
}

/** One attempt, aborted after `ms`: through the signal where the store honours it, by the race where it does not. */
async function attemptWithin<T>(ms: number, read: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let stopTimer = () => {};
  const timeout = new Promise<never>((_, reject) => {
    const timer = setTimeout(() => {
      const error = new AttemptTimeout(`no answer within ${Math.round(ms)} ms`);
      controller.abort(error);
      reject(error);
    }, ms);
    stopTimer = () => clearTimeout(timer);
  });
  try {
    return await Promise.race([read(controller.signal), timeout]);
  } finally {
    stopTimer();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
