/**
 * The numbers of a quantized compute graph (`flexmem build --compute-dtype`): how a weight matrix
 * becomes the bytes and scales that onnxruntime's `MatMulNBits` and `GatherBlockQuantized` read.
 * Why these operators, and what each dtype costs, is measured in docs/quantization.md.
 *
 * Blockwise, weight-only, symmetric, round to nearest. A matrix W [rows, cols] is quantized along
 * its columns, the input features K of a checkpoint Linear weight [out, in] (or the hidden size of
 * an embedding row [V, d]), in blocks of `blockSize` values:
 *
 *   z       = 2^(bits−1)                                    the zero point (the operators' default)
 *   s[n, b] = max( max(W⁺ in block) / (z − 1), max(−W⁻ in block) / z )   no value is clipped
 *   q       = clamp(round(w / s) + z, 0, 2^bits − 1)         stored unsigned
 *   w      ≈ s · (q − z)                                      what the operators compute with
 *
 * A block past the last column is padded with q = z (the value 0). Packing, the layout of both
 * operators: row n, block b, then the block's values; bits = 8 is one q per byte, bits = 4 two per
 * byte, value j of a block in byte ⌊j / 2⌋, the low nibble first.
 */
import { encodeFloats } from '../tensor/dtype.ts';

export const COMPUTE_DTYPES = ['f32', 'f16', 'int8', 'int4'] as const;
/** The dtype of the compute graph's matrix weights; norms and other vectors stay f32. */
export type ComputeDtype = (typeof COMPUTE_DTYPES)[number];

/** Values per block: the smaller of the two blocks measured, for the smaller error (docs/quantization.md). */
export const QUANT_BLOCK_SIZE = 32;

export const bitsOf = (dtype: 'int8' | 'int4'): 4 | 8 => (dtype === 'int8' ? 8 : 4);

export interface BlockQuantized {
  bits: 4 | 8;
  blockSize: number;
  rows: number;
  cols: number;
  /** ⌈cols / blockSize⌉ */
  blocks: number;
  /** Packed q, [rows, blocks, blockSize · bits / 8]. */
  data: Uint8Array;
  /** s, [rows, blocks], each already rounded to f32 (q was computed with the stored scale). */
  scales: Float32Array;
}

/** Quantizes W [rows, cols] (row-major) blockwise along cols; see the file comment for the formulas. */
export function quantizeBlockwise(w: Float32Array, rows: number, cols: number, bits: 4 | 8, blockSize = QUANT_BLOCK_SIZE): BlockQuantized {
  if (w.length !== rows * cols) throw new Error(`quantizeBlockwise: ${w.length} values for a ${rows}×${cols} matrix`);
  const z = 2 ** (bits - 1);
  const qMax = 2 ** bits - 1;
  const blocks = Math.ceil(cols / blockSize);
  const blobBytes = (blockSize * bits) / 8;
  const data = new Uint8Array(rows * blocks * blobBytes);
  const scales = new Float32Array(rows * blocks);
  for (let n = 0; n < rows; n++) {
    for (let b = 0; b < blocks; b++) {
      const start = n * cols + b * blockSize;
      const count = Math.min(blockSize, cols - b * blockSize);
      let maxPositive = 0;
      let maxNegative = 0;
      for (let j = 0; j < count; j++) {
        const v = w[start + j];
        if (v > maxPositive) maxPositive = v;
        else if (-v > maxNegative) maxNegative = -v;
      }
      const scale = Math.fround(Math.max(maxPositive / (z - 1), maxNegative / z));
      scales[n * blocks + b] = scale;
      const blob = (n * blocks + b) * blobBytes;
      for (let j = 0; j < blockSize; j++) {
        const q = j < count && scale > 0 ? Math.min(qMax, Math.max(0, Math.round(w[start + j] / scale) + z)) : z;
        if (bits === 8) data[blob + j] = q;
        else data[blob + (j >> 1)] |= j & 1 ? q << 4 : q;
      }
    }
  }
  return { bits, blockSize, rows, cols, blocks, data, scales };
}

/** w ≈ s · (q − z) for every value: the matrix the operators multiply by, [rows, cols]. */
export function dequantizeBlockwise(m: BlockQuantized): Float32Array {
  const z = 2 ** (m.bits - 1);
  const blobBytes = (m.blockSize * m.bits) / 8;
  const out = new Float32Array(m.rows * m.cols);
  for (let n = 0; n < m.rows; n++) {
    for (let c = 0; c < m.cols; c++) {
      const b = Math.floor(c / m.blockSize);
      const j = c % m.blockSize;
      const blob = (n * m.blocks + b) * blobBytes;
      const q = m.bits === 8 ? m.data[blob + j] : (m.data[blob + (j >> 1)] >> (j & 1 ? 4 : 0)) & 0x0f;
      out[n * m.cols + c] = m.scales[n * m.blocks + b] * (q - z);
    }
  }
  return out;
}

/** W as little-endian IEEE half floats (round to nearest even), for the f16 graph. */
export const toFloat16Bytes = (w: Float32Array): Uint8Array => encodeFloats(w, 'f16');
