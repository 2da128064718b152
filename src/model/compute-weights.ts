/**
 * The compute graph's matrix weights in a dtype other than f32 (`flexmem build --compute-dtype`):
 * the Linear layers, the token embedding and the LM head. The operators are the ones measured in
 * docs/quantization.md for onnxruntime-web's WASM build:
 *
 *   f16        the weight stored as float16, `Cast` to float at load (onnxruntime folds the Cast
 *              of an initializer, so it computes as f32 and the object is half the size)
 *   int8/int4  `MatMulNBits` (weight-only, blockwise, src/model/quantize.ts) for Linear layers and
 *              the head (in slices of headSliceRows(d)); `GatherBlockQuantized` for the embedding.
 *              Both operators read packed rows [rows, blocks, block bytes].
 *
 * The f32 graph never comes here (src/model/model.ts keeps its own code for it, so its bytes do
 * not change).
 */
import { CONTRIB_DOMAIN, type GraphBuilder } from '../onnx/graph-builder.ts';
import { bitsOf, QUANT_BLOCK_SIZE, quantizeBlockwise, toFloat16Bytes, type ComputeDtype } from './quantize.ts';

export type QuantizedDtype = Exclude<ComputeDtype, 'f32'>;

/**
 * Vocabulary rows per MatMulNBits of a quantized LM head of width d. onnxruntime-web's WASM kernel
 * has no 4- or 8-bit GEMM: each run dequantizes the whole weight into an f32 scratch buffer, and a
 * wasm memory never shrinks, so one head of V rows would hold V × d × 4 bytes of the isolate for
 * good (docs/BENCHMARKS.md §4b). Slices bound that buffer: at most 4,096 rows and 4 MiB (a power of
 * two of rows: 2,048 at d 512, 1,024 at d 768 and 1,024). With 8 MiB a 102.8M-parameter int4 model's
 * wasm heap took the next growth step (20 MiB) at a context of 256 tokens; with 4 MiB it did not
 * (docs/architecture.md "Large models in 128 MB").
 */
export function headSliceRows(d: number): number {
  return Math.min(4096, 2 ** Math.floor(Math.log2((4 << 20) / (4 * d))));
}

interface Packed {
  data: string;
  /** [N, blocks], for MatMulNBits. */
  scales: string;
  rows: number;
  cols: number;
  blocks: number;
}

export class ComputeWeights {
  /** Each quantized tensor's packed bytes and scales: for the gather's copy of the scales and the head's slices. */
  private readonly quantized = new Map<string, { data: Uint8Array; scales: Float32Array }>();

  constructor(
    private readonly g: GraphBuilder,
    private readonly dtype: QuantizedDtype,
    private readonly weights: { tensor(name: string): Float32Array },
    private readonly shapeOf: (name: string) => number[],
  ) {}

  /** y = x · Wᵀ for a checkpoint Linear weight W [out, in]; x [..., in]. */
  linear(x: string, name: string): string {
    const g = this.g;
    if (this.dtype === 'f16') {
      const transposed = `${name}.T.f16`;
      if (!g.hasInitializer(transposed)) {
        const [out, inp] = this.shapeOf(name);
        g.rawInitializer(transposed, 'float16', toFloat16Bytes(transpose(this.weights.tensor(name), out, inp)), [inp, out]);
      }
      return g.matmul(x, g.cast(transposed, 'float'));
    }
    return this.matMulNBits(x, this.packedRows(name, 0, this.shapeOf(name)[0]));
  }

  /**
   * E[ids] for the embedding E [V, d] and ids [B, T]: [B, T, d]. Past headSliceRows(d) rows it reads
   * the head's slices (for a tied head, the packed rows are then stored once): one gather per slice,
   * each row taken from the slice its id falls in and 0 from the others, so the sum is exact.
   */
  embed(ids: string, name: string): string {
    const g = this.g;
    if (this.dtype === 'f16') return g.cast(g.gather(this.float16(name), ids), 'float');
    const [V, d] = this.shapeOf(name);
    const sliceRows = headSliceRows(d);
    if (V <= sliceRows) return this.gatherRows(name, 0, V, g.cast(ids, 'int32'));
    const parts: string[] = [];
    for (let first = 0; first < V; first += sliceRows) {
      const count = Math.min(sliceRows, V - first);
      const local = g.node('Sub', [ids, g.constInt64([first], [])]);
      const zero = g.constInt64([0], []);
      const inSlice = g.node('And', [g.node('GreaterOrEqual', [local, zero]), g.node('Less', [local, g.constInt64([count], [])])]);
      const rows = this.gatherRows(name, first, count, g.cast(g.node('Where', [inSlice, local, zero]), 'int32'));
      parts.push(g.node('Where', [g.unsqueeze(inSlice, [-1]), rows, g.constFloat([0], [])]));
    }
    return g.node('Sum', parts);
  }

  /** Rows [first, first + count) of E gathered at int32 `ids` (relative to `first`): [B, T, d]. */
  private gatherRows(name: string, first: number, count: number, ids: string): string {
    const g = this.g;
    const p = this.packedRows(name, first, count, false);
    const blockScales = `${name}.scales.gather${this.suffixOf(name, first, count)}`; // GatherBlockQuantized wants scales of the data's rank
    if (!g.hasInitializer(blockScales)) {
      const scales = this.quantizedOf(name).scales.subarray(first * p.blocks, (first + count) * p.blocks);
      g.rawInitializer(blockScales, 'float', bytesOf(scales), [count, p.blocks, 1]);
    }
    // Its kernel in onnxruntime-web takes int32 indices only.
    const gathered = g.node(
      'GatherBlockQuantized',
      [p.data, ids, blockScales],
      { gather_axis: 0, quantize_axis: 2, block_size: QUANT_BLOCK_SIZE, bits: this.bits() },
      CONTRIB_DOMAIN,
    ); // [..., blocks, block]
    const rows = g.reshape(gathered, [0, 0, p.blocks * QUANT_BLOCK_SIZE]); // [B, T, padded d]
    return p.blocks * QUANT_BLOCK_SIZE === p.cols ? rows : g.slice(rows, 0, p.cols, 2);
  }

  /**
   * flat · Wᵀ for the head W [V, d] (the embedding when tied); flat [B·T, d] -> [B·T, V], in slices of
   * headSliceRows(d) rows (the embedding gathers from the same slices).
   */
  head(flat: string, name: string): string {
    const g = this.g;
    if (this.dtype === 'f16') return g.node('Gemm', [flat, g.cast(this.float16(name), 'float')], { transB: 1 });
    const [V, d] = this.shapeOf(name);
    const sliceRows = headSliceRows(d);
    if (V <= sliceRows) return this.matMulNBits(flat, this.packedRows(name, 0, V));
    const parts: string[] = [];
    for (let first = 0; first < V; first += sliceRows)
      parts.push(this.matMulNBits(flat, this.packedRows(name, first, Math.min(sliceRows, V - first))));
    return g.concat(parts, -1);
  }

  private bits(): 4 | 8 {
    if (this.dtype === 'f16') throw new Error('f16 weights are not packed');
    return bitsOf(this.dtype);
  }

  private matMulNBits(x: string, p: Packed): string {
    const attrs = { K: p.cols, N: p.rows, bits: this.bits(), block_size: QUANT_BLOCK_SIZE };
    return this.g.node('MatMulNBits', [x, p.data, p.scales], attrs, CONTRIB_DOMAIN);
  }

  /** The checkpoint tensor as float16, same name and layout with a `.f16` suffix. */
  private float16(name: string): string {
    const f16 = `${name}.f16`;
    if (!this.g.hasInitializer(f16)) this.g.rawInitializer(f16, 'float16', toFloat16Bytes(this.weights.tensor(name)), this.shapeOf(name));
    return f16;
  }

  /** Initializer-name suffix of rows [first, first + count) of W: none for all of it. */
  private suffixOf(name: string, first: number, count: number): string {
    return first === 0 && count === this.shapeOf(name)[0] ? '' : `.rows${first}`;
  }

  /** W [rows, cols] quantized once per name (a tied embedding and head share it). */
  private quantizedOf(name: string): { data: Uint8Array; scales: Float32Array } {
    let q = this.quantized.get(name);
    if (!q) {
      const [rows, cols] = this.shapeOf(name);
      q = quantizeBlockwise(this.weights.tensor(name), rows, cols, this.bits());
      this.quantized.set(name, q);
    }
    return q;
  }

  /**
   * Rows [first, first + count) of W packed, as initializers added on first use: `.q` and `.scales`
   * for the whole matrix, `.q.rows<first>` and `.scales.rows<first>` for a slice of it.
   */
  private packedRows(name: string, first: number, count: number, withScales = true): Packed {
    const [rows, cols] = this.shapeOf(name);
    const blocks = Math.ceil(cols / QUANT_BLOCK_SIZE);
    const suffix = this.suffixOf(name, first, count);
    const data = `${name}.q${suffix}`;
    const scales = `${name}.scales${suffix}`;
    const q = this.quantizedOf(name);
    const rowBytes = q.data.length / rows;
    if (!this.g.hasInitializer(data))
      this.g.rawInitializer(data, 'uint8', q.data.subarray(first * rowBytes, (first + count) * rowBytes), [
        count,
        blocks,
        rowBytes / blocks,
      ]);
    if (withScales && !this.g.hasInitializer(scales))
      this.g.rawInitializer(scales, 'float', bytesOf(q.scales.subarray(first * blocks, (first + count) * blocks)), [count, blocks]);
    return { data, scales, rows: count, cols, blocks };
  }
}

/** W [rows, cols] -> Wᵀ [cols, rows]. */
function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
