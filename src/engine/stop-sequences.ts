/**
 * Cuts generated text at the first stop sequence, which is never emitted. Text that could be the
 * start of a stop sequence is held back until it is known not to be one.
 */
export class StopSequences {
  private pending = '';
  stopped = false;

  constructor(private readonly sequences: readonly string[]) {}

  /** Returns the text that is safe to emit now. */
  push(delta: string): string {
    if (this.stopped) return '';
    this.pending += delta;
    let cut = -1;
    for (const s of this.sequences) {
      const at = this.pending.indexOf(s);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    const hold = this.heldBackLength();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }

  /** Length of the longest suffix of `pending` that is a proper prefix of a stop sequence. */
  private heldBackLength(): number {
    let hold = 0;
    for (const s of this.sequences) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return hold;
  }
}
