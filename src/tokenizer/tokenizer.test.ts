import { describe, expect, it } from 'vitest';
import { trainByteLevelBpe } from './byte-level-bpe.ts';
import { SAMPLE_TEXT } from './sample-text.ts';
import { TextTokenizer } from './tokenizer.ts';

describe('byte-level BPE tokenizer', () => {
  it.each([300, 512, 2000])('has exactly %i ids and round-trips any text', (vocab) => {
    const tokenizer = new TextTokenizer(trainByteLevelBpe(SAMPLE_TEXT, vocab).json);
    expect(tokenizer.vocabSize).toBe(vocab);
    const text = 'Übermäßig "quoted" text\twith tabs, 1234 digits, emoji 🎉 and  double  spaces.\n';
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
  });

  it('learns merges: common words become single tokens', () => {
    const tokenizer = new TextTokenizer(trainByteLevelBpe(SAMPLE_TEXT, 512).json);
    expect(tokenizer.encode(' the')).toHaveLength(1);
    expect(tokenizer.encode('The President said').length).toBeLessThan('The President said'.length / 2);
  });

  it('refuses something that is not a tokenizer', () => {
    expect(() => new TextTokenizer({ hello: 1 })).toThrow(/not a Hugging Face tokenizer/);
  });
});
