/** Waits with a deadline: a wait that can never end fails with a message instead of hanging to the test timeout. */

/** Resolves or rejects as `promise` does, or rejects with `what` once `ms` have passed: a wait that cannot hang. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Calls `read` every `everyMs` until `done(value)` holds, and returns that value; fails with
 * `what` and the last value read once `timeoutMs` have passed.
 */
export async function pollUntil<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  { timeoutMs = 20_000, everyMs = 50 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still not the case after ${timeoutMs} ms (last seen: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * Resolves once `condition` holds (polled with pollUntil); throws `message` when it still does not
 * hold after `timeoutMs`, or at once when `giveUp` returns a reason (say, the process being waited
 * on has exited).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  message: string,
  { timeoutMs = 30_000, everyMs = 20, giveUp }: { timeoutMs?: number; everyMs?: number; giveUp?: () => string | null } = {},
): Promise<void> {
  await pollUntil(
    message,
    async () => {
      const reason = giveUp?.();
      if (reason) throw new Error(`${message}: ${reason}`);
      return condition();
    },
    Boolean,
    { timeoutMs, everyMs },
  );
}
