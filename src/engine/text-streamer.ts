/**
 * Turns a stream of token ids into text deltas. Byte-level tokens can split a UTF-8 character,
 * so tokens are held back while their text ends in an incomplete character. Only the held-back
 * tokens are decoded each time (byte-level decoding concatenates), so a token costs O(1).
 */
export class TextStreamer {
  private pending: number[] = [];

  constructor(private readonly decode: (ids: number[]) => string) {}

  push(id: number): string {
    this.pending.push(id);
    const text = this.decode(this.pending);
    if (text.endsWith('\uFFFD')) return '';
    this.pending = [];
    return text;
  }

  /** Whatever is left at the end (including an incomplete character, as decoded). */
  flush(): string {
    const text = this.pending.length ? this.decode(this.pending) : '';
    this.pending = [];
    return text;
  }
}
