import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { bytesToUnicode } from './byte-level-bpe.ts';

/**
 * The reference TextTokenizer is checked against: @huggingface/tokenizers given the whole
 * tokenizer.json, called exactly as TextTokenizer called it before added tokens moved out of the
 * library. For tests and bench/lib/tokenizer-memory.ts only; it costs ~100 MiB of heap at
 * 131,072 ids, so nothing serves with it.
 */
export class LibraryTokenizer {
  readonly hf: HfTokenizer;
  private readonly specialIds: Set<number>;
  private readonly byteLevel: Map<string, number> | null;

  constructor(json: object) {
    const added = (json as { added_tokens?: { id: number; special?: boolean }[] }).added_tokens ?? [];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    const usesByteLevel = JSON.stringify((json as { pre_tokenizer?: unknown }).pre_tokenizer ?? null).includes('"ByteLevel"');
    this.byteLevel = usesByteLevel ? new Map(bytesToUnicode().map((c, b) => [c, b])) : null;
    this.hf = new HfTokenizer(json, {});
  }

  encode(text: string): number[] {
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    return this.hf.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  tokenBytes(id: number): Uint8Array {
    const token = this.hf.id_to_token(id) ?? '';
    if (!this.specialIds.has(id) && this.byteLevel) {
      const bytes = [...token].map((c) => this.byteLevel!.get(c));
      if (bytes.every((b) => b !== undefined)) return Uint8Array.from(bytes as number[]);
    }
    return new TextEncoder().encode(this.specialIds.has(id) ? token : this.decode([id]));
  }
}
