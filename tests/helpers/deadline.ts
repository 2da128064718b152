/** Polling with a deadline: a wait that can never end fails with a message instead of hanging to the test timeout. */

/**
 * Resolves once `condition` holds, checked every `everyMs`; throws `message` (with the time waited)
 * when it still does not hold after `timeoutMs`, or at once when `giveUp` returns a reason (say, the
 * process being waited on has exited).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  message: string,
  { timeoutMs = 30_000, everyMs = 20, giveUp }: { timeoutMs?: number; everyMs?: number; giveUp?: () => string | null } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    const reason = giveUp?.();
    if (reason) throw new Error(`${message}: ${reason}`);
    if (Date.now() > deadline) throw new Error(`${message}: still not the case after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
