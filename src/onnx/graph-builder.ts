/**
 * A small builder for ONNX graphs over the official protobuf schema (`onnx-proto`).
 * The model code (src/model/) calls its op helpers in forward-pass order; this file knows
 * nothing about transformers. Values are referred to by name, as in ONNX itself.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** ONNX opset the graphs target: ReduceMean still takes `axes` as an attribute here. */
export const OPSET = 17;

/** onnxruntime's contrib operators (MatMulNBits, GatherBlockQuantized): imported only by a graph that uses one. */
export const CONTRIB_DOMAIN = 'com.microsoft';

export type ElemType = 'float' | 'int64' | 'bool' | 'float16' | 'uint8' | 'int32';
const ELEM_TYPE: Record<ElemType, number> = {
  float: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  float16: onnx.TensorProto.DataType.FLOAT16,
  uint8: onnx.TensorProto.DataType.UINT8,
  int32: onnx.TensorProto.DataType.INT32,
};

/** A dimension: a fixed size or a symbolic name such as "batch". */
export type Dim = number | string;
type AttrValue = number | number[] | string;

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly initializerNames = new Set<string>();
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly used = new Map<string, number>();
  private readonly domains = new Set<string>();
  private scopes: string[] = [];

  constructor(private readonly graphName: string) {}

  /** Runs `body` with names prefixed by `scope` (e.g. "layers.3/attn"), for readable graphs. */
  scoped<T>(scope: string, body: () => T): T {
    this.scopes.push(scope);
    try {
      return body();
    } finally {
      this.scopes.pop();
    }
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares `value` as a graph output under `name` (through an Identity if the names differ). */
  output(value: string, name: string, type: ElemType, dims: Dim[]): string {
    if (value !== name) this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `${name}/identity` });
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  hasInitializer(name: string): boolean {
    return this.initializerNames.has(name);
  }

  /** Adds a constant tensor stored in the model file. */
  initializer(name: string, data: Float32Array | BigInt64Array, dims: number[]): string {
    if (this.initializerNames.has(name)) throw new Error(`initializer ${name} added twice`);
    const type = data instanceof Float32Array ? 'float' : 'int64';
    this.initializers.push({
      name,
      dims,
      dataType: ELEM_TYPE[type],
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    this.initializerNames.add(name);
    return name;
  }

  /** Adds a constant tensor of any element type from its little-endian bytes. */
  rawInitializer(name: string, type: ElemType, bytes: Uint8Array, dims: number[]): string {
    if (this.initializerNames.has(name)) throw new Error(`initializer ${name} added twice`);
    this.initializers.push({ name, dims, dataType: ELEM_TYPE[type], rawData: bytes });
    this.initializerNames.add(name);
    return name;
  }

  constFloat(values: number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh('const'), Float32Array.from(values), dims);
  }

  constInt64(values: number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh('const'), BigInt64Array.from(values.map(BigInt)), dims);
  }

  /** Adds a node and returns the names of its outputs; `domain` for an operator outside the ONNX standard. */
  nodeN(opType: string, inputs: string[], outputCount: number, attrs: Record<string, AttrValue> = {}, domain?: string): string[] {
    const name = this.fresh(opType);
    const outputs = Array.from({ length: outputCount }, (_, i) => (outputCount === 1 ? name : `${name}:${i}`));
    const attributes = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    // The field is left out for standard operators, so their nodes encode as they always did.
    const node = { opType, input: inputs, output: outputs, name, attribute: attributes };
    this.nodes.push(domain ? { ...node, domain } : node);
    if (domain) this.domains.add(domain);
    return outputs;
  }

  node(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.nodeN(opType, inputs, 1, attrs, domain)[0];
  }

  // Thin op helpers, so the model reads like math.
  add = (a: string, b: string) => this.node('Add', [a, b]);
  mul = (a: string, b: string) => this.node('Mul', [a, b]);
  div = (a: string, b: string) => this.node('Div', [a, b]);
  matmul = (a: string, b: string) => this.node('MatMul', [a, b]);
  sigmoid = (x: string) => this.node('Sigmoid', [x]);
  neg = (x: string) => this.node('Neg', [x]);
  sqrt = (x: string) => this.node('Sqrt', [x]);
  softmax = (x: string, axis = -1) => this.node('Softmax', [x], { axis });
  gather = (data: string, indices: string, axis = 0) => this.node('Gather', [data, indices], { axis });
  concat = (xs: string[], axis: number) => this.node('Concat', xs, { axis });
  reshape = (x: string, shape: number[]) => this.node('Reshape', [x, this.constInt64(shape)]);
  transpose = (x: string, perm: number[]) => this.node('Transpose', [x], { perm });
  unsqueeze = (x: string, axes: number[]) => this.node('Unsqueeze', [x, this.constInt64(axes)]);
  reduceMean = (x: string, axes: number[]) => this.node('ReduceMean', [x], { axes, keepdims: 1 });
  cast = (x: string, to: ElemType) => this.node('Cast', [x], { to: ELEM_TYPE[to] });
  slice = (x: string, start: number, end: number, axis: number) =>
    this.node('Slice', [x, this.constInt64([start]), this.constInt64([end]), this.constInt64([axis])]);
  /** Size of dimension `axis` of `x`, as an int64 scalar. */
  dim = (x: string, axis: number) => this.node('Gather', [this.node('Shape', [x]), this.constInt64([axis], [])], { axis: 0 });

  /** Serializes the graph as an ONNX model (protobuf bytes). */
  toModel(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'flexmem',
      opsetImport: [{ domain: '', version: OPSET }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private fresh(kind: string): string {
    const base = [...this.scopes, kind].join('/');
    const n = this.used.get(base) ?? 0;
    this.used.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  return Number.isInteger(value) ? { name, type: T.INT, i: value } : { name, type: T.FLOAT, f: value };
}
