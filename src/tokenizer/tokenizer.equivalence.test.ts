/**
 * TextTokenizer keeps added tokens out of @huggingface/tokenizers (added-tokens.ts) and follows
 * the library's encode and decode around them. Here it must give exactly what the library alone
 * gives (LibraryTokenizer, TextTokenizer as it was): encode, decode and tokenBytes, on the demo
 * tokenizers, on the 32,768-id tokenizer `flexmem init` makes, and on tokenizers built to reach
 * each added-token rule (lstrip / rstrip, normalized tokens, longest match, duplicates). The
 * controls compare against a library tokenizer that differs slightly, to show a difference is seen.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { trainByteLevelBpe } from './byte-level-bpe.ts';
import { LibraryTokenizer } from './library-tokenizer.ts';
import { SAMPLE_TEXT } from './sample-text.ts';
import { TextTokenizer } from './tokenizer.ts';

type Json = Record<string, unknown> & { added_tokens: AddedJson[]; model: Record<string, unknown> };
interface AddedJson {
  id: number;
  content: string;
  special: boolean;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
}

const VALID = readFileSync('training/data/valid.txt', 'utf8');
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Json;
const clone = (json: Json) => structuredClone(json);
const added = (id: number, content: string, special: boolean, more: Partial<AddedJson> = {}): AddedJson => ({
  id,
  content,
  special,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: !special,
  ...more,
});

/** A seeded generator (mulberry32), so a failure can be reproduced. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UNICODE = [
  '🎉',
  '👩‍👩‍👧',
  '🇫🇷',
  '日本語のテキスト',
  '中文',
  '한국어',
  'e\u0301',
  'a\u0308\u0323',
  'Ω',
  'ﬁ',
  'Ａ',
  'ß',
  'İ',
  '\u200b',
  '\ufeff',
  '\u00a0',
  'ئ',
  'עברית',
  '\ud83d',
  '\udc00x',
];
const WHITESPACE = [' ', '  ', '   ', '\t', '\n', '\n\n', ' \n ', '\r\n', '\t \t', '        '];

/** Random text: words of valid.txt, unicode, whitespace runs and pieces of special tokens, mixed. */
function randomTexts(seed: number, count: number, specials: string[]): string[] {
  const next = random(seed);
  const words = VALID.slice(0, 50_000).split(/\s+/).filter(Boolean);
  const pieces = [...UNICODE, ...WHITESPACE, '<|', '|>', '<', '>', '|', 'reserved_', "'s", "'ll", '123', '4.5', '--', '...', '"'];
  const pick = <T>(list: T[]) => list[Math.floor(next() * list.length)];
  return Array.from({ length: count }, () => {
    let text = '';
    const length = Math.floor(next() * 40);
    for (let i = 0; i < length; i++) {
      const r = next();
      if (r < 0.45) text += pick(words);
      else if (r < 0.65) text += pick(WHITESPACE);
      else if (r < 0.8) text += pick(pieces);
      else if (r < 0.9 && specials.length > 0) text += pick(specials);
      else text += String.fromCodePoint(Math.floor(next() * 0x3000));
    }
    return text;
  });
}

/** Texts every tokenizer is checked on. */
function texts(specials: string[], seed = 1): string[] {
  const fixed = [
    '',
    ' ',
    '\n',
    'a',
    ...WHITESPACE,
    ...UNICODE,
    SAMPLE_TEXT,
    'Hello, World!  \t\n e\u0301 \ufb01 \uff21 \u00df \u0130 \u{1f600}',
    "don't stop , ok ? it's 1,234.56 -- done...",
    ...specials,
    specials.join(''),
    specials.map((s) => ` ${s} `).join('x'),
    specials.map((s) => `\t${s}\n`).join('  '),
    specials.map((s) => s.slice(0, -1)).join(' '),
    specials.map((s) => `${s}${s.slice(1)}`).join(''),
  ];
  const chunks: string[] = [];
  for (let at = 0; at < 200_000; at += 20_000) chunks.push(VALID.slice(at, at + 20_000));
  return [...fixed, ...chunks, ...randomTexts(seed, 300, specials)];
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const outcome = <T>(run: () => T): T | string => {
  try {
    return run();
  } catch (error) {
    return `throws ${(error as Error).message}`;
  }
};

/** Where `ours` and `reference` differ: encode of each text, decode of encodings and id runs, tokenBytes of every id. */
function differences(ours: TextTokenizer, reference: LibraryTokenizer, inputs: string[], idRange: number, seed = 2): string[] {
  // The library's decode scans every special token per token: with 32,000 of them, long texts take minutes.
  const decodeUpTo = idRange > 10_000 ? 2_000 : Number.POSITIVE_INFINITY;
  const found: string[] = [];
  const note = (what: string) => {
    if (found.length < 5) found.push(what);
  };
  for (const text of inputs) {
    const a = ours.encode(text);
    const b = reference.encode(text);
    if (JSON.stringify(a) !== JSON.stringify(b))
      note(`encode ${JSON.stringify(text.slice(0, 80))}: ${a.slice(0, 12)} vs ${b.slice(0, 12)}`);
    if (b.length > 0 && text.length <= decodeUpTo && outcome(() => ours.decode(b)) !== outcome(() => reference.decode(b)))
      note(`decode of ${JSON.stringify(text.slice(0, 80))}`);
  }
  const next = random(seed);
  const idRuns: number[][] = [[], [1.5], [-1], [idRange + 10], [0, -1, idRange + 3, 2]];
  for (let r = 0; r < 300; r++) idRuns.push(Array.from({ length: 1 + Math.floor(next() * 12) }, () => Math.floor(next() * idRange)));
  for (const ids of idRuns) {
    if (outcome(() => ours.decode(ids)) !== outcome(() => reference.decode(ids))) note(`decode [${ids}]`);
  }
  for (let id = 0; id < idRange; id++) {
    if (!same(ours.tokenBytes(id), reference.tokenBytes(id))) note(`tokenBytes(${id})`);
  }
  return found;
}

function check(json: Json, inputs: string[], control?: Json): { equal: string[]; control: string[] } {
  const ids = Math.max(...Object.values((json.model.vocab ?? {}) as Record<string, number>), ...json.added_tokens.map((t) => t.id), 0) + 3;
  const ours = new TextTokenizer(clone(json));
  return {
    equal: differences(ours, new LibraryTokenizer(clone(json)), inputs, ids),
    control: control ? differences(ours, new LibraryTokenizer(clone(control)), inputs, ids) : [],
  };
}

/** The same tokenizer without its last added token, for a control. */
function withoutLastAdded(json: Json): Json {
  const copy = clone(json);
  copy.added_tokens = copy.added_tokens.slice(0, -1);
  return copy;
}

const specialsOf = (json: Json) => json.added_tokens.map((t) => t.content);

describe.each(['flex', 'meki'])('the demo tokenizer of %s', (model) => {
  const json = readJson(`models/${model}/tokenizer.json`);
  json.added_tokens.push(
    added(json.added_tokens.length + 4096, '<|user|>', true),
    added(json.added_tokens.length + 4097, ' Congress', false),
  );

  it('encodes, decodes and gives token bytes as the library does', () => {
    const result = check(json, texts(specialsOf(json)), withoutLastAdded(json));
    expect(result.equal).toEqual([]);
    expect(result.control.length, 'control: without " Congress" as an added token').toBeGreaterThan(0);
  });

  it('encodes the whole validation text as the library does', () => {
    const ours = new TextTokenizer(clone(json)).encode(VALID);
    const reference = new LibraryTokenizer(clone(json)).encode(VALID);
    expect(ours.length).toBeGreaterThan(150_000);
    expect(ours).toEqual(reference);
  });
});

describe('the tokenizer flexmem init makes for 32,768 ids (mostly reserved special tokens)', () => {
  const json = trainByteLevelBpe(SAMPLE_TEXT, 32_768).json as Json;

  it('has the reserved tokens as added special tokens', () => {
    expect(json.added_tokens.length).toBeGreaterThan(30_000);
    expect(json.added_tokens.at(-1)).toMatchObject({ id: 32_767, special: true });
  });

  it('encodes, decodes and gives token bytes as the library does', () => {
    const specials = [
      '<|endoftext|>',
      '<|reserved_0|>',
      '<|reserved_9|>',
      '<|reserved_10|>',
      '<|reserved_31999|>',
      '<|reserved_32014|>',
      '<|reserved_32015|>',
    ];
    const control = clone(json);
    control.added_tokens = control.added_tokens.filter((t) => t.content !== '<|reserved_10|>');
    const result = check(json, texts(specials, 3), control);
    expect(result.equal).toEqual([]);
    expect(result.control.length, 'control: without <|reserved_10|>').toBeGreaterThan(0);
  });

  it('encodes the whole validation text as the library does, and decodes it back', () => {
    const ours = new TextTokenizer(clone(json));
    const ids = ours.encode(VALID);
    expect(ids).toEqual(new LibraryTokenizer(clone(json)).encode(VALID));
    // The library's decode takes minutes here (a scan of 32,016 special tokens per token): compare with
    // the text, less the <|endoftext|> between documents that decoding skips as special.
    const expected = VALID.replaceAll('<|endoftext|>', '');
    expect(expected.length).toBeLessThan(VALID.length);
    expect(ours.decode(ids) === expected, 'decode(encode(valid.txt))').toBe(true);
  });

  it('is not a tokenizer with fewer merges (control on the BPE model)', () => {
    const control = clone(json);
    control.model.merges = (control.model.merges as string[]).slice(0, -1);
    const result = check(json, [SAMPLE_TEXT], control);
    expect(result.control.length).toBeGreaterThan(0);
  });
});

describe('added tokens with every option, on the byte-level tokenizer of 400 ids', () => {
  const base = trainByteLevelBpe(SAMPLE_TEXT, 400).json as Json;
  const variants: Record<string, Json> = {
    'lstrip and rstrip, special and not': {
      ...clone(base),
      added_tokens: [
        ...base.added_tokens,
        added(400, '<mask>', true, { lstrip: true }),
        added(401, '<sep>', true, { rstrip: true }),
        added(402, '[both]', false, { lstrip: true, rstrip: true }),
      ],
    },
    'the longest of overlapping tokens, and a token inside another': {
      ...clone(base),
      added_tokens: [
        ...base.added_tokens,
        added(400, '<|a|>', true),
        added(401, '<|a|>b', false),
        added(402, '<|', false),
        added(403, 'a|>', true),
      ],
    },
    'duplicate contents and ids, and a token that is also in the vocabulary': {
      ...clone(base),
      added_tokens: [
        ...base.added_tokens,
        added(400, '<x>', true),
        added(401, '<x>', false),
        added(402, '<y>', false),
        added(402, '<z>', true),
        added(403, 'Ġthe', true),
        added(404, 'the', false),
      ],
    },
    'tokens normalized by a lowercasing normalizer': {
      ...clone(base),
      normalizer: { type: 'Lowercase' },
      added_tokens: [
        ...base.added_tokens,
        added(400, 'HeLLo', false, { normalized: true }),
        added(401, 'World', false, { normalized: false }),
        added(402, '<Up>', true, { normalized: true }),
      ],
    },
    'an empty added token': { ...clone(base), added_tokens: [...base.added_tokens, added(400, '', false), added(401, '', true)] },
    'no added tokens at all': { ...clone(base), added_tokens: [] },
  };

  it.each(Object.keys(variants))('%s', (name) => {
    const json = variants[name];
    const specials = [
      ...specialsOf(json),
      '<|a|>bb',
      'HELLO',
      'hello',
      'WORLD',
      '<up>',
      '<UP>',
      ' <mask> ',
      ' <sep> ',
      ' [both] ',
      'the the',
    ];
    const result = check(json, texts(specials, 5), withoutLastAdded(json));
    expect(result.equal).toEqual([]);
    if (json.added_tokens.length > 0 && json.added_tokens.at(-1)!.content !== '')
      expect(result.control.length, 'control').toBeGreaterThan(0);
  });
});

describe('tokenizers that are not byte-level BPE', () => {
  const metaspace: Json = {
    version: '1.0',
    // 'c' is matched before lowercasing only: in 'Cab' the BPE model meets it, and keeps it as a token it knows.
    added_tokens: [
      added(0, '<unk>', true),
      added(7, '<s>', true),
      added(8, '[plain]', false, { lstrip: true }),
      added(9, 'c', false, { normalized: false }),
    ],
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
    post_processor: null,
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      fuse_unk: true,
      byte_fallback: false,
      vocab: { '<unk>': 0, '▁': 1, a: 2, b: 3, '▁a': 4, ab: 5, '▁ab': 6 },
      merges: ['▁ a', 'a b', '▁a b'],
    },
  };
  const wordLevel: Json = {
    version: '1.0',
    // 'raw' is matched before lowercasing only: in 'Raw wörld' it reaches the model.
    added_tokens: [
      added(3, '<s>', true),
      added(4, 'plain', false),
      added(5, 'Hello', false, { normalized: true }),
      added(6, 'raw', false, { normalized: false }),
    ],
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: { hello: 0, wörld: 1, '[UNK]': 2, '<s>': 3 }, unk_token: '[UNK]' },
  };

  it.each([
    ['Metaspace BPE with unk and fuse_unk (the section index matters)', metaspace],
    ['word level with a lowercasing normalizer', wordLevel],
  ])('%s', (_name, json) => {
    const specials = ['<s>', '[plain]', 'plain', 'Hello', 'hello wörld', 'ab a b', 'xyz', 'RAW', 'raw', 'Raw wörld', 'Cab', 'CAB ab C'];
    const result = check(json, texts(specials, 7), withoutLastAdded(json));
    expect(result.equal).toEqual([]);
    expect(result.control.length, 'control').toBeGreaterThan(0);
  });
});
