/**
 * Requests per API key, or per client address when the deployment is anonymous, through the
 * platform's rate limiter (Cloudflare's rate-limiting binding: a counter per key and location,
 * `simple = { limit, period }` in wrangler.toml). Without a limiter there is no limit.
 */
import type { MiddlewareHandler } from 'hono';
import { ApiError } from './errors.ts';
import type { ApiHost } from './host.ts';

/** The rate-limiting binding's API (workerd's `RateLimit`). */
export interface RateLimiter {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export interface RateLimitSettings {
  limiter: RateLimiter;
  /** The limiter's period: a client refused now may be counted afresh within it (Retry-After). */
  periodSeconds: number;
}

export const rateLimited: MiddlewareHandler<{ Variables: { host: ApiHost } }> = async (c, next) => {
  const { rateLimit, access } = c.var.host;
  if (!rateLimit) return next();
  // Without configured keys a bearer value is never checked, so a client could send a fresh one
  // per request: it is counted by address then. With keys, requireApiKey has already checked it.
  const bearer = access.keys.count > 0 ? /^bearer\s+(.+)$/is.exec(c.req.header('authorization')?.trim() ?? '')?.[1].trim() : undefined;
  const key = bearer ? `key:${await digest(bearer)}` : `ip:${addressKey(c.req.header('cf-connecting-ip'))}`;
  let allowed = true;
  try {
    allowed = (await rateLimit.limiter.limit({ key })).success;
  } catch (error) {
    // A limiter that fails must not take the API down with it: the request goes through.
    console.error('rate limiter failed; request let through:', error);
  }
  if (allowed) return next();
  // OpenAI's 429 for too many requests: type "requests", code "rate_limit_exceeded".
  const response = new ApiError(
    429,
    `Rate limit reached for requests. Please try again in ${rateLimit.periodSeconds}s.`,
    'requests',
    null,
    'rate_limit_exceeded',
  ).toResponse();
  response.headers.set('retry-after', String(rateLimit.periodSeconds));
  return response;
};

/** A key never leaves the worker as itself: the limiter sees its SHA-256 (128 bits are plenty to tell keys apart). */
async function digest(key: string): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(key)));
  return Array.from(hash.subarray(0, 16), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The address a client is counted under: an IPv4 address, or the /64 of an IPv6 one, since one
 * IPv6 subscriber is usually handed a whole /64 and could otherwise change address per request.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown';
  if (!address.includes(':')) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  const [head, tail = ''] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
