import { describe, expect, it } from 'vitest';
import { InternalError } from '../errors.ts';
import { parseCorsOrigins } from './cors.ts';

describe('parseCorsOrigins', () => {
  it('reads a list of origins as browsers send them', () => {
    expect(parseCorsOrigins('')).toEqual([]);
    expect(parseCorsOrigins(' https://App.example.com/ , http://localhost:5173,https://x.example:443')).toEqual([
      'https://app.example.com',
      'http://localhost:5173',
      'https://x.example',
    ]);
  });

  it('reads * as any origin', () => {
    expect(parseCorsOrigins('*')).toBe('*');
    expect(parseCorsOrigins('https://a.example, *')).toBe('*');
  });

  it('refuses what is not an origin', () => {
    for (const entry of ['app.example.com', 'https://a.example/path', 'https://a.example?q', 'ftp://a.example', 'null'])
      expect(() => parseCorsOrigins(entry)).toThrow(InternalError);
  });
});
