/**
 * Values re-read from the origin at most every `ttlMs` (a model's pointer, the list of models)
 * that keep serving when a re-read fails: an origin that is down, or a pointer object that was
 * overwritten with something broken, must not take down models the isolate already knows. A held
 * value is served for at most `maxStaleMs` after it was last read; past that its failures are the
 * caller's again. A failure episode is logged when it starts and when it ends, not per request.
 */
export interface StaleOptions {
  /** A value read less than this long ago is served without a read. */
  ttlMs: number;
  /** How long after its last successful read a value may stand in for failing re-reads. */
  maxStaleMs: number;
  /** A read pending longer than this is taken for lost (its request ended and took it along): a new one may start. */
  settleMs: number;
  now: () => number;
  /** Where an episode's start and end are reported (console.warn in the worker). */
  log: (message: string) => void;
}

interface Held<V> {
  value: V;
  readAt: number;
  /** The last read, successful or not: the next one is due a TTL later. */
  checkedAt: number;
  failingSince?: number;
  expiryLogged?: boolean;
}

interface Pending {
  startedAt: number;
}

export class StaleWhileError<V> {
  /** Only keys with a value read once: a client naming unknown keys adds nothing here. */
  private readonly held = new Map<string, Held<V>>();
  /** Reads in flight, so that a request arriving meanwhile serves what is held instead of reading again. */
  private readonly pending = new Map<string, Pending>();

  /** `readValue` gives null when the key has no value at the origin (a model without a pointer), which is not a failure. */
  constructor(
    private readonly readValue: (key: string) => Promise<V | null>,
    private readonly describe: (key: string) => string,
    private readonly options: StaleOptions,
  ) {}

  /**
   * The value of `key`. A request only ever waits for a read it started itself: in workerd a
   * promise of one request's I/O is not safe to await from another (that request may end first and
   * take its I/O with it). `background` (Workers: ctx.waitUntil) keeps a read this call starts alive
   * after its request ends, so its result still lands here for the next requests.
   */
  async get(key: string, background?: (work: Promise<unknown>) => void): Promise<V | null> {
    const now = this.options.now();
    const held = this.held.get(key);
    const usable = held !== undefined && now - held.readAt <= this.options.maxStaleMs;
    if (usable && now - held.checkedAt <= this.options.ttlMs) return held.value;
    const pending = this.pending.get(key);
    const reading = pending !== undefined && now - pending.startedAt <= this.options.settleMs;
    // Another request is reading it, or it has been failing: serve what is held rather than wait.
    if (usable && (reading || held.failingSince !== undefined)) {
      if (!reading) this.read(key, now, background).catch(() => {});
      return held.value;
    }
    return this.read(key, now, background);
  }

  private read(key: string, now: number, background?: (work: Promise<unknown>) => void): Promise<V | null> {
    const entry = { startedAt: now };
    const read = this.readValue(key).then(
      (value) => this.succeeded(key, value, entry),
      (error) => this.failed(key, error, entry),
    );
    this.pending.set(key, entry);
    background?.(read.catch(() => {}));
    return read;
  }

  private succeeded(key: string, value: V | null, entry: Pending): V | null {
    if (this.pending.get(key) === entry) this.pending.delete(key);
    const failingSince = this.held.get(key)?.failingSince;
    if (failingSince !== undefined)
      this.options.log(`${this.describe(key)} can be read again, after ${seconds(this.options.now() - failingSince)} s of failures`);
    if (value === null) this.held.delete(key);
    else this.held.set(key, { value, readAt: entry.startedAt, checkedAt: entry.startedAt });
    return value;
  }

  /** Serves the held value while it may stand in; otherwise the failure is the caller's. */
  private failed(key: string, error: unknown, entry: Pending): V {
    if (this.pending.get(key) === entry) this.pending.delete(key);
    const held = this.held.get(key);
    if (!held) throw error;
    const now = this.options.now();
    held.checkedAt = now;
    const reason = error instanceof Error ? error.message : String(error);
    if (held.failingSince === undefined) {
      held.failingSince = now;
      this.options.log(
        `${this.describe(key)} cannot be read (${reason}); serving the value read ${seconds(now - held.readAt)} s ago, for up to ${seconds(this.options.maxStaleMs)} s`,
      );
    }
    if (now - held.readAt <= this.options.maxStaleMs) return held.value;
    if (!held.expiryLogged) {
      held.expiryLogged = true;
      this.options.log(`${this.describe(key)} still cannot be read (${reason}); its value is too old to serve, requests fail`);
    }
    throw error;
  }
}

const seconds = (ms: number) => Math.round(ms / 100) / 10;
