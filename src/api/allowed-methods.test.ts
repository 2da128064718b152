import { Hono } from 'hono';
import { expect, it } from 'vitest';
import { methodNotAllowed } from './allowed-methods.ts';

const app = new Hono();
app.use(async (_c, next) => next());
app.get('/v1/models', (c) => c.text('list'));
app.get('/v1/models/:id', (c) => c.text('one'));
app.delete('/v1/models/:id', (c) => c.text('gone'));
app.post('/v1/completions', (c) => c.text('done'));
app.all('/anything', (c) => c.text('any'));
const ask = (method: string, path: string) => methodNotAllowed(app.routes, new Request(`http://x${path}`, { method }));

it('a known path asked with another method is a 405 listing the methods it serves', async () => {
  const response = ask('GET', '/v1/completions')!;
  expect(response.status).toBe(405);
  expect(response.headers.get('allow')).toBe('POST');
  expect((await response.json()).error).toEqual({
    message: 'Method GET is not allowed on /v1/completions. Allowed: POST.',
    type: 'invalid_request_error',
    param: null,
    code: 'method_not_allowed',
  });
  expect(ask('POST', '/v1/models/m1')!.headers.get('allow')).toBe('GET, HEAD, DELETE');
  expect(ask('PUT', '/v1/models')!.headers.get('allow')).toBe('GET, HEAD');
});

it('an unknown path is not a 405: middleware and catch-alls name no route', () => {
  for (const path of ['/v1/models/a/b', '/v2/models', '/', '/anything/else']) expect(ask('GET', path)).toBeNull();
});
