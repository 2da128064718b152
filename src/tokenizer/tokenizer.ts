import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { InputError } from '../errors.ts';
import { bytesToUnicode } from './byte-level-bpe.ts';

/** The part of a Hugging Face tokenizer.json that flexmem reads itself. */
interface TokenizerJson {
  model?: { vocab?: Record<string, number> | [string, number][] };
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

/** A Hugging Face tokenizer.json, loaded with @huggingface/tokenizers. */
export class TextTokenizer {
  private readonly hf: HfTokenizer;
  /** Number of distinct token ids: the model's vocabulary plus added tokens. */
  readonly vocabSize: number;
  /** Ids of added tokens marked special (never produced by plain text). */
  readonly specialIds: ReadonlySet<number>;
  /** GPT-2's byte-level alphabet, character -> byte, for ByteLevel tokenizers. */
  private readonly byteLevel: Map<string, number> | null;

  constructor(json: unknown) {
    const tj = json as TokenizerJson;
    if (typeof json !== 'object' || json === null || !tj.model)
      throw new InputError('tokenizer.json: not a Hugging Face tokenizer (no "model")');
    const ids = new Set<number>();
    const vocab = tj.model.vocab ?? {};
    for (const entry of Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab)) ids.add(entry);
    for (const t of tj.added_tokens ?? []) ids.add(t.id);
    this.vocabSize = ids.size;
    this.specialIds = new Set((tj.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    const usesByteLevel = JSON.stringify((json as { pre_tokenizer?: unknown }).pre_tokenizer ?? null).includes('"ByteLevel"');
    this.byteLevel = usesByteLevel ? new Map(bytesToUnicode().map((c, b) => [c, b])) : null;
    try {
      this.hf = new HfTokenizer(json as object, {});
    } catch (error) {
      throw new InputError(`tokenizer.json: cannot load it (${(error as Error).message})`);
    }
  }

  encode(text: string): number[] {
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    return this.hf.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  /** The exact bytes a token stands for (byte-level BPE tokens may be part of a character). */
  tokenBytes(id: number): Uint8Array {
    const token = this.hf.id_to_token(id) ?? '';
    if (!this.specialIds.has(id) && this.byteLevel) {
      const bytes = [...token].map((c) => this.byteLevel!.get(c));
      if (bytes.every((b) => b !== undefined)) return Uint8Array.from(bytes as number[]);
    }
    return new TextEncoder().encode(this.specialIds.has(id) ? token : this.decode([id]));
  }
}
