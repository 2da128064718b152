import { describe, expect, it } from 'vitest';
import { bytesToUnicode, END_OF_TEXT, trainByteLevelBpe } from './byte-level-bpe.ts';

interface Trained {
  version: string;
  added_tokens: { id: number; content: string }[];
  model: { vocab: Record<string, number>; merges: string[] };
}
const train = (sample: string, vocab: number) => trainByteLevelBpe(sample, vocab).json as Trained;
const merges = (sample: string, vocab: number) => train(sample, vocab).model.merges;

describe("GPT-2's byte alphabet", () => {
  it('keeps printable bytes as themselves and moves the rest past U+00FF, in byte order', () => {
    const map = bytesToUnicode();
    expect(map).toHaveLength(256);
    expect(new Set(map).size).toBe(256);
    const code = (b: number) => map[b].codePointAt(0);
    // Printable: 33-126, 161-172, 174-255.
    for (const b of [33, 126, 161, 172, 174, 255]) expect(code(b), `byte ${b}`).toBe(b);
    // The others, in order: 0-32 → 256-288, 127-160 → 289-322, 173 → 323.
    expect([0, 10, 32, 127, 160, 173].map(code)).toEqual([256, 266, 288, 289, 322, 323]);
    expect(map[32]).toBe('Ġ');
  });
});

describe('training a byte-level BPE', () => {
  it('splits words as GPT-2 does: letters, digits and punctuation each merge within their run', () => {
    expect(merges('aaaa', 258)).toEqual(['a a']);
    expect(merges('1111', 258)).toEqual(['1 1']);
    expect(merges('!!!!', 258)).toEqual(['! !']);
    expect(merges(' 1 1 1', 258)).toEqual(['Ġ 1']);
    expect(merges('a1a1', 258)).toEqual([]);
  });

  it('keeps a run of spaces apart from the word after it, but for its last space', () => {
    expect(merges('a    b a    b', 259)).toEqual(['Ġ Ġ', 'Ġ b']);
  });

  it('merges the most frequent pair first, the smallest of equally frequent ones, and applies each merge', () => {
    expect(merges('ab cd', 258)).toEqual(['a b']);
    expect(merges('cd ab', 258)).toEqual(['a b']);
    expect(merges('abc abc abc bcx bcx', 262)).toEqual(['b c', 'a bc', 'bc x', 'Ġ abc', 'Ġ bcx']);
  });

  it('numbers bytes 0-255, <|endoftext|> 256, merges from 257, then reserved tokens up to the size', () => {
    // 'aa' is one word: after its one merge there is nothing left to merge.
    const json = train('aa', 260);
    expect(json.model.vocab.a).toBe(97);
    expect(json.model.vocab.aa).toBe(257);
    expect(Object.keys(json.model.vocab)).toHaveLength(257);
    expect(trainByteLevelBpe('aa', 260).endOfTextId).toBe(256);
    expect(json.added_tokens.map((t) => [t.id, t.content])).toEqual([
      [256, END_OF_TEXT],
      [258, '<|reserved_0|>'],
      [259, '<|reserved_1|>'],
    ]);
    expect(END_OF_TEXT).toBe('<|endoftext|>');
  });

  it('learns nothing from an empty sample, and needs room for the bytes and <|endoftext|>', () => {
    const json = train('', 259);
    expect(json.model.merges).toEqual([]);
    expect(json.added_tokens.map((t) => t.id)).toEqual([256, 257, 258]);
    expect(train('abab', 257).added_tokens).toHaveLength(1);
    expect(() => trainByteLevelBpe('abab', 256)).toThrow('a byte-level tokenizer needs at least 257 ids, got 256');
  });

  it('writes a Hugging Face tokenizer.json: ByteLevel pre-tokenizer and decoder, a plain BPE model, special added tokens', () => {
    const json = trainByteLevelBpe('aaaa', 258).json as Record<string, unknown>;
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    expect(json).toEqual({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [{ id: 256, content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor: null,
      decoder: byteLevel,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab: expect.any(Object),
        merges: ['a a'],
      },
    });
  });
});
