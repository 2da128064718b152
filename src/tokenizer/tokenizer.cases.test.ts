import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.ts';
import { trainByteLevelBpe } from './byte-level-bpe.ts';
import { SAMPLE_TEXT } from './sample-text.ts';
import { TextTokenizer } from './tokenizer.ts';

const added = (id: number, content: string, special: boolean) => ({
  id,
  content,
  special,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
});

/** The byte-level tokenizer of 300 ids, with a special token and a plain added token beyond them that are not bytes. */
function byteLevel(extra: Record<string, unknown> = {}) {
  const json = trainByteLevelBpe(SAMPLE_TEXT, 300).json as { added_tokens: object[] };
  return new TextTokenizer({ ...json, added_tokens: [...json.added_tokens, added(300, '<|ö|>', true), added(301, 'a€', false)], ...extra });
}

/** A word-level tokenizer: not byte-level, so a token's bytes are its text's UTF-8. */
function wordLevel() {
  return new TextTokenizer({
    version: '1.0',
    added_tokens: [added(3, '<s>', true), added(4, 'plain', false)],
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: { hello: 0, wörld: 1, '[UNK]': 2, '<s>': 3 }, unk_token: '[UNK]' },
  });
}

describe('TextTokenizer', () => {
  it('counts ids of the vocabulary and the added tokens, and knows which are special', () => {
    const tokenizer = byteLevel();
    expect(tokenizer.vocabSize).toBe(302);
    expect(new Set(tokenizer.specialIds)).toEqual(new Set([256, 300]));
    const words = wordLevel();
    expect(words.vocabSize).toBe(5);
    expect(new Set(words.specialIds)).toEqual(new Set([3]));
  });

  it('counts a vocabulary given as a list (Unigram)', () => {
    const unigram = new TextTokenizer({
      version: '1.0',
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: {
        type: 'Unigram',
        unk_id: 0,
        vocab: [
          ['<unk>', 0],
          ['a', -1],
          ['b', -2],
          ['ab', -0.5],
        ],
      },
    });
    expect(unigram.vocabSize).toBe(4);
    expect(unigram.specialIds.size).toBe(0);
    expect(unigram.encode('ab')).toEqual([3]);
  });

  it('adds no special tokens when encoding, skips them when decoding, and leaves spaces as they are', () => {
    const post = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [256], tokens: ['<|endoftext|>'] } },
    };
    const tokenizer = byteLevel({ post_processor: post });
    const ids = tokenizer.encode('hi');
    expect(ids).not.toContain(256);
    expect(tokenizer.decode([256, ...ids])).toBe('hi');
    const spaced = "a . b , don't , ok ?";
    expect(tokenizer.decode(tokenizer.encode(spaced))).toBe(spaced);
  });

  it("gives a token's exact bytes: byte-level symbols as bytes, special and other added tokens as UTF-8", () => {
    const tokenizer = byteLevel();
    // Byte 0xC3 alone is half of a character: decoding it would give U+FFFD.
    expect(tokenizer.tokenBytes(0xc3)).toEqual(Uint8Array.from([0xc3]));
    expect(tokenizer.tokenBytes(tokenizer.encode(' the')[0])).toEqual(new TextEncoder().encode(' the'));
    expect(tokenizer.tokenBytes(256)).toEqual(new TextEncoder().encode('<|endoftext|>'));
    expect(tokenizer.tokenBytes(300)).toEqual(new TextEncoder().encode('<|ö|>'));
    expect(tokenizer.tokenBytes(301)).toEqual(new TextEncoder().encode('a€'));
    expect(tokenizer.tokenBytes(5000)).toEqual(new Uint8Array(0));
    const words = wordLevel();
    expect(words.tokenBytes(1)).toEqual(new TextEncoder().encode('wörld'));
    expect(words.tokenBytes(3)).toEqual(new TextEncoder().encode('<s>'));
  });

  it('refuses what is not a tokenizer, and a tokenizer it cannot load', () => {
    for (const json of [null, 'tokenizer', {}, { model: null }]) {
      expect(() => new TextTokenizer(json), JSON.stringify(json)).toThrow(InputError);
      expect(() => new TextTokenizer(json)).toThrow('tokenizer.json: not a Hugging Face tokenizer (no "model")');
    }
    expect(() => new TextTokenizer({ model: { type: 'Nope' } })).toThrow(InputError);
    expect(() => new TextTokenizer({ model: { type: 'Nope' } })).toThrow(/^tokenizer\.json: cannot load it \(.+\)$/);
  });
});
