/**
 * The logit bias and the penalties, applied to one position's logits before sampling (greedy
 * included), in vLLM's order (vllm/v1/sample/sampler.py): the bias, then the repetition penalty,
 * then the frequency and presence penalties. Logprobs are not computed from these logits: they
 * stay those of the model's raw distribution.
 *
 *   bias:         l[t] += b[t]
 *   repetition:   l[t] = l[t] > 0 ? l[t] / r : l[t] · r     for t in prompt ∪ output (CTRL, vLLM)
 *   frequency:    l[t] -= c[t] · α_frequency                 c[t]: times t was generated
 *   presence:     l[t] -= [c[t] > 0] · α_presence            (OpenAI's definitions)
 */
export interface LogitAdjustments {
  /** Token id → added to its logit (OpenAI's logit_bias, -100..100). */
  bias?: ReadonlyMap<number, number>;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** > 1 discourages tokens of the prompt and the output, < 1 encourages them; 1 is off. */
  repetitionPenalty?: number;
}

/** The adjustments of one sequence (one choice): it counts the tokens that sequence generated. */
export class LogitAdjuster {
  private readonly counts = new Map<number, number>();
  private readonly bias: ReadonlyMap<number, number>;
  private readonly presence: number;
  private readonly frequency: number;
  private readonly repetition: number;
  /** False when nothing applies: the raw logits are sampled as they are, with no copy. */
  readonly active: boolean;
  /** The adjusted copy, reused every step: at a 131,072-token vocabulary a fresh copy is 512 KiB per token. */
  private adjusted = new Float32Array(0);

  constructor(
    adjustments: LogitAdjustments,
    private readonly promptIds: ReadonlySet<number>,
  ) {
    this.bias = adjustments.bias ?? new Map();
    this.presence = adjustments.presencePenalty ?? 0;
    this.frequency = adjustments.frequencyPenalty ?? 0;
    this.repetition = adjustments.repetitionPenalty ?? 1;
    this.active = this.bias.size > 0 || this.presence !== 0 || this.frequency !== 0 || this.repetition !== 1;
  }

  /** Records a token this sequence generated. */
  accept(id: number): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }

  /**
   * The logits to sample from: `logits` itself when nothing applies, else an adjusted copy, which
   * the next call overwrites.
   */
  apply(logits: Float32Array): Float32Array {
    if (!this.active) return logits;
    if (this.adjusted.length !== logits.length) this.adjusted = new Float32Array(logits.length);
    const out = this.adjusted;
    out.set(logits);
    for (const [id, b] of this.bias) out[id] += b;
    if (this.repetition !== 1) {
      const r = this.repetition;
      const penalise = (id: number) => {
        out[id] = out[id] > 0 ? out[id] / r : out[id] * r;
      };
      for (const id of this.promptIds) penalise(id);
      for (const id of this.counts.keys()) if (!this.promptIds.has(id)) penalise(id);
    }
    for (const [id, c] of this.counts) out[id] -= c * this.frequency + this.presence;
    return out;
  }
}
