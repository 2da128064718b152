import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { ApiKeys } from './api-keys.ts';
import type { ApiHost } from './host.ts';
import { addressKey, rateLimited, type RateLimiter } from './rate-limit.ts';

/** A limiter that lets everything through and records the keys it was asked about. */
function recording(keys: string[]): RateLimiter {
  return {
    limit: async ({ key }) => {
      keys.push(key);
      return { success: true };
    },
  };
}

/** An app with only the limiter in front of one route; `keys` as the API_KEYS secret would be. */
function appWith(limiter: RateLimiter, keys = '') {
  const host = { access: { keys: ApiKeys.parse(keys) }, rateLimit: { limiter, periodSeconds: 10 } } as unknown as ApiHost;
  const app = new Hono<{ Variables: { host: ApiHost } }>();
  app.use(async (c, next) => {
    c.set('host', host);
    await next();
  });
  app.post('/v1/completions', rateLimited, (c) => c.text('ok'));
  return app;
}

const request = (headers: Record<string, string>) => new Request('http://worker.test/v1/completions', { method: 'POST', headers });

describe('rateLimited', () => {
  it('counts a request under the SHA-256 of its checked key, never the key itself', async () => {
    const keys: string[] = [];
    const app = appWith(recording(keys), 'sk-one,sk-two');
    await app.request(request({ authorization: 'Bearer sk-one', 'cf-connecting-ip': '203.0.113.9' }));
    await app.request(request({ authorization: 'bearer  sk-two ', 'cf-connecting-ip': '203.0.113.9' }));
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^key:[0-9a-f]{32}$/);
    expect(keys[1]).not.toBe(keys[0]);
    expect(keys.join()).not.toContain('sk-');
  });

  it('counts by client address when the deployment is anonymous, whatever bearer value is sent', async () => {
    const keys: string[] = [];
    const app = appWith(recording(keys));
    await app.request(request({ authorization: 'Bearer fresh-1', 'cf-connecting-ip': '203.0.113.9' }));
    await app.request(request({ authorization: 'Bearer fresh-2', 'cf-connecting-ip': '203.0.113.9' }));
    expect(keys).toEqual(['ip:203.0.113.9', 'ip:203.0.113.9']);
  });

  it("answers a refused request with OpenAI's 429 and Retry-After", async () => {
    const response = await appWith({ limit: async () => ({ success: false }) }).request(request({}));
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('10');
    expect(await response.json()).toEqual({
      error: {
        message: 'Rate limit reached for requests. Please try again in 10s.',
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
  });

  it('lets a request through when the limiter itself fails', async () => {
    const original = console.error;
    console.error = () => {};
    try {
      const response = await appWith({ limit: () => Promise.reject(new Error('limiter down')) }).request(request({}));
      expect(response.status).toBe(200);
    } finally {
      console.error = original;
    }
  });
});

describe('addressKey', () => {
  it('keeps an IPv4 address, and counts an IPv6 address by its /64', () => {
    expect(addressKey('203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey('2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:DB8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(addressKey(undefined)).toBe('unknown');
  });
});
