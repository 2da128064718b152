/**
 * Who may call the API: a key from API_KEYS as `Authorization: Bearer <key>`, on every route but
 * the open ones. Deny by default, so a route added later is protected without anyone listing it.
 */
import type { MiddlewareHandler } from 'hono';
import { type ApiKeys, redactKey } from './api-keys.ts';
import { discardBody } from './discard-body.ts';
import { ApiError } from './errors.ts';
import type { ApiHost } from './host.ts';

export interface AccessSettings {
  keys: ApiKeys;
  /** ALLOW_ANONYMOUS = "true": serve without keys when none are configured; ignored when there are keys. */
  allowAnonymous: boolean;
  /** CORS_ORIGINS: the web origins browsers may call the API from, `*` for any; empty for none. */
  corsOrigins: '*' | readonly string[];
}

/** Routes anyone may call: a load balancer's or uptime monitor's probe has no key. */
const OPEN_PATHS = new Set(['/health']);

const MISSING_KEY =
  "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";

export const requireApiKey: MiddlewareHandler<{ Variables: { host: ApiHost } }> = async (c, next) => {
  if (OPEN_PATHS.has(c.req.path)) return next();
  const { keys, allowAnonymous } = c.var.host.access;
  if (keys.count === 0) {
    if (allowAnonymous) return next();
    await discardBody(c.req.raw, c.var.host.limits.maxBodyBytes);
    // The operator's mistake, not the caller's: no key could succeed, so it is not a 401.
    throw new ApiError(
      503,
      'This deployment has no API keys configured, so it serves no requests. Set the API_KEYS secret (or ALLOW_ANONYMOUS = "true" to serve without keys).',
      'service_unavailable',
      null,
      'no_api_keys_configured',
    );
  }
  const key = bearerKey(c.req.header('authorization'));
  if (key !== null && (await keys.accepts(key))) return next();
  await discardBody(c.req.raw, c.var.host.limits.maxBodyBytes);
  return unauthorized(key === null ? MISSING_KEY : `Incorrect API key provided: ${redactKey(key)}.`);
};

/** The key of `Authorization: Bearer <key>` (the scheme is case-insensitive), or null. */
function bearerKey(header: string | undefined): string | null {
  const key = /^bearer\s+(.*)$/is.exec(header?.trim() ?? '')?.[1].trim();
  return key ? key : null;
}

function unauthorized(message: string): Response {
  const response = new ApiError(401, message, 'invalid_request_error', null, 'invalid_api_key').toResponse();
  response.headers.set('www-authenticate', 'Bearer');
  return response;
}
