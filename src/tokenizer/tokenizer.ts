import { AddedToken, Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { InputError } from '../errors.ts';
import { ADDED_CONTENT, AddedTokens, SPECIAL_CONTENT, type AddedTokenJson } from './added-tokens.ts';
import { bytesToUnicode } from './byte-level-bpe.ts';
import { IdSet } from './id-set.ts';

/** The part of a Hugging Face tokenizer.json that flexmem reads itself. */
interface TokenizerJson {
  model?: { vocab?: Record<string, number> | [string, number][] };
  added_tokens?: AddedTokenJson[];
}

type Model = NonNullable<HfTokenizer['model']>;

/**
 * The model's token -> id Map as the library's Tokenizer leaves it: with every added token's
 * content written over the vocabulary. The model consults it (unknown pieces, fuse_unk), so it
 * must see the added tokens without holding them in a Map of its own.
 */
class IdsWithAdded extends Map<string, number> {
  constructor(
    private readonly base: Map<string, number>,
    private readonly added: AddedTokens,
  ) {
    super();
  }

  override get(token: string): number | undefined {
    return this.added.modelIdOf(token) ?? this.base.get(token);
  }

  override has(token: string): boolean {
    return this.added.modelIdOf(token) !== undefined || this.base.has(token);
  }
}

/** Applies the lstrip / rstrip of the added tokens among `pieces` to their neighbours, in place. */
function stripAroundAdded(pieces: string[], added: AddedTokens): void {
  for (let i = 0; i < pieces.length; i++) {
    const token = added.match(pieces[i]);
    if (!token) continue;
    if (token.lstrip && i > 0) pieces[i - 1] = pieces[i - 1].trimEnd();
    if (token.rstrip && i < pieces.length - 1) pieces[i + 1] = pieces[i + 1].trimStart();
  }
}

/**
 * A Hugging Face tokenizer.json, loaded with @huggingface/tokenizers.
 *
 * The library builds the normalizer, pre-tokenizer, model, post-processor and decoder, but is
 * given no added tokens: it would hold each in several objects, Maps and a trie of one object per
 * character (111 MiB of heap in Node, 57 MiB in workerd, for the 130,320 reserved tokens of a
 * 131,072-id checkpoint; see added-tokens.ts). Added tokens live in AddedTokens, and `encode` and
 * `decode` follow the library's Tokenizer.encode_text / decode step for step around it, so the
 * output is the same.
 */
export class TextTokenizer {
  private readonly hf: HfTokenizer;
  private readonly model: Model;
  private readonly added: AddedTokens;
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
    const addedTokens = tj.added_tokens ?? [];
    for (const t of addedTokens) {
      if (!Number.isInteger(t.id) || t.id < 0 || t.id > 0x7fffffff)
        throw new InputError(`tokenizer.json: added token ${JSON.stringify(t.content)} has id ${t.id}, not an integer from 0 to 2^31 - 1`);
    }
    const ids = new Set<number>();
    const vocab = tj.model.vocab ?? {};
    for (const entry of Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab)) ids.add(entry);
    for (const t of addedTokens) ids.add(t.id);
    this.vocabSize = ids.size;
    this.specialIds = new IdSet(addedTokens.filter((t) => t.special).map((t) => t.id));
    const usesByteLevel = JSON.stringify((json as { pre_tokenizer?: unknown }).pre_tokenizer ?? null).includes('"ByteLevel"');
    this.byteLevel = usesByteLevel ? new Map(bytesToUnicode().map((c, b) => [c, b])) : null;
    try {
      // A file without the list still fails to load, as it did when the library read the list.
      this.hf = new HfTokenizer({ ...json, added_tokens: Array.isArray(tj.added_tokens) ? [] : tj.added_tokens }, {});
      if (!this.hf.model) throw new Error('no model');
      this.model = this.hf.model;
      const normalizer = this.hf.normalizer;
      this.added = new AddedTokens(addedTokens, normalizer ? (text) => normalizer(text) : null);
    } catch (error) {
      throw new InputError(`tokenizer.json: cannot load it (${(error as Error).message})`);
    }
    this.model.tokens_to_ids = new IdsWithAdded(this.model.tokens_to_ids, this.added);
  }

  encode(text: string): number[] {
    const { added, model } = this;
    // Tokenizer.encode's mapping; an unknown token gives unk_token_id, which may be undefined, as there.
    return this.tokens(text).map((t) => added.match(t)?.id ?? model.tokens_to_ids.get(t) ?? (model.unk_token_id as number));
  }

  /** Tokenizer.encode_text and tokenize_helper for one text, without special tokens. */
  private tokens(text: string): string[] {
    const { hf, added, model } = this;
    const sections = added.raw.split(text);
    stripAroundAdded(sections, added);
    const tokens: string[] = [];
    sections.forEach((section, sectionIndex) => {
      if (section.length === 0) return;
      if (added.has(section)) {
        tokens.push(section);
        return;
      }
      const normalized = hf.normalizer ? hf.normalizer(section) : section;
      if (normalized.length === 0) return;
      const subsections = added.normalized.split(normalized);
      stripAroundAdded(subsections, added);
      for (const subsection of subsections) {
        if (subsection.length === 0) continue;
        if (added.has(subsection)) {
          tokens.push(subsection);
          continue;
        }
        const words = hf.pre_tokenizer ? hf.pre_tokenizer(subsection, { section_index: sectionIndex }) : [subsection];
        for (const token of model(words)) tokens.push(token);
      }
    });
    return hf.post_processor ? hf.post_processor(tokens, null, false).tokens : tokens;
  }

  /** The token an id stands for: the library's id_to_token, added tokens first. */
  private idToToken(id: number): string | undefined {
    return this.added.contentOf(id) ?? this.model.vocab[id];
  }

  decode(ids: readonly number[]): string {
    // Tokenizer.decode with skip_special_tokens and no clean-up.
    if (ids.length === 0 || !Number.isInteger(ids[0])) throw new Error('token_ids must be a non-empty array of integers.');
    const { added, model } = this;
    const tokens: string[] = [];
    // The decoder only asks whether a token is some added token's content: it gets those present.
    const present = new Set<string>();
    for (const id of ids) {
      const token = this.idToToken(Number(id)) ?? model.unk_token;
      const flags = typeof token === 'string' ? added.contentFlags(token) : 0;
      if ((flags & SPECIAL_CONTENT) !== 0) continue;
      if ((flags & ADDED_CONTENT) !== 0) present.add(token as string);
      tokens.push(token as string);
    }
    const decoder = this.hf.decoder;
    if (!decoder) return tokens.join(' ');
    decoder.added_tokens = [...present].map((content) => new AddedToken({ content, id: -1 }));
    let decoded: string;
    try {
      decoded = decoder(tokens);
    } finally {
      decoder.added_tokens = [];
    }
    if (decoder.end_of_word_suffix) decoded = decoded.replaceAll(decoder.end_of_word_suffix, ' ').trim();
    return decoded;
  }

  /** The exact bytes a token stands for (byte-level BPE tokens may be part of a character). */
  tokenBytes(id: number): Uint8Array {
    const token = this.idToToken(id) ?? '';
    if (!this.specialIds.has(id) && this.byteLevel) {
      const bytes = [...token].map((c) => this.byteLevel!.get(c));
      if (bytes.every((b) => b !== undefined)) return Uint8Array.from(bytes as number[]);
    }
    return new TextEncoder().encode(this.specialIds.has(id) ? token : this.decode([id]));
  }
}
