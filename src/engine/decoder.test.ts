import type { TensorConstructor } from 'onnxruntime-common';
import { describe, expect, it } from 'vitest';
import type { RowSource } from '../bundle/row-source.ts';
import { InputError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { Decoder, type StepSession } from './decoder.ts';

/** Stands in for onnxruntime's Tensor: keeps what it was built from. */
class FakeTensor {
  constructor(
    readonly type: string,
    readonly data: unknown,
    readonly dims: readonly number[],
  ) {}
}

const config = { num_hidden_layers: 2, num_key_value_heads: 3, head_dim: 4, max_position_embeddings: 8, vocab_size: 5 } as ModelConfig;
const R = 6;

/** A session that records its feeds and returns present.* tensors tagged with the step number. */
function fakeSession(takesRows = true) {
  const feeds: Record<string, FakeTensor>[] = [];
  const session: StepSession = {
    inputNames: ['input_ids', 'position_ids', ...(takesRows ? ['memory_rows'] : []), 'past_key_values.0.key'],
    outputNames: ['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value'],
    release: async () => {},
    run: (async (input: Record<string, FakeTensor>) => {
      feeds.push(input);
      const step = feeds.length;
      const T = (input.input_ids.dims as number[])[1];
      const out: Record<string, FakeTensor> = { logits: new FakeTensor('float32', new Float32Array(T * 5).fill(step), [1, T, 5]) };
      for (let l = 0; l < 2; l++) {
        out[`present.${l}.key`] = new FakeTensor('float32', `k${l}@${step}`, []);
        out[`present.${l}.value`] = new FakeTensor('float32', `v${l}@${step}`, []);
      }
      return out;
    }) as unknown as StepSession['run'],
  };
  return { session, feeds };
}

function fakeRows() {
  const asked: number[][] = [];
  const rows: RowSource = {
    rowValues: R,
    rows: async (ids) => {
      asked.push([...ids]);
      return Float32Array.from({ length: ids.length * R }, (_, i) => ids[Math.floor(i / R)]);
    },
  };
  return { rows, asked };
}

const TensorCtor = FakeTensor as unknown as TensorConstructor;
const values = (t: { data: unknown }) => Array.from(t.data as ArrayLike<number | bigint>, Number);

describe('Decoder', () => {
  it('refuses a graph that takes memory rows without a row source, and takes none for one that does not', () => {
    expect(() => new Decoder({ session: fakeSession().session, Tensor: TensorCtor, config, rows: null })).toThrow(
      'this compute graph takes memory rows, but no row source was given',
    );
    expect(() => new Decoder({ session: fakeSession(false).session, Tensor: TensorCtor, config, rows: null })).not.toThrow();
  });

  it('starts with an empty KV cache for every layer', () => {
    const decoder = new Decoder({ session: fakeSession().session, Tensor: TensorCtor, config, rows: fakeRows().rows });
    const state = decoder.start();
    expect(state.length).toBe(0);
    expect(Object.keys(state.past).sort()).toEqual([
      'past_key_values.0.key',
      'past_key_values.0.value',
      'past_key_values.1.key',
      'past_key_values.1.value',
    ]);
    for (const t of Object.values(state.past)) {
      expect(t).toBeInstanceOf(FakeTensor);
      expect(t).toMatchObject({ type: 'float32', dims: [1, 3, 0, 4] });
      expect((t.data as Float32Array).length).toBe(0);
    }
    // Each layer's tensors are their own.
    expect(state.past['past_key_values.0.key']).not.toBe(state.past['past_key_values.0.value']);
  });

  it('feeds ids, positions, the rows of the step and the cache, and keeps the cache it returns', async () => {
    const { session, feeds } = fakeSession();
    const { rows, asked } = fakeRows();
    const decoder = new Decoder({ session, Tensor: TensorCtor, config, rows });
    const state = decoder.start();
    const first = await decoder.step(state, [4, 2, 3]);
    expect(Array.from(first)).toEqual(Array(15).fill(1));
    expect(state.length).toBe(3);
    expect(state.past).toEqual({
      'past_key_values.0.key': expect.objectContaining({ data: 'k0@1' }),
      'past_key_values.0.value': expect.objectContaining({ data: 'v0@1' }),
      'past_key_values.1.key': expect.objectContaining({ data: 'k1@1' }),
      'past_key_values.1.value': expect.objectContaining({ data: 'v1@1' }),
    });
    const prefill = feeds[0];
    expect(prefill.input_ids).toMatchObject({ type: 'int64', dims: [1, 3] });
    expect(values(prefill.input_ids)).toEqual([4, 2, 3]);
    expect(prefill.input_ids.data).toBeInstanceOf(BigInt64Array);
    expect(prefill.position_ids).toMatchObject({ type: 'int64', dims: [1, 3] });
    expect(values(prefill.position_ids)).toEqual([0, 1, 2]);
    expect(prefill.memory_rows).toMatchObject({ type: 'float32', dims: [1, 3, R] });
    expect(values(prefill.memory_rows)).toEqual([4, 2, 3].flatMap((id) => Array(R).fill(id)));
    expect(prefill['past_key_values.1.value'].dims).toEqual([1, 3, 0, 4]);

    const second = await decoder.step(state, [1]);
    expect(Array.from(second)).toEqual(Array(5).fill(2));
    expect(state.length).toBe(4);
    expect(values(feeds[1].position_ids)).toEqual([3]);
    expect(feeds[1]['past_key_values.1.value'].data).toBe('v1@1');
    expect(feeds[1]['past_key_values.0.key'].data).toBe('k0@1');
    expect(state.past['past_key_values.1.key'].data).toBe('k1@2');
    // Only the layers' own tensors: nothing past the last layer.
    expect(Object.keys(state.past)).toHaveLength(4);
    expect(asked).toEqual([[4, 2, 3], [1]]);
  });

  it('feeds no memory rows to a graph that does not take them', async () => {
    const { session, feeds } = fakeSession(false);
    const { rows, asked } = fakeRows();
    const decoder = new Decoder({ session, Tensor: TensorCtor, config, rows });
    await decoder.step(decoder.start(), [1, 2]);
    expect(Object.keys(feeds[0])).not.toContain('memory_rows');
    expect(asked).toEqual([]);
    expect(decoder.memoryWaitMs).toBe(0);
  });

  it('refuses an empty step and a sequence longer than the context (which it fills exactly)', async () => {
    const decoder = new Decoder({ session: fakeSession().session, Tensor: TensorCtor, config, rows: fakeRows().rows });
    const state = decoder.start();
    await expect(decoder.step(state, [])).rejects.toThrow('step needs at least one token');
    await decoder.step(state, [1, 1, 1, 1, 1]);
    const over = decoder.step(state, [1, 1, 1, 1]);
    await expect(over).rejects.toThrow(InputError);
    await expect(over).rejects.toThrow("sequence of 9 tokens exceeds the model's context of 8");
    expect(state.length).toBe(5);
    await decoder.step(state, [1, 1, 1]);
    expect(state.length).toBe(8);
  });

  it('adds up the time spent waiting for rows, on its clock', async () => {
    const ticks = [10, 25, 100, 101];
    const decoder = new Decoder({
      session: fakeSession().session,
      Tensor: TensorCtor,
      config,
      rows: fakeRows().rows,
      clock: () => ticks.shift()!,
    });
    const state = decoder.start();
    await decoder.step(state, [1]);
    expect(decoder.memoryWaitMs).toBe(15);
    await decoder.step(state, [2]);
    expect(decoder.memoryWaitMs).toBe(16);
  });

  it('uses performance.now without a clock', async () => {
    const decoder = new Decoder({ session: fakeSession().session, Tensor: TensorCtor, config, rows: fakeRows().rows });
    await decoder.step(decoder.start(), [1]);
    expect(Number.isFinite(decoder.memoryWaitMs)).toBe(true);
    expect(decoder.memoryWaitMs).toBeGreaterThanOrEqual(0);
  });
});
