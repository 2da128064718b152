/**
 * The m most likely token ids, most likely first and ties by id (the order of a full sort of the
 * vocabulary), found with a bounded heap in one pass instead of sorting every id.
 */

let heap = new Int32Array(0);

/** Fills the first m entries of the returned array (reused between calls) with the m best ids in order. */
export function topCandidates(logits: Float32Array, m: number): Int32Array {
  if (m <= 0) return heap;
  if (heap.length < m) heap = new Int32Array(Math.max(m, 2 * heap.length));
  // A min-heap on "worse": the root is the worst id kept so far.
  let size = 0;
  const n = logits.length;
  for (; size < m && size < n; size++) siftUp(logits, size, size);
  // The worst logit kept, held in a local: most ids are rejected by this one comparison.
  let worstKept = size > 0 ? logits[heap[0]] : Infinity;
  for (let i = size; i < n; i++) {
    // Equal logits keep the earlier id, which a later id never beats.
    if (logits[i] > worstKept) {
      siftDown(logits, size, i);
      worstKept = logits[heap[0]];
    }
  }
  // Heap-sort in place: repeatedly move the worst to the end.
  for (let end = size - 1; end > 0; end--) {
    const worst = heap[0];
    siftDown(logits, end, heap[end]);
    heap[end] = worst;
  }
  return heap;
}

/** Every id whose logit is at least `lowest`, most likely first (ties by id): a prefix of the full order. Reused array; returns the count. */
export function candidatesFrom(logits: Float32Array, lowest: number): { ids: Int32Array; count: number } {
  let count = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] >= lowest) count++;
  if (heap.length < count) heap = new Int32Array(Math.max(count, 2 * heap.length));
  let j = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] >= lowest) heap[j++] = i;
  heap.subarray(0, count).sort((a, b) => logits[b] - logits[a] || a - b);
  return { ids: heap, count };
}

/** True when token a ranks below token b (lower logit, or the same logit and a later id). */
function worse(logits: Float32Array, a: number, b: number): boolean {
  return logits[a] < logits[b] || (logits[a] === logits[b] && a > b);
}

function siftUp(logits: Float32Array, position: number, id: number): void {
  let child = position;
  while (child > 0) {
    const parent = (child - 1) >> 1;
    if (!worse(logits, id, heap[parent])) break;
    heap[child] = heap[parent];
    child = parent;
  }
  heap[child] = id;
}

/** Places `id` at the root of a heap of `size` entries and restores the order. */
function siftDown(logits: Float32Array, size: number, id: number): void {
  let parent = 0;
  for (;;) {
    let child = 2 * parent + 1;
    if (child >= size) break;
    if (child + 1 < size && worse(logits, heap[child + 1], heap[child])) child++;
    if (!worse(logits, heap[child], id)) break;
    heap[parent] = heap[child];
    parent = child;
  }
  heap[parent] = id;
}
