/**
 * Continuous batching of decode steps: the one-token steps of concurrent sequences on one session
 * that are ready at the same moment run as one batched `session.run`, and each sequence gets its
 * own row of the logits back. Prefill steps never come here (src/engine/decoder.ts runs them
 * alone). docs/architecture.md, "Continuous batching", says why it is built this way.
 *
 * The batch's KV cache is kept merged between steps, and kept here, not by the graph: a
 * `MergedBatch` holds [B, KV, C, hd] arrays with room for C positions (C grows by GROW columns when
 * full) and a per-row mask of the real ones, and each member's DecoderState points at its row (its
 * `seat`) instead of holding its own tensors. A run feeds the whole arrays as `past` (the unused
 * columns masked) and fetches only the step's own keys and values (`new_key_values`), which are
 * written into the next free column: onnxruntime copies one position per row out of its heap
 * instead of the whole cache, and allocates nothing that size. A member that is not ready when the
 * others are rides along with a padded column (mask 0), so a straggler does not force a copy; one
 * that left, or missed MAX_SKIPS steps in a row, is dropped at the next run, by moving the last rows
 * into its place (a compaction). A rebuild (a sequence joined) copies every member's real positions
 * into new arrays, padding at the end of each row.
 *
 * When a step runs: at once when every live member of the current batch has asked (the usual case:
 * all streams are decoding), else once the oldest waiting step has seen PATIENCE turns of `wait`
 * (a macrotask each), so steps arriving in nearby turns join. A run in flight (onnxruntime-node
 * runs off the thread) lets the next steps queue up.
 *
 * Every waiting step keeps a timer of its own alive, in its own request, until its logits arrive:
 * in workerd a request that awaits a promise with nothing of its own pending is cancelled as hung
 * (even while another request's run will resolve it), and a timer set by another request dies with
 * that request. Whichever request's timer fires first runs the batch for all. A run is only ever
 * started by a request that is waiting for a step of its own, so its context outlives the run.
 */
import type { Tensor, TensorConstructor } from 'onnxruntime-common';
import type { ModelConfig } from '../model/config.ts';
import { GRAPH_IO, layerKvNames } from '../model/graph-io.ts';
import { logitsFromFeed } from './logits-from.ts';
import type { DecoderState, StepSession } from './decoder.ts';
import { takesAttentionMask } from './attention-mask.ts';
import { type CacheRow, copyRealPositions, REAL } from './kv-rows.ts';

/**
 * Columns a merged cache gains when it is full. Every run feeds (and onnxruntime copies) every
 * column, used or not, so a larger step wastes more per run; a smaller one copies the cache more
 * often to grow it.
 */
const GROW = 16;
/** Steps in a row a member may miss and keep its row; past that it is dropped at the next run (and takes its cache with it). */
const MAX_SKIPS = 2;
/** Padded columns a merged cache may carry beyond its longest member before it is compacted by a rebuild. */
const MAX_SLACK = 32;
/**
 * Padded columns a compaction may leave behind its longest remaining member. A compaction keeps
 * the batch's length (only a rebuild shortens rows), so when the longest member leaves, every later
 * step carries the columns only it used; past this many, a rebuild is cheaper than carrying them.
 */
const COMPACT_SLACK = 4;
/**
 * Timer turns the oldest waiting step gives the batch's other members before running without them.
 * One turn fragmented the batches of 4 and 8 streams (mean 1.3 to 2.8 steps per run in the load
 * bench, each stream's next step arriving in its own turn) and then every run rebuilt the caches.
 */
const PATIENCE = 3;
/**
 * A run still unsettled after this long is abandoned: its steps fail and the batcher takes new ones.
 * A run awaits the session queue, which other requests' prompts share; should the request that
 * started it be cancelled in a way that drops the run's continuation, the run would otherwise stay
 * set and every decode step of the isolate would wait forever. A real run takes milliseconds; the
 * queue ahead of it, a few prompts (admission bounds them).
 */
export const ABANDON_RUN_AFTER_MS = 15_000;

/** Where a batched sequence's KV cache lives: a row of a merged batch. */
export interface Seat {
  batch: MergedBatch;
  row: number;
}

interface MergedBatch {
  /** Columns of every row (C): room for this many positions. */
  capacity: number;
  /** Columns written so far; the next run writes column `used`. */
  used: number;
  /** The cache by graph input name (`past_key_values.*`), [B, KV, C, hd]. */
  past: Record<string, Float32Array>;
  /** [B, C]: 1 where a row's position is real; int64, as the graph's `attention_mask` takes it, so a step converts nothing. */
  real: BigInt64Array;
  members: (DecoderState | null)[];
  /** Steps each member has missed in a row. */
  skips: number[];
}

interface PendingStep {
  state: DecoderState;
  tokenId: number;
  rows: Float32Array | null;
  resolve: (logits: Float32Array) => void;
  reject: (error: unknown) => void;
  /** Timer turns it has waited. */
  turns: number;
}

export interface BatcherParts {
  session: StepSession;
  Tensor: TensorConstructor;
  config: ModelConfig;
  /** Most sequences in one run (2 or more). */
  maxBatch: number;
  /** Calls `run` a little later, letting other steps of this turn arrive (default: a macrotask). */
  wait?: (run: () => void) => void;
  /** Told after each run: the sequences it stepped. */
  observe?: (rows: number) => void;
  /** Milliseconds, for abandoning a stuck run (default Date.now, which advances across timers in workerd). */
  now?: () => number;
}

/** What the batcher has done, for tests and the load benchmark. */
export interface BatcherStats {
  runs: number;
  /** Sequences stepped, summed over runs (rows / runs is the mean batch). */
  rows: number;
  /** Rows that rode along padded (a member not ready). */
  paddedRows: number;
  /** Runs that had to copy caches into a new merged batch. */
  rebuilds: number;
  /** Runs that only dropped rows of the merged batch, moving a few rows in place instead of copying all. */
  compactions: number;
  /** Runs that found the merged cache full and copied it into wider arrays. */
  grows: number;
}

export class StepBatcher {
  readonly stats: BatcherStats = { runs: 0, rows: 0, paddedRows: 0, rebuilds: 0, compactions: 0, grows: 0 };
  private readonly parts: BatcherParts;
  private readonly wait: (run: () => void) => void;
  private readonly now: () => number;
  private readonly takesRows: boolean;
  /** What a run asks of the graph: the logits and the step's own keys and values, never the whole `present` cache. */
  private readonly fetches: string[];
  private pending: PendingStep[] = [];
  private current: MergedBatch | null = null;
  /** The run in flight, if any: which it is (a stale one's outputs are dropped), when it began, its steps. */
  private inFlight: { ticket: number; startedAt: number; steps: PendingStep[] } | null = null;
  private tickets = 0;

  constructor(parts: BatcherParts) {
    if (!(parts.maxBatch >= 2)) throw new Error(`a step batcher needs maxBatch of at least 2, got ${parts.maxBatch}`);
    this.parts = parts;
    this.wait = parts.wait ?? ((run) => setTimeout(run, 0));
    this.now = parts.now ?? Date.now;
    if (!canBatch(parts.session)) throw new Error('a step batcher needs a graph that takes attention_mask and gives new_key_values');
    this.takesRows = parts.session.inputNames.includes(GRAPH_IO.memoryRows);
    this.fetches = [GRAPH_IO.logits, ...layerKvNames(parts.config.num_hidden_layers, GRAPH_IO.newKey, GRAPH_IO.newValue)];
  }

  /** One decode step of `state` (one token, its memory row); resolves to its logits [V]. */
  decode(state: DecoderState, tokenId: number, rows: Float32Array | null): Promise<Float32Array> {
    return this.keptAlive(
      new Promise<Float32Array>((resolve, reject) => {
        this.pending.push({ state, tokenId, rows, resolve, reject, turns: 0 });
      }),
    );
  }

  /** Schedules now, and keeps a timer of the caller's request alive until `result` settles (see the module comment). */
  private keptAlive<T>(result: Promise<T>): Promise<T> {
    let done = false;
    const settled = result.finally(() => {
      done = true;
    });
    const step = this.pending.at(-1);
    const tick = () => {
      if (done) return;
      if (step) step.turns++;
      this.pump(true);
      this.wait(tick);
    };
    this.pump(false);
    this.wait(tick);
    return settled;
  }

  /**
   * The sequence is done: its row is not waited for, and is dropped at the next rebuild. Steps
   * already waiting for it run when their own timers fire, never from here: the leaving request
   * may be ending, and workerd cancels the continuations of an ended request, which would strand
   * every step of a batch run in its context.
   */
  leave(state: DecoderState): void {
    const batch = state.seat?.batch;
    state.seat = undefined;
    // The last member gone, its merged cache (every layer's KV of every row) is garbage: an idle
    // isolate would otherwise hold the last batch's cache until the next decode step.
    if (batch === this.current && !hasSeatedMembers(batch)) this.current = null;
  }

  /** Whether the batcher holds a merged cache (it does while a batched sequence is seated in it). */
  get holdsCache(): boolean {
    return this.current !== null;
  }

  /** Gives a batched sequence its own cache tensors again (for a step outside the batcher). */
  materialize(state: DecoderState): void {
    const seat = state.seat;
    if (!seat) return;
    const { num_key_value_heads: KV, head_dim: hd } = this.parts.config;
    const past: Record<string, Tensor> = {};
    for (const name of Object.keys(seat.batch.past)) {
      const data = new Float32Array(KV * state.length * hd);
      copyRealPositions(sourceRow(state, name), data, state.length, 0, KV, hd);
      past[name] = new this.parts.Tensor('float32', data, [1, KV, state.length, hd]);
    }
    state.past = past;
    state.seat = undefined;
  }

  /**
   * Starts a run of the waiting steps if the session is free and every live member of the current
   * batch has asked, the batch is full, or the oldest step has waited PATIENCE timer turns (then
   * stragglers ride along padded).
   */
  private pump(timerFired: boolean): void {
    if (this.inFlight) {
      const now = this.now();
      if (now - this.inFlight.startedAt < ABANDON_RUN_AFTER_MS) return;
      this.abandon(this.inFlight.steps);
    }
    const steps = this.pending.length;
    if (!steps) return;
    const patient = timerFired && this.pending.some((p) => p.turns >= PATIENCE);
    if (patient || steps >= this.parts.maxBatch || this.everyLiveMemberPending()) void this.flush();
  }

  private everyLiveMemberPending(): boolean {
    const batch = this.current;
    if (!batch) return false;
    const asked = new Set(this.pending.map((p) => p.state));
    return batch.members.every((m, row) => !m || !isSeated(m, batch, row) || asked.has(m));
  }

  private async flush(): Promise<void> {
    if (this.inFlight || !this.pending.length) return;
    // Members of the current batch first, so a full batch keeps its merged cache.
    const current = this.current;
    const order = (p: PendingStep) => (current && p.state.seat?.batch === current ? 0 : 1);
    const sorted = [...this.pending].sort((a, b) => order(a) - order(b));
    const chosen = sorted.slice(0, this.parts.maxBatch);
    this.pending = sorted.slice(this.parts.maxBatch);
    const ticket = ++this.tickets;
    this.inFlight = { ticket, startedAt: this.now(), steps: chosen };
    try {
      await this.run(chosen, ticket);
    } catch (error) {
      for (const p of chosen) p.reject(error);
    } finally {
      // Steps that arrived during the run are left to their own timers: starting the next run here
      // would run it in this request's context, which may end before that run settles (workerd then
      // drops its continuation, and the run would never be cleared: see ABANDON_RUN_AFTER_MS).
      if (this.inFlight?.ticket === ticket) this.inFlight = null;
    }
  }

  /** Fails a stuck run's steps and frees the batcher; the members keep their seats (a run changes them only once it returns). */
  private abandon(steps: PendingStep[]): void {
    this.inFlight = null;
    const error = new Error(`a batched decode step did not finish within ${ABANDON_RUN_AFTER_MS} ms; it was abandoned`);
    for (const p of steps) p.reject(error);
  }

  private async run(chosen: PendingStep[], ticket: number): Promise<void> {
    const { session, Tensor, config } = this.parts;
    // The graph's memory row width is the width of the rows the decoders fetched (one token each).
    const rowValues = this.takesRows ? (chosen[0].rows?.length ?? 0) : 0;
    const { num_hidden_layers: L, num_key_value_heads: KV, head_dim: hd, vocab_size: V } = config;
    const batch = this.withRoom(this.reusable(chosen) ?? this.compacted(chosen) ?? this.rebuild(chosen));
    const B = batch.members.length;
    const C = batch.capacity;
    const column = batch.used;
    const step = new Map(chosen.map((p) => [p.state, p]));
    const mask = new BigInt64Array(B * (C + 1));
    const ids = new BigInt64Array(B);
    const positions = new BigInt64Array(B);
    const rows = new Float32Array(B * rowValues);
    const present: (PendingStep | undefined)[] = batch.members.map((m) => (m ? step.get(m) : undefined));
    for (let b = 0; b < B; b++) {
      mask.set(batch.real.subarray(b * C, (b + 1) * C), b * (C + 1));
      const p = present[b];
      if (!p) continue; // rides along: a padded column, any token
      mask[b * (C + 1) + C] = REAL;
      ids[b] = BigInt(p.tokenId);
      positions[b] = BigInt(p.state.length);
      if (rowValues) rows.set(p.rows!, b * rowValues);
    }
    const feeds: Record<string, Tensor> = {};
    for (const [name, data] of Object.entries(batch.past)) feeds[name] = new Tensor('float32', data, [B, KV, C, hd]);
    feeds[GRAPH_IO.inputIds] = new Tensor('int64', ids, [B, 1]);
    feeds[GRAPH_IO.positionIds] = new Tensor('int64', positions, [B, 1]);
    feeds[GRAPH_IO.attentionMask] = new Tensor('int64', mask, [B, C + 1]);
    if (this.takesRows) feeds[GRAPH_IO.memoryRows] = new Tensor('float32', rows, [B, 1, rowValues]);
    Object.assign(feeds, logitsFromFeed(session.inputNames, Tensor, 0));
    const out = await session.run(feeds, this.fetches);
    if (this.inFlight?.ticket !== ticket) return; // abandoned meanwhile: its steps have failed already

    // The step's keys and values go into the column the run attended as its new one; a row that rode
    // along writes one too, which its mask keeps padding.
    for (let l = 0; l < L; l++) {
      writeColumn(batch.past[GRAPH_IO.pastKey(l)], out[GRAPH_IO.newKey(l)].data as Float32Array, B * KV, C, column, hd);
      writeColumn(batch.past[GRAPH_IO.pastValue(l)], out[GRAPH_IO.newValue(l)].data as Float32Array, B * KV, C, column, hd);
    }
    for (let b = 0; b < B; b++) if (present[b]) batch.real[b * C + column] = REAL;
    batch.used = column + 1;
    for (let b = 0; b < B; b++) {
      const m = batch.members[b];
      if (m && !isSeated(m, batch, b)) batch.members[b] = null;
      batch.skips[b] = present[b] ? 0 : batch.skips[b] + 1;
    }
    // Every member left during the run: nothing will step in this cache again.
    if (this.current === batch && !batch.members.some((m) => m !== null)) this.current = null;
    const logits = out[GRAPH_IO.logits].data as Float32Array;
    this.stats.runs++;
    this.stats.rows += chosen.length;
    this.stats.paddedRows += B - chosen.length;
    this.parts.observe?.(chosen.length);
    // Every stepped sequence gets its logits, one that left during the run too (it just has no row any more).
    for (const [b, p] of present.entries()) {
      if (!p) continue;
      p.state.length++;
      p.state.past = {};
      p.resolve(logits.subarray(b * V, (b + 1) * V));
    }
  }

  /** `batch` with a free column for the next step: a full one is copied into arrays GROW columns wider. */
  private withRoom(batch: MergedBatch): MergedBatch {
    if (batch.used < batch.capacity) return batch;
    const { num_key_value_heads: KV, head_dim: hd } = this.parts.config;
    const B = batch.members.length;
    const C = batch.capacity;
    const wider = C + GROW;
    for (const [name, data] of Object.entries(batch.past)) {
      const grown = new Float32Array(B * KV * wider * hd);
      for (let block = 0; block < B * KV; block++) grown.set(data.subarray(block * C * hd, (block + 1) * C * hd), block * wider * hd);
      batch.past[name] = grown;
    }
    const real = new BigInt64Array(B * wider);
    for (let b = 0; b < B; b++) real.set(batch.real.subarray(b * C, (b + 1) * C), b * wider);
    batch.real = real;
    batch.capacity = wider;
    this.stats.grows++;
    return batch;
  }

  /** The current merged batch, when every chosen step is one of its members and it needs no compaction. */
  private reusable(chosen: PendingStep[]): MergedBatch | null {
    const batch = this.current;
    if (!batch || !chosen.every((p) => p.state.seat?.batch === batch)) return null;
    const asked = new Set(chosen.map((p) => p.state));
    let longest = 0;
    for (const [b, m] of batch.members.entries()) {
      if (!m || !isSeated(m, batch, b)) return null; // left or moved away: compact it out
      if (!asked.has(m) && batch.skips[b] + 1 > MAX_SKIPS) return null;
      longest = Math.max(longest, m.length);
    }
    return batch.used - longest >= MAX_SLACK ? null : batch;
  }

  /**
   * The current merged batch without the rows it no longer needs (members that left, or missed too
   * many steps), when every chosen step is one of its members and the rows stay at most COMPACT_SLACK
   * columns longer than the longest remaining member. Each dropped row inside the kept range is overwritten by a kept row from the end, in place,
   * and the arrays become views of their first rows (a row, [KV, C, hd], is contiguous). A rebuild
   * instead copies every member's row into new arrays: at the end of a burst, streams leave about
   * one per step, and each leave copied the whole cache.
   */
  private compacted(chosen: PendingStep[]): MergedBatch | null {
    const batch = this.current;
    if (!batch || !chosen.every((p) => p.state.seat?.batch === batch)) return null;
    const asked = new Set(chosen.map((p) => p.state));
    const kept: number[] = [];
    const dropped: number[] = [];
    let longest = 0;
    for (const [b, m] of batch.members.entries()) {
      if (m && isSeated(m, batch, b) && (asked.has(m) || batch.skips[b] + 1 <= MAX_SKIPS)) {
        kept.push(b);
        longest = Math.max(longest, m.length);
      } else dropped.push(b);
    }
    if (!dropped.length || batch.used - longest > COMPACT_SLACK) return null;
    // A member dropped for missing steps is still decoding: it takes its cache with it before its row is reused.
    for (const b of dropped) {
      const m = batch.members[b];
      if (m && isSeated(m, batch, b)) this.materialize(m);
    }
    const { num_key_value_heads: KV, head_dim: hd } = this.parts.config;
    const B = kept.length;
    const C = batch.capacity;
    const holes = dropped.filter((b) => b < B);
    const movers = kept.filter((b) => b >= B);
    const rowValues = KV * C * hd;
    const past: Record<string, Float32Array> = {};
    for (const [name, data] of Object.entries(batch.past)) {
      for (const [i, to] of holes.entries()) data.copyWithin(to * rowValues, movers[i] * rowValues, (movers[i] + 1) * rowValues);
      past[name] = data.subarray(0, B * rowValues);
    }
    for (const [i, to] of holes.entries()) batch.real.copyWithin(to * C, movers[i] * C, (movers[i] + 1) * C);
    const from = Array.from({ length: B }, (_, b) => b);
    for (const [i, to] of holes.entries()) from[to] = movers[i];
    const members = from.map((b) => batch.members[b]!);
    const compacted: MergedBatch = {
      capacity: C,
      used: batch.used,
      past,
      real: batch.real.subarray(0, B * C),
      members,
      skips: from.map((b) => batch.skips[b]),
    };
    for (const [b, m] of members.entries()) m.seat = { batch: compacted, row: b };
    this.stats.compactions++;
    this.current = compacted;
    return compacted;
  }

  /**
   * A new merged batch of the chosen sequences, plus the current batch's members that are only
   * late (seated, few skips), as long as there is room: their real positions first in each row,
   * then GROW free columns. Its members are seated in it at once: it is a complete copy of their caches,
   * so they stay consistent even if the run then fails.
   */
  private rebuild(chosen: PendingStep[]): MergedBatch {
    const { config, maxBatch } = this.parts;
    const { num_key_value_heads: KV, head_dim: hd } = config;
    const members: DecoderState[] = chosen.map((p) => p.state);
    const skips: number[] = members.map(() => 0);
    const old = this.current;
    if (old) {
      const asked = new Set(members);
      for (const [b, m] of old.members.entries()) {
        if (members.length >= maxBatch) break;
        if (m && !asked.has(m) && isSeated(m, old, b) && old.skips[b] < MAX_SKIPS) {
          members.push(m);
          skips.push(old.skips[b]);
        }
      }
    }
    const used = Math.max(...members.map((m) => m.length));
    const C = used + GROW;
    const B = members.length;
    const real = new BigInt64Array(B * C);
    const past: Record<string, Float32Array> = {};
    const names = layerKvNames(config.num_hidden_layers, GRAPH_IO.pastKey, GRAPH_IO.pastValue);
    for (const name of names) {
      const data = new Float32Array(B * KV * C * hd);
      for (const [b, m] of members.entries()) {
        const copied = copyRealPositions(sourceRow(m, name), data, C, b, KV, hd);
        if (copied !== m.length) throw new Error(`step batcher: a cache row holds ${copied} positions, its sequence ${m.length}`);
      }
      past[name] = data;
    }
    for (const [b, m] of members.entries()) real.fill(REAL, b * C, b * C + m.length);
    this.stats.rebuilds++;
    const batch: MergedBatch = { capacity: C, used, past, real, members, skips };
    for (const [b, m] of members.entries()) {
      m.seat = { batch, row: b };
      m.past = {};
    }
    this.current = batch;
    return batch;
  }
}

function isSeated(m: DecoderState, batch: MergedBatch, row: number): boolean {
  return m.seat?.batch === batch && m.seat.row === row;
}

function hasSeatedMembers(batch: MergedBatch): boolean {
  return batch.members.some((m, row) => m !== null && isSeated(m, batch, row));
}

/** Where a sequence's cache tensor `name` is now: its seat's row, or its own [1, KV, length, hd]. */
function sourceRow(m: DecoderState, name: string): CacheRow {
  if (!m.seat) return { data: m.past[name].data as Float32Array, length: m.length, row: 0, real: null };
  const { batch, row } = m.seat;
  const C = batch.capacity;
  return { data: batch.past[name], length: C, row, real: batch.real.subarray(row * C, (row + 1) * C) };
}

/** Writes `blocks` rows of `headDim` values (one position of each [row, kv head]) into column `column` of a [blocks, columns, headDim] cache. */
function writeColumn(cache: Float32Array, values: Float32Array, blocks: number, columns: number, column: number, headDim: number): void {
  for (let block = 0; block < blocks; block++)
    cache.set(values.subarray(block * headDim, (block + 1) * headDim), (block * columns + column) * headDim);
}

/** Whether a session's graph can run batched steps: it takes a padding mask and gives each step's own keys and values. */
export function canBatch(session: Pick<StepSession, 'inputNames' | 'outputNames'>): boolean {
  return takesAttentionMask(session.inputNames) && session.outputNames.includes(GRAPH_IO.newKey(0));
}
