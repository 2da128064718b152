/**
 * A store that answered with an error status. Its status travels with it so the origin read
 * policy (src/serving/retry.ts) can tell "try again" (5xx) from "never" (a refused request);
 * any other error a store throws (a dropped connection, a cut body) is worth another try.
 */
export class StoreHttpError extends Error {
  override name = 'StoreHttpError';

  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}
