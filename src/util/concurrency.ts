/**
 * At most `limit` calls of `run` in flight at once; the others wait, first come first served.
 * One limit can be shared by several callers (a request's page reads and its hot-set read).
 */
export class ConcurrencyLimit {
  /** Calls in flight now. */
  busy = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy < this.limit) this.busy++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over, busy unchanged
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.busy--;
    }
  }
}
