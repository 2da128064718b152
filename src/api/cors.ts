/**
 * CORS for browser clients, from CORS_ORIGINS: Hono's middleware, set up once per settings. It runs
 * before the key check (a preflight carries no key) and sets its headers on the context's response
 * before the routes run; Hono copies them onto whatever response follows, errors, 401s and streams
 * included.
 */
import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { InternalError } from '../errors.ts';
import type { AccessSettings } from './access.ts';
import { type ApiHost, OVERRIDES_HEADER, REQUEST_ID_HEADER, VERSION_HEADER } from './host.ts';

/** Chromium caps a preflight's cache at two hours; a longer max-age buys nothing there. */
const PREFLIGHT_MAX_AGE_SECONDS = 7200;

const configured = new WeakMap<AccessSettings, MiddlewareHandler>();

export const corsHeaders: MiddlewareHandler<{ Variables: { host: ApiHost } }> = (c, next) => {
  const { access } = c.var.host;
  if (access.corsOrigins.length === 0) return next();
  let middleware = configured.get(access);
  if (!middleware) {
    middleware = cors({
      // A list is matched exactly and the matching origin reflected, with `Vary: Origin`.
      origin: access.corsOrigins === '*' ? '*' : [...access.corsOrigins],
      allowMethods: ['GET', 'POST'],
      // No allowHeaders: the preflight's requested headers are allowed, so authorization and
      // content-type, and the x-stainless-* headers the official SDKs send from a browser.
      exposeHeaders: [REQUEST_ID_HEADER, VERSION_HEADER, OVERRIDES_HEADER, 'server-timing'],
      maxAge: PREFLIGHT_MAX_AGE_SECONDS,
    });
    configured.set(access, middleware);
  }
  return middleware(c, next);
};

/** CORS_ORIGINS: comma-separated origins (`https://app.example.com`), or `*`; unset or blank for none. */
export function parseCorsOrigins(list: string): '*' | string[] {
  const entries = list
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.includes('*')) return '*';
  return entries.map((entry) => {
    const origin = originOf(entry);
    if (origin === null)
      throw new InternalError(`CORS_ORIGINS entry ${JSON.stringify(entry)} is not an origin like https://app.example.com`);
    return origin;
  });
}

/** The origin as browsers send it (scheme, host, port if not the default), or null for anything with a path or query. */
function originOf(entry: string): string | null {
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return null;
  }
  const bare = url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password;
  return bare && (url.protocol === 'https:' || url.protocol === 'http:') ? url.origin : null;
}
