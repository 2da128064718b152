/** Errors in OpenAI's JSON shape: { error: { message, type, param, code } }. */
export type ErrorType = 'invalid_request_error' | 'not_found_error' | 'server_error' | 'service_unavailable';

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
    return Response.json({ error: { message: this.message, type: this.type, param: this.param, code: this.code } }, { status: this.status });
  }
}
