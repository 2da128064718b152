/**
 * POST bodies must be declared JSON. A browser sends a cross-site `text/plain` (or form) POST
 * without a preflight; refusing every other type means such a request never reaches a route.
 */
import type { MiddlewareHandler } from 'hono';
import { discardBody } from './discard-body.ts';
import { ApiError } from './errors.ts';
import type { ApiHost } from './host.ts';

export const requireJsonBody: MiddlewareHandler<{ Variables: { host: ApiHost } }> = async (c, next) => {
  if (c.req.method !== 'POST') return next();
  const declared = c.req.header('content-type');
  if (declared?.split(';')[0].trim().toLowerCase() === 'application/json') return next();
  await discardBody(c.req.raw, c.var.host.limits.maxBodyBytes);
  const what = declared ? `Unsupported Content-Type '${declared.slice(0, 100)}'` : 'Missing Content-Type';
  throw new ApiError(
    415,
    `${what}: send the request body as JSON with 'Content-Type: application/json'.`,
    'invalid_request_error',
    null,
    'unsupported_media_type',
  );
};
