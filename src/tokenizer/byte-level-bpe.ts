/**
 * Trains a small byte-level BPE (GPT-2 style) and writes it as a Hugging Face tokenizer.json.
 * `flexmem init` uses it so a random checkpoint comes with a real, loadable tokenizer of exactly
 * `vocab_size` ids: 256 byte symbols, `<|endoftext|>`, merges learned from a sample text, and
 * reserved special tokens to fill any remaining ids (as Llama 3 reserves ids).
 */

/** GPT-2's reversible map from bytes to printable characters (so vocab keys are strings). */
export function bytesToUnicode(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(printable(b) ? b : 256 + extra++);
  return map;
}

/** GPT-2's pre-tokenization pattern, also applied by the ByteLevel pre-tokenizer at encode time. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export const END_OF_TEXT = '<|endoftext|>';

export function trainByteLevelBpe(sample: string, vocabSize: number): { json: object; endOfTextId: number } {
  if (vocabSize < 257) throw new Error(`a byte-level tokenizer needs at least 257 ids, got ${vocabSize}`);
  const byteChar = bytesToUnicode();
  const encoder = new TextEncoder();
  const vocab = new Map<string, number>(byteChar.map((c, i) => [c, i]));
  const endOfTextId = 256;

  // Words as symbol sequences, with their counts.
  const counts = new Map<string, number>();
  for (const piece of sample.match(GPT2_SPLIT) ?? []) {
    const key = [...encoder.encode(piece)].map((b) => byteChar[b]).join('\u0000');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const words = [...counts].map(([key, count]) => ({ symbols: key.split('\u0000'), count }));

  const merges: string[] = [];
  let nextId = endOfTextId + 1;
  while (nextId < vocabSize) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const pair = `${w.symbols[i]} ${w.symbols[i + 1]}`;
        pairs.set(pair, (pairs.get(pair) ?? 0) + w.count);
      }
    }
    let best: string | null = null;
    let bestCount = 0;
    for (const [pair, count] of pairs) {
      if (count > bestCount || (count === bestCount && best !== null && pair < best)) [best, bestCount] = [pair, count];
    }
    if (best === null) break;
    const [left, right] = best.split(' ');
    const merged = left + right;
    if (vocab.has(merged)) break;
    merges.push(best);
    vocab.set(merged, nextId++);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === left && w.symbols[i + 1] === right) {
          out.push(merged);
          i++;
        } else out.push(w.symbols[i]);
      }
      w.symbols = out;
    }
  }

  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const addedTokens = [special(endOfTextId, END_OF_TEXT)];
  for (let r = 0; nextId < vocabSize; r++) addedTokens.push(special(nextId++, `<|reserved_${r}|>`));

  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
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
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  return { json, endOfTextId };
}
