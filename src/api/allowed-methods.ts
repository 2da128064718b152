/** 405 for a known route asked with a method it does not serve, with the `Allow` header HTTP asks for. */
import type { RouterRoute } from 'hono/types';
import { ApiError } from './errors.ts';

/** The answer when `request`'s path is a route of another method, or null when the path is unknown. */
export function methodNotAllowed(routes: readonly RouterRoute[], request: Request): Response | null {
  const path = new URL(request.url).pathname;
  const allowed = new Set<string>();
  for (const route of routes) {
    // ALL entries are middleware or catch-alls, and wildcard paths match everything: neither names a route.
    if (route.method === 'ALL' || route.path.includes('*') || !patternOf(route.path).test(path)) continue;
    allowed.add(route.method);
    if (route.method === 'GET') allowed.add('HEAD'); // Hono answers HEAD with the GET route
  }
  if (allowed.size === 0) return null;
  const allow = [...allowed].join(', ');
  const response = new ApiError(
    405,
    `Method ${request.method} is not allowed on ${path}. Allowed: ${allow}.`,
    'invalid_request_error',
    null,
    'method_not_allowed',
  ).toResponse();
  response.headers.set('allow', allow);
  return response;
}

/** A route path as a regular expression; `:name` matches one segment. */
function patternOf(path: string): RegExp {
  const segments = path.split('/').map((s) => (s.startsWith(':') ? '[^/]+' : s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^${segments.join('/')}$`);
}
