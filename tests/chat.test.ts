/**
 * The chat endpoint in real workerd: the checkpoint's Jinja chat template, flexmem's default
 * transcript with its implicit stop, system and multi-turn messages, stop strings (streamed, and as
 * a plain string), and max_completion_tokens. Each claim is paired with a control that would fail
 * if the claim did not hold.
 *
 * Two bundles of one checkpoint: `plain` (no template: the default transcript) and `templated` (a
 * tokenizer_config.json chat_template). The same weights, so the same prompt tokens give the same
 * text in both. The checkpoint's tokenizer has one token, id STOP_TOKEN, that reads " OK.\nUser:",
 * so a logit_bias can make the model write the default transcript's stop sequence.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../cli/build-bundle.ts';
import { tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';
import { readAllEvents } from './helpers/sse.ts';
import { post, serveBundle, startWorker, type RunningWorker } from './helpers/worker.ts';

const dir = tempDir();
let worker: RunningWorker;
let STOP_TOKEN: number;

const TEMPLATE =
  '{% for message in messages %}<|{{ message.role }}|>{{ message.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}';

beforeAll(async () => {
  const checkpoint = join(dir.path, 'checkpoint');
  writeTinyCheckpoint(checkpoint, 'meki');
  // The last merge's token becomes " OK.\nUser:" (byte-level: Ġ is a space, Ċ a newline); without
  // its merge rule, encoding never produces it, but the model can generate it.
  const tokenizer = JSON.parse(readFileSync(join(checkpoint, 'tokenizer.json'), 'utf8'));
  const [last, id] = Object.entries(tokenizer.model.vocab as Record<string, number>).sort((a, b) => b[1] - a[1])[0];
  expect(tokenizer.model.merges.at(-1).replace(' ', '')).toBe(last);
  tokenizer.model.merges.pop();
  delete tokenizer.model.vocab[last];
  tokenizer.model.vocab['ĠOK.ĊUser:'] = id;
  STOP_TOKEN = id;
  writeFileSync(join(checkpoint, 'tokenizer.json'), JSON.stringify(tokenizer));
  const options = { dtype: 'f32', reference: false, progress: false } as const;
  const plain = join(dir.path, 'plain');
  await buildBundle(checkpoint, plain, options);
  writeFileSync(join(checkpoint, 'tokenizer_config.json'), JSON.stringify({ chat_template: TEMPLATE }));
  const templated = join(dir.path, 'templated');
  await buildBundle(checkpoint, templated, options);
  worker = await startWorker();
  await serveBundle(worker, plain, 'plain');
  await serveBundle(worker, templated, 'templated');
});
afterAll(async () => {
  await worker?.dispose();
  dir.remove();
});

type Message = { role: string; content: string };
const user = (content: string): Message => ({ role: 'user', content });

async function call(path: string, body: object): Promise<Record<string, any>> {
  const response = await post(`${worker.url}${path}`, body);
  const json = await response.json();
  expect(response.status, JSON.stringify(json)).toBe(200);
  return json;
}
const tokenize = async (model: string, input: { prompt: string } | { messages: Message[] }) =>
  (await call('/tokenize', { model, ...input })).tokens as number[];
const chat = (model: string, messages: Message[], extra: object = {}) =>
  call('/v1/chat/completions', { model, messages, temperature: 0, max_tokens: 8, ...extra });
const complete = (model: string, prompt: string, extra: object = {}) =>
  call('/v1/completions', { model, prompt, temperature: 0, max_tokens: 8, ...extra });
/** A streamed request: the text of its deltas, and its finish reason. */
async function streamed(path: string, body: object): Promise<{ text: string; finish: string }> {
  const events = await readAllEvents(await post(`${worker.url}${path}`, { ...body, stream: true }));
  expect(events.at(-1)).toBe('[DONE]');
  const choices = (events.slice(0, -1) as Record<string, any>[]).map((e) => e.choices[0]).filter(Boolean);
  const text = choices.map((c) => c.delta?.content ?? c.text ?? '').join('');
  return { text, finish: choices.find((c) => c.finish_reason)!.finish_reason };
}

describe("a checkpoint's Jinja chat template", () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, user('Tell me about the harbor.')];
  const rendered = '<|system|>Be brief.\n<|user|>Tell me about the harbor.\n<|assistant|>';

  it('is the prompt of the chat endpoint: its tokens, its usage, its completion', async () => {
    const tokens = await tokenize('templated', { messages });
    expect(tokens).toEqual(await tokenize('templated', { prompt: rendered }));
    const answer = await chat('templated', messages);
    expect(answer.usage.prompt_tokens).toBe(tokens.length);
    expect(answer.choices[0].message.content).toBe((await complete('templated', rendered)).choices[0].text);
  });

  it('control: the same checkpoint without the template renders the default transcript instead', async () => {
    const transcript = 'Be brief.\n\nUser: Tell me about the harbor.\nAssistant:';
    const tokens = await tokenize('plain', { messages });
    expect(tokens).toEqual(await tokenize('plain', { prompt: transcript }));
    expect(tokens).not.toEqual(await tokenize('templated', { messages }));
    const answer = await chat('plain', messages);
    expect(answer.usage.prompt_tokens).toBe(tokens.length);
    expect(answer.choices[0].message.content).toBe((await complete('plain', transcript)).choices[0].text);
    expect(answer.choices[0].message.content).not.toBe((await chat('templated', messages)).choices[0].message.content);
  });
});

describe('the default transcript', () => {
  it('renders system (and developer) text, then every turn, and ends with "Assistant:"', async () => {
    const turns = [user('Hi'), { role: 'assistant', content: 'Hello.' }, user('Tell me more')];
    const cases: [Message[], string][] = [
      [[{ role: 'system', content: 'Be brief.' }, ...turns], 'Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Tell me more\nAssistant:'],
      [[{ role: 'developer', content: 'Be brief.' }, ...turns], 'Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Tell me more\nAssistant:'],
      // Controls: without the system message, or with the turns in another order, another prompt.
      [turns, 'User: Hi\nAssistant: Hello.\nUser: Tell me more\nAssistant:'],
      [[turns[2], turns[1], turns[0]], 'User: Tell me more\nAssistant: Hello.\nUser: Hi\nAssistant:'],
    ];
    const seen = new Set<string>();
    for (const [messages, transcript] of cases) {
      const tokens = await tokenize('plain', { messages });
      expect(tokens).toEqual(await tokenize('plain', { prompt: transcript }));
      seen.add(tokens.join());
    }
    expect(seen.size).toBe(3); // system and developer render alike; the others differ
    // The chat completion continues exactly that prompt.
    const [messages, transcript] = cases[0];
    const continued = (await complete('plain', transcript, { max_tokens: 12 })).choices[0].text;
    expect(continued).not.toContain('\nUser:');
    expect((await chat('plain', messages, { max_tokens: 12 })).choices[0].message.content).toBe(continued);
  });

  it('ends the answer where the model starts the next "\\nUser:" turn, keeping the text before it', async () => {
    const forced = { logit_bias: { [STOP_TOKEN]: 100 }, max_tokens: 5 };
    const messages = [user('Hi')];
    const answer = await chat('plain', messages, forced);
    expect(answer.choices[0]).toMatchObject({ message: { content: ' OK.' }, finish_reason: 'stop' });
    expect(answer.usage.completion_tokens).toBe(1);
    expect(await streamed('/v1/chat/completions', { model: 'plain', messages, temperature: 0, ...forced })).toEqual({
      text: ' OK.',
      finish: 'stop',
    });
    // Controls: the model did write the stop sequence, and only the default transcript stops at it.
    const fiveTimes = ' OK.\nUser:'.repeat(5);
    const raw = await complete('plain', 'User: Hi\nAssistant:', forced);
    expect(raw.choices[0]).toMatchObject({ text: fiveTimes, finish_reason: 'length' });
    const templated = await chat('templated', messages, forced);
    expect(templated.choices[0]).toMatchObject({ message: { content: fiveTimes }, finish_reason: 'length' });
  });
});

describe('stop strings', () => {
  const prompt = 'The President said';
  let full: string;
  let stop: string;
  beforeAll(async () => {
    full = (await complete('plain', prompt, { max_tokens: 24 })).choices[0].text;
    // Three characters from the middle of the text, most likely across a token boundary.
    stop = full.slice(9, 12);
    expect(full.indexOf(stop)).toBeGreaterThan(0);
  });

  it('cut a streamed completion before the stop, which is never sent, as an array or a plain string', async () => {
    const request = { model: 'plain', prompt, temperature: 0, max_tokens: 24 };
    const expected = { text: full.slice(0, full.indexOf(stop)), finish: 'stop' };
    expect(await streamed('/v1/completions', { ...request, stop: [stop] })).toEqual(expected);
    expect(await streamed('/v1/completions', { ...request, stop })).toEqual(expected);
    expect((await complete('plain', prompt, { max_tokens: 24, stop })).choices[0]).toMatchObject({
      text: expected.text,
      finish_reason: 'stop',
    });
    // Control: without the stop, the stream carries the whole text, the stop string included.
    expect(await streamed('/v1/completions', request)).toEqual({ text: full, finish: 'length' });
  });

  it('cut a streamed chat answer too, with stop as a plain string', async () => {
    const messages = [user('Hi')];
    const whole = (await chat('plain', messages, { max_tokens: 16 })).choices[0].message.content as string;
    const chatStop = whole.slice(6, 9);
    expect(whole.indexOf(chatStop)).toBeGreaterThan(0);
    const body = { model: 'plain', messages, temperature: 0, max_tokens: 16 };
    expect(await streamed('/v1/chat/completions', { ...body, stop: chatStop })).toEqual({
      text: whole.slice(0, whole.indexOf(chatStop)),
      finish: 'stop',
    });
    expect(await streamed('/v1/chat/completions', body)).toEqual({ text: whole, finish: 'length' });
  });
});

describe('max_completion_tokens', () => {
  const messages = [user('Tell me about the harbor.')];

  it('limits the answer, and takes precedence over max_tokens', async () => {
    const ten = await chat('plain', messages, { max_tokens: 10 });
    expect(ten.usage.completion_tokens).toBe(10); // control: max_tokens alone gives its 10
    expect(ten.choices[0].finish_reason).toBe('length');
    for (const limits of [{ max_completion_tokens: 3 }, { max_tokens: 10, max_completion_tokens: 3 }]) {
      const three = await call('/v1/chat/completions', { model: 'plain', messages, temperature: 0, ...limits });
      expect(three.usage.completion_tokens).toBe(3);
      expect(three.choices[0].finish_reason).toBe('length');
      expect(ten.choices[0].message.content.startsWith(three.choices[0].message.content)).toBe(true);
      expect(three.choices[0].message.content.length).toBeLessThan(ten.choices[0].message.content.length);
    }
  });
});
