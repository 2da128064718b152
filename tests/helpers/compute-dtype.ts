import onnxProto from 'onnx-proto';
import { readCheckpoint } from '../../cli/checkpoint.ts';
import { openLocalBundle, readServedGraph, type LocalBundle } from '../../cli/local-bundle.ts';
import { servedGraphObjects } from '../../src/bundle/manifest.ts';
import { Decoder } from '../../src/engine/decoder.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { buildDecoderGraph, type WeightSource } from '../../src/model/model.ts';
import { checkpointTensors } from '../../src/model/tensors.ts';
import { sessionOptionsFor } from '../../src/serving/session-options.ts';

type OrtWeb = typeof import('onnxruntime-web');
let ortWeb: OrtWeb | null = null;

async function runtime(): Promise<OrtWeb> {
  if (ortWeb) return ortWeb;
  const ort = (await import('onnxruntime-web/wasm')) as unknown as OrtWeb;
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ortWeb = ort;
  return ort;
}

export interface WebBundle {
  local: LocalBundle;
  decoder: Decoder;
  /** The bytes of the graph the worker loads. */
  graphBytes: number;
  close(): Promise<void>;
}

/** A bundle folder served as the worker serves it (the graph optimized at build time when the bundle has one), in WASM. */
export async function openWebBundle(dir: string): Promise<WebBundle> {
  const ort = await runtime();
  const local = await openLocalBundle(dir);
  const graph = readServedGraph(dir, local.manifest);
  const session = await ort.InferenceSession.create(graph.graph, sessionOptionsFor(graph));
  const decoder = new Decoder({ session, Tensor: ort.Tensor, config: local.manifest.config, rows: local.rows });
  return {
    local,
    decoder,
    graphBytes: servedGraphObjects(local.manifest).reduce((n, ref) => n + ref.bytes, 0),
    close: async () => {
      await session.release();
      await local.core.close();
    },
  };
}

/** Logits at every position of `ids`, one step per context window (perplexity's windows). */
export async function windowLogits(decoder: Decoder, ids: number[]): Promise<Float32Array[]> {
  const C = decoder.config.max_position_embeddings;
  const out: Float32Array[] = [];
  for (let start = 0; start + 1 < ids.length; start += C)
    out.push((await decoder.step(decoder.start(), ids.slice(start, Math.min(start + C, ids.length - 1)))).slice());
  return out;
}

export function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let max = 0;
  a.forEach((window, w) => {
    window.forEach((v, i) => {
      max = Math.max(max, Math.abs(v - b[w][i]));
    });
  });
  return max;
}

/** The operator-set domains a graph imports ('' is the ONNX standard). */
export function opsetDomains(graph: Uint8Array): string[] {
  return (onnxProto.onnx.ModelProto.decode(graph).opsetImport ?? []).map((o) => o.domain ?? '');
}

/** The domains of a graph's nodes, each once, in order of first use. */
export function nodeDomains(graph: Uint8Array): string[] {
  return [...new Set((onnxProto.onnx.ModelProto.decode(graph).graph?.node ?? []).map((n) => n.domain ?? ''))];
}

/** The checkpoint tensors a quantized compute graph holds packed: its initializers named `<tensor>.q` (or `<tensor>.q.rows<first>`, a slice). */
export function quantizedTensorNames(graph: Uint8Array): Set<string> {
  const model = onnxProto.onnx.ModelProto.decode(graph);
  const packed = (model.graph?.initializer ?? []).map((t) => (t.name ?? '').match(/^(.*)\.q(?:\.rows\d+)?$/)?.[1]);
  return new Set(packed.filter((name): name is string => name !== undefined));
}

/**
 * Rounds each row of W [rows, cols] blockwise (32 values), symmetric, to `bits` bits, and returns
 * the values the rounding leaves: s · clamp(round(w / s), −z, z − 1), z = 2^(bits−1),
 * s = max(max⁺ / (z − 1), max(−w⁻) / z) rounded to f32. Written apart from src/model/quantize.ts.
 */
export function fakeQuantize(w: Float32Array, cols: number, bits: number): Float32Array {
  const z = 2 ** (bits - 1);
  const out = new Float32Array(w.length);
  for (let row = 0; row < w.length; row += cols) {
    for (let b = 0; b < cols; b += 32) {
      const block = w.subarray(row + b, row + Math.min(cols, b + 32));
      const scale = Math.fround(Math.max(Math.max(0, ...block) / (z - 1), -Math.min(0, ...block) / z));
      block.forEach((v, j) => {
        out[row + b + j] = scale === 0 ? 0 : scale * Math.min(z - 1, Math.max(-z, Math.round(v / scale)));
      });
    }
  }
  return out;
}

/** Rounds to bfloat16 (8 significant bits against f16's 11), nearest even. */
export function bf16Round(w: Float32Array): Float32Array {
  const bits = new Uint32Array(w.slice().buffer);
  for (let i = 0; i < bits.length; i++) bits[i] = (((bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return new Float32Array(bits.buffer);
}

/** The checkpoint's weights with the tensors `names` replaced by `round(values, columns)`. */
export function roundedWeights(
  checkpointDir: string,
  names: Set<string>,
  round: (values: Float32Array, cols: number) => Float32Array,
): { config: ModelConfig; weights: WeightSource } {
  const { config, weights } = readCheckpoint(checkpointDir);
  const shapes = new Map(checkpointTensors(config).map((t) => [t.name, t.shape]));
  return {
    config,
    weights: {
      tensor: (name) => {
        const values = weights.tensor(name);
        const shape = shapes.get(name);
        return names.has(name) && shape ? round(values, shape[shape.length - 1]) : values;
      },
    },
  };
}

/** An f32 compute graph of `weights`, run in WASM with the memory rows of `rowsFrom` (its tables are the same). */
export async function openWebGraph(
  config: ModelConfig,
  weights: WeightSource,
  rowsFrom: WebBundle,
): Promise<{ decoder: Decoder; close(): Promise<void> }> {
  const ort = await runtime();
  const session = await ort.InferenceSession.create(buildDecoderGraph(config, weights, 'rows-input'));
  return {
    decoder: new Decoder({ session, Tensor: ort.Tensor, config, rows: rowsFrom.local.rows }),
    close: () => session.release(),
  };
}
