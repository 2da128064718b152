/**
 * The added tokens of a tokenizer.json, held in a few typed arrays and one string.
 *
 * Why our own: @huggingface/tokenizers 0.2.0 keeps every added token as an AddedToken object, in
 * a Map by content, in the model's Map and vocabulary array, in `special_tokens`, and in two
 * DictionarySplitter tries of one object per character. The checkpoints flexmem makes reserve
 * most ids as added tokens (`<|reserved_N|>`, byte-level-bpe.ts), so at 131,072 ids that machinery
 * was nearly all of the tokenizer's 111 MiB of heap in Node (the trie alone 71 MiB) and 57 MiB in
 * workerd, while the BPE model of 752 tokens was under 1 MiB. The library's decode also scanned
 * `special_tokens` once per token (0.8 ms a token at 131,072 ids). This class answers the same
 * questions the library asks of those structures, with the library's semantics (last write wins
 * where it uses a Map, longest match where it uses the trie), in about 7 MiB at 131,072 ids.
 */

/** An entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
  normalized?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
}

// Per-key flags.
const IN_MAP = 1; // a key of the library's added_tokens_map
const LSTRIP = 2; // ... whose token strips whitespace on its left
const RSTRIP = 4; // ... and on its right
const SPECIAL = 8; // the content of a special token (the library's special_tokens)
const CONTENT = 16; // the content of an added token (the decoder's added_tokens)
const SPLIT_RAW = 32; // matched in text before normalization
const SPLIT_NORMALIZED = 64; // matched in normalized text
const MODEL_ID = 128; // set in the model's tokens_to_ids

/** Flags of AddedTokens.contentFlags. */
export const SPECIAL_CONTENT = SPECIAL;
export const ADDED_CONTENT = CONTENT;

export interface AddedTokenMatch {
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}

/** Longest-match splitting over the keys carrying one flag (the library's DictionarySplitter). */
class Splitter {
  /** Bit per UTF-16 code unit that starts some key. */
  private readonly firstUnits = new Uint8Array(8192);
  /** lengths[n] is 1 when some key has n code units. */
  private readonly lengths: Uint8Array;
  private readonly maxLength: number;

  constructor(
    private readonly table: AddedTokens,
    private readonly flag: number,
  ) {
    let maxLength = 0;
    for (let k = 0; k < table.keyCount; k++) if (table.hasFlag(k, flag)) maxLength = Math.max(maxLength, table.keyLength(k));
    this.maxLength = maxLength;
    this.lengths = new Uint8Array(maxLength + 1);
    for (let k = 0; k < table.keyCount; k++) {
      if (!table.hasFlag(k, flag) || table.keyLength(k) === 0) continue;
      this.lengths[table.keyLength(k)] = 1;
      const unit = table.keyUnit(k, 0);
      this.firstUnits[unit >> 3] |= 1 << (unit & 7);
    }
  }

  get empty(): boolean {
    return this.maxLength === 0;
  }

  /** The text cut around every longest key found scanning left to right, keys kept as pieces. */
  split(text: string): string[] {
    if (this.empty) return text.length > 0 ? [text] : [];
    const result: string[] = [];
    const n = text.length;
    let start = 0;
    let i = 0;
    while (i < n) {
      const length = this.longestAt(text, i);
      if (length > 0) {
        if (i > start) result.push(text.slice(start, i));
        result.push(text.slice(i, i + length));
        i += length;
        start = i;
      } else i++;
    }
    if (start < n) result.push(text.slice(start));
    return result;
  }

  private longestAt(text: string, i: number): number {
    const first = text.charCodeAt(i);
    if ((this.firstUnits[first >> 3] & (1 << (first & 7))) === 0) return 0;
    let hash = FNV_OFFSET;
    let longest = 0;
    const end = Math.min(text.length, i + this.maxLength);
    for (let j = i; j < end; j++) {
      hash = Math.imul(hash ^ text.charCodeAt(j), FNV_PRIME);
      const length = j + 1 - i;
      if (this.lengths[length] === 1 && this.table.findKey(text, i, length, hash, this.flag) >= 0) longest = length;
    }
    return longest;
  }
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

function hashRange(text: string, start: number, length: number): number {
  let hash = FNV_OFFSET;
  for (let j = start; j < start + length; j++) hash = Math.imul(hash ^ text.charCodeAt(j), FNV_PRIME);
  return hash;
}

export class AddedTokens {
  /** Every distinct key (an added token's content, or its normalized form), concatenated. */
  private readonly keys: string;
  private readonly keyStart: Int32Array;
  private readonly flags: Uint8Array;
  /** The id of the token a key maps to in added_tokens_map, when IN_MAP. */
  private readonly mapId: Int32Array;
  /** The id a key has in the model's tokens_to_ids, when MODEL_ID. */
  private readonly modelId: Int32Array;
  /** Open addressing: key index + 1, 0 for an empty slot. */
  private readonly slots: Int32Array;
  /** Added token ids, ascending, and the key of each (its content), for decoding. */
  private readonly ids: Int32Array;
  private readonly idKeys: Int32Array;
  /** Cheap refusals before hashing: most strings asked about are no key. */
  private readonly minLength: number;
  private readonly maxLength: number;
  private readonly firstUnits = new Uint8Array(8192);
  readonly raw: Splitter;
  readonly normalized: Splitter;

  constructor(added: readonly AddedTokenJson[], normalize: ((text: string) => string) | null) {
    // The library's constructor, replayed into plain arrays: the same writes in the same order.
    const index = new Map<string, number>();
    const keyList: string[] = [];
    const flags: number[] = [];
    const mapId: number[] = [];
    const modelId: number[] = [];
    const byId = new Map<number, number>();
    const key = (text: string) => {
      let k = index.get(text);
      if (k === undefined) {
        k = keyList.length;
        index.set(text, k);
        keyList.push(text);
        flags.push(0);
        mapId.push(0);
        modelId.push(0);
      }
      return k;
    };
    const mapTo = (k: number, token: AddedTokenJson) => {
      flags[k] = (flags[k] & ~(LSTRIP | RSTRIP)) | IN_MAP | (token.lstrip ? LSTRIP : 0) | (token.rstrip ? RSTRIP : 0);
      mapId[k] = token.id;
    };
    for (const token of added) {
      const special = token.special ?? false;
      const content = key(token.content);
      flags[content] |= CONTENT | MODEL_ID | (special ? SPECIAL : 0);
      modelId[content] = token.id;
      byId.set(token.id, content);
      mapTo(content, token);
      if ((token.normalized ?? !special) && normalize !== null) {
        const normalizedKey = key(normalize(token.content));
        flags[normalizedKey] |= SPLIT_NORMALIZED;
        mapTo(normalizedKey, token);
      } else flags[content] |= SPLIT_RAW;
    }

    this.keys = keyList.join('');
    this.keyStart = new Int32Array(keyList.length + 1);
    for (let k = 0; k < keyList.length; k++) this.keyStart[k + 1] = this.keyStart[k] + keyList[k].length;
    this.flags = Uint8Array.from(flags);
    this.mapId = Int32Array.from(mapId);
    this.modelId = Int32Array.from(modelId);
    let size = 16;
    while (size < keyList.length * 2) size *= 2;
    this.slots = new Int32Array(size);
    for (let k = 0; k < keyList.length; k++) {
      let slot = hashRange(this.keys, this.keyStart[k], keyList[k].length) & (size - 1);
      while (this.slots[slot] !== 0) slot = (slot + 1) & (size - 1);
      this.slots[slot] = k + 1;
    }
    this.minLength = keyList.reduce((min, k) => Math.min(min, k.length), Number.POSITIVE_INFINITY);
    this.maxLength = keyList.reduce((max, k) => Math.max(max, k.length), 0);
    for (const k of keyList) if (k.length > 0) this.firstUnits[k.charCodeAt(0) >> 3] |= 1 << (k.charCodeAt(0) & 7);
    const sorted = [...byId].sort((a, b) => a[0] - b[0]);
    this.ids = Int32Array.from(sorted, ([id]) => id);
    this.idKeys = Int32Array.from(sorted, ([, k]) => k);
    this.raw = new Splitter(this, SPLIT_RAW);
    this.normalized = new Splitter(this, SPLIT_NORMALIZED);
  }

  get keyCount(): number {
    return this.flags.length;
  }

  keyLength(k: number): number {
    return this.keyStart[k + 1] - this.keyStart[k];
  }

  keyUnit(k: number, at: number): number {
    return this.keys.charCodeAt(this.keyStart[k] + at);
  }

  hasFlag(k: number, flag: number): boolean {
    return (this.flags[k] & flag) !== 0;
  }

  /** The key equal to text[start, start + length) that has `flag` (0: any), or -1. */
  findKey(text: string, start: number, length: number, hash: number, flag = 0): number {
    const mask = this.slots.length - 1;
    for (let slot = hash & mask; this.slots[slot] !== 0; slot = (slot + 1) & mask) {
      const k = this.slots[slot] - 1;
      if (this.keyLength(k) === length && (flag === 0 || this.hasFlag(k, flag)) && this.keyEquals(k, text, start)) return k;
    }
    return -1;
  }

  private keyEquals(k: number, text: string, start: number): boolean {
    const from = this.keyStart[k];
    const length = this.keyStart[k + 1] - from;
    for (let j = 0; j < length; j++) if (this.keys.charCodeAt(from + j) !== text.charCodeAt(start + j)) return false;
    return true;
  }

  private lookup(text: string): number {
    const length = text.length;
    if (length < this.minLength || length > this.maxLength) return -1;
    if (length > 0) {
      const first = text.charCodeAt(0);
      if ((this.firstUnits[first >> 3] & (1 << (first & 7))) === 0) return -1;
    }
    return this.findKey(text, 0, length, hashRange(text, 0, length));
  }

  /** The library's `added_tokens_map.get(text)`. */
  match(text: string): AddedTokenMatch | undefined {
    const k = this.lookup(text);
    if (k < 0 || !this.hasFlag(k, IN_MAP)) return undefined;
    return { id: this.mapId[k], lstrip: this.hasFlag(k, LSTRIP), rstrip: this.hasFlag(k, RSTRIP) };
  }

  /** The library's `added_tokens_map.has(text)`. */
  has(text: string): boolean {
    const k = this.lookup(text);
    return k >= 0 && this.hasFlag(k, IN_MAP);
  }

  /** The id the library's Tokenizer constructor writes into the model's `tokens_to_ids` for `text`. */
  modelIdOf(text: string): number | undefined {
    const k = this.lookup(text);
    return k >= 0 && this.hasFlag(k, MODEL_ID) ? this.modelId[k] : undefined;
  }

  /** Whether `text` is the content of a special token (the library's `special_tokens.includes`). */
  isSpecialContent(text: string): boolean {
    return (this.contentFlags(text) & SPECIAL) !== 0;
  }

  /** Whether `text` is the content of an added token (what the decoders skip byte-decoding). */
  isContent(text: string): boolean {
    return (this.contentFlags(text) & CONTENT) !== 0;
  }

  /** SPECIAL_CONTENT and ADDED_CONTENT, as they hold for `text`, in one lookup. */
  contentFlags(text: string): number {
    const k = this.lookup(text);
    return k < 0 ? 0 : this.flags[k] & (SPECIAL | CONTENT);
  }

  /** The content of the last added token with this id (it overrides the model's vocabulary), if any. */
  contentOf(id: number): string | undefined {
    let lo = 0;
    let hi = this.ids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.ids[mid] === id) {
        const k = this.idKeys[mid];
        return this.keys.slice(this.keyStart[k], this.keyStart[k + 1]);
      }
      if (this.ids[mid] < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }
}
