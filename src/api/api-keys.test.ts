import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { InternalError } from '../errors.ts';
import { ApiKeys, redactKey } from './api-keys.ts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('ApiKeys', () => {
  it('accepts each plain and each sha256-configured key, and nothing else', async () => {
    const keys = ApiKeys.parse(` alpha-key ,, sha256:${sha256('beta-key').toUpperCase()},SHA256:${sha256('gamma-key')} `);
    expect(keys.count).toBe(3);
    for (const key of ['alpha-key', 'beta-key', 'gamma-key']) expect(await keys.accepts(key)).toBe(true);
    for (const key of ['', 'alpha', 'alpha-key ', 'beta-keyx', `sha256:${sha256('beta-key')}`, 'x'.repeat(10_000)])
      expect(await keys.accepts(key)).toBe(false);
  });

  it('blank lists hold no keys', async () => {
    for (const list of ['', ' ', ', ,']) expect(ApiKeys.parse(list).count).toBe(0);
    expect(await ApiKeys.parse('').accepts('anything')).toBe(false);
  });

  it('refuses a malformed digest entry without echoing it', () => {
    for (const entry of ['sha256:abc', `sha256:${sha256('k').slice(1)}g`, 'sha256:']) {
      const error = (() => {
        try {
          ApiKeys.parse(`plain, ${entry}`);
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(InternalError);
      expect((error as Error).message).toBe('API_KEYS entry 2 is not sha256: followed by 64 hex digits');
    }
  });
});

it('redactKey shows at most 7 characters of a long key, none of a short one', () => {
  expect(redactKey('sk-0123456789abcdef')).toBe('sk-****cdef');
  expect(redactKey('short-key')).toBe('****');
});
