/** The official `openai` client, pointed at the worker over real HTTP, works unchanged. */
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTinyBundle, tempDir } from './helpers/fixtures.ts';
import { serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const dir = tempDir();
let worker: RunningWorker;
let client: OpenAI;

beforeAll(async () => {
  worker = await startWorker();
  await serveBundle(worker, await buildTinyBundle(dir.path, 'meki', { reference: false }), 'tiny-meki');
  client = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: 'not-needed-locally', maxRetries: 0 });
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

it('streams a chat completion and reads it back', async () => {
  const stream = await client.chat.completions.create({
    model: 'tiny-meki',
    messages: [{ role: 'user', content: 'Say something about the harbor.' }],
    max_tokens: 10,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let finish: string | null = null;
  let completionTokens = 0;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    completionTokens = chunk.usage?.completion_tokens ?? completionTokens;
  }
  expect(finish).toMatch(/^(length|stop)$/);
  expect(completionTokens).toBeGreaterThan(0);
  const whole = await client.chat.completions.create({
    model: 'tiny-meki',
    messages: [{ role: 'user', content: 'Say something about the harbor.' }],
    max_tokens: 10,
    temperature: 0,
  });
  expect(whole.choices[0].message.content).toBe(text);
});

it('lists models and surfaces API errors as the client expects', async () => {
  const models = await client.models.list();
  expect(models.data.map((m) => m.id)).toContain('tiny-meki');
  const error = await client.completions.create({ model: 'nope', prompt: 'x' }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  expect((error as InstanceType<typeof OpenAI.NotFoundError>).message).toMatch(/does not exist/);
});
