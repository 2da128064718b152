/**
 * The two kinds of failure, kept apart because they go to different people.
 *
 * An InputError is a mistake in what the user asked for: its message is one line meant for them
 * (a 4xx on the API, `flexmem: …` on the CLI). An InternalError is a fault of the server or its
 * storage (a missing or corrupt object, a malformed pointer, a bad setting): its message is for
 * the operator's log and may name objects, versions and paths, so the API never sends it to a
 * client; the client gets a 5xx with a request id instead.
 */
export class InputError extends Error {
  override name = 'InputError';

  /** `status` is the HTTP status the API answers with. */
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

export class InternalError extends Error {
  override name = 'InternalError';
}
