/**
 * Admission control for one isolate: at most `maxActive` generations hold a slot at once, at most
 * `maxQueued` more wait for one, each for at most `queueWaitMs`; anything beyond is refused at
 * once, so a burst never builds an unbounded queue. An isolate's throughput is flat (about 400
 * tokens/s for 1 to 64 streams, docs/BENCHMARKS.md), so every stream past the bound would only
 * slow all the others down.
 */
import { InternalError } from '../errors.ts';

export interface AdmissionLimits {
  /** Generations that run at once in this isolate. */
  maxActive: number;
  /** Requests that may wait for a slot; one more is refused at once. */
  maxQueued: number;
  /** How long a request waits in the queue before it is refused. */
  queueWaitMs: number;
}

/**
 * 8 running: the isolate's ~400 tokens/s split 8 ways still streams each at ~50 tokens/s (20 ms a
 * token), faster than anyone reads; 64 would be 6 tokens/s each. A 256-token generation then
 * lasts about 5 s, so 8 slots free one about every 0.6 s: in a 2 s wait about 3 queued requests
 * get a slot, and a queue of 4 already holds more than that. Past it, the client is better off
 * retrying at once, likely on another isolate.
 */
export const DEFAULT_ADMISSION: AdmissionLimits = { maxActive: 8, maxQueued: 4, queueWaitMs: 2000 };

/** A held slot. Releasing it again, or after its signal aborted, does nothing. */
export interface Slot {
  release(): void;
}

interface Ticket {
  state: 'queued' | 'active' | 'done';
  admit(): void;
}

export class Admission {
  private running = 0;
  private readonly waiting: Ticket[] = [];

  constructor(readonly limits: AdmissionLimits) {
    if (!(limits.maxActive >= 1)) throw new InternalError(`admission: maxActive must be at least 1, got ${limits.maxActive}`);
  }

  /** Slots held now. */
  get active(): number {
    return this.running;
  }

  /** Requests waiting for a slot now. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * A slot, at once or after a wait of at most `queueWaitMs`; null when the isolate stays full.
   * The slot is also released when `signal` aborts: after a client disconnects workerd may never
   * resume the request's code, so the end of its response cannot be relied on to release it.
   */
  acquire(signal?: AbortSignal): Promise<Slot | null> {
    if (signal?.aborted) return Promise.resolve(null);
    const free = this.running < this.limits.maxActive && this.waiting.length === 0;
    if (!free && (this.waiting.length >= this.limits.maxQueued || this.limits.queueWaitMs <= 0)) return Promise.resolve(null);
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stopTimer = () => timer !== undefined && clearTimeout(timer);
      // One abort listener for the ticket's whole life: it leaves the queue, or frees the slot.
      // It is registered here, in the waiting request's own context, not by whoever admits it.
      const end = () => {
        signal?.removeEventListener('abort', end);
        stopTimer();
        const was = ticket.state;
        ticket.state = 'done';
        if (was === 'queued') {
          this.waiting.splice(this.waiting.indexOf(ticket), 1);
          resolve(null);
        } else if (was === 'active') {
          this.running--;
          this.admitWaiting();
        }
      };
      const ticket: Ticket = {
        state: 'queued',
        admit: () => {
          stopTimer();
          ticket.state = 'active';
          this.running++;
          resolve({ release: end });
        },
      };
      signal?.addEventListener('abort', end);
      if (free) return ticket.admit();
      this.waiting.push(ticket);
      timer = setTimeout(end, this.limits.queueWaitMs);
    });
  }

  private admitWaiting(): void {
    while (this.running < this.limits.maxActive && this.waiting.length > 0) this.waiting.shift()!.admit();
  }
}
