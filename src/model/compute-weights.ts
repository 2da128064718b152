/**
 * The compute graph's matrix weights in a dtype other than f32 (`flexmem build --compute-dtype`):
 * the Linear layers, the token embedding and the LM head. The operators are the ones measured in
 * docs/quantization.md for onnxruntime-web's WASM build:
 *
 *   f16        the weight stored as float16, `Cast` to float at load (onnxruntime folds the Cast
 *              of an initializer, so it computes as f32 and the object is half the size)
 *   int8/int4  `MatMulNBits` (weight-only, blockwise, src/model/quantize.ts) for Linear layers and
 *              the head; `GatherBlockQuantized` for the embedding. A tied embedding and head read
 *              one packed tensor, [V, blocks, block bytes]: the layout of both operators.
 *
 * The f32 graph never comes here (src/model/model.ts keeps its own code for it, so its bytes do
 * not change).
 */
import { CONTRIB_DOMAIN, type GraphBuilder } from '../onnx/graph-builder.ts';
import { bitsOf, QUANT_BLOCK_SIZE, quantizeBlockwise, toFloat16Bytes, type ComputeDtype } from './quantize.ts';

export type QuantizedDtype = Exclude<ComputeDtype, 'f32'>;

interface Packed {
  data: string;
  /** [N, blocks], for MatMulNBits. */
  scales: string;
  rows: number;
  cols: number;
  blocks: number;
}

export class ComputeWeights {
  /** The scales of each packed tensor, for the gather's copy of them. */
  private readonly scales = new Map<string, Float32Array>();

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
    return this.matMulNBits(x, this.packed(name));
  }

  /** E[ids] for the embedding E [V, d] and ids [B, T]: [B, T, d]. */
  embed(ids: string, name: string): string {
    const g = this.g;
    if (this.dtype === 'f16') return g.cast(g.gather(this.float16(name), ids), 'float');
    const p = this.packed(name);
    const blockScales = `${name}.scales.gather`; // GatherBlockQuantized wants scales of the data's rank
    if (!g.hasInitializer(blockScales)) g.rawInitializer(blockScales, 'float', bytesOf(this.scalesOf(name)), [p.rows, p.blocks, 1]);
    // Its kernel in onnxruntime-web takes int32 indices only.
    const gathered = g.node(
      'GatherBlockQuantized',
      [p.data, g.cast(ids, 'int32'), blockScales],
      { gather_axis: 0, quantize_axis: 2, block_size: QUANT_BLOCK_SIZE, bits: this.bits() },
      CONTRIB_DOMAIN,
    ); // [..., blocks, block]
    const rows = g.reshape(gathered, [0, 0, p.blocks * QUANT_BLOCK_SIZE]); // [B, T, padded d]
    return p.blocks * QUANT_BLOCK_SIZE === p.cols ? rows : g.slice(rows, 0, p.cols, 2);
  }

  /** flat · Wᵀ for the head W [V, d] (the embedding when tied); flat [B·T, d] -> [B·T, V]. */
  head(flat: string, name: string): string {
    const g = this.g;
    if (this.dtype === 'f16') return g.node('Gemm', [flat, g.cast(this.float16(name), 'float')], { transB: 1 });
    return this.matMulNBits(flat, this.packed(name));
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

  private scalesOf(name: string): Float32Array {
    const s = this.scales.get(name);
    if (!s) throw new Error(`${name} has not been quantized`);
    return s;
  }

  /** W [rows, cols] quantized once per name (a tied embedding and head share it): `.q` and `.scales`. */
  private packed(name: string): Packed {
    const [rows, cols] = this.shapeOf(name);
    const blocks = Math.ceil(cols / QUANT_BLOCK_SIZE);
    const data = `${name}.q`;
    const scales = `${name}.scales`;
    if (!this.g.hasInitializer(data)) {
      const q = quantizeBlockwise(this.weights.tensor(name), rows, cols, this.bits());
      this.g.rawInitializer(data, 'uint8', q.data, [rows, blocks, q.data.length / (rows * blocks)]);
      this.g.rawInitializer(scales, 'float', bytesOf(q.scales), [rows, blocks]);
      this.scales.set(name, q.scales);
    }
    return { data, scales, rows, cols, blocks };
  }
}

/** W [rows, cols] -> Wᵀ [cols, rows]. */
function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
