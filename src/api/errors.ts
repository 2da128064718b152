/** Errors in OpenAI's JSON shape: { error: { message, type, param, code } }. */
/** `requests`: OpenAI's type for a 429 of a requests-per-period limit. */
export type ErrorType = 'invalid_request_error' | 'not_found_error' | 'server_error' | 'service_unavailable' | 'requests';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  toResponse(): Response {
    return Response.json(
      { error: { message: this.message, type: this.type, param: this.param, code: this.code } },
      { status: this.status },
    );
  }
}

/** The body of a 5xx: a generic message and the request id that finds the details in the log. */
export function internalErrorBody(requestId: string | undefined): { error: { message: string; type: ErrorType; param: null; code: null } } {
  const id = requestId ? ` (request id ${requestId})` : '';
  return {
    error: { message: `The server had an error while processing your request.${id}`, type: 'server_error', param: null, code: null },
  };
}
