/**
 * Makes an ORT-format graph (onnxruntime's flatbuffer, written by cli/optimize-graph.ts) the same
 * bytes on every build of the same graph, as a bundle's content-derived version id requires
 * (src/bundle/manifest.ts). onnxruntime-node writes the graph itself deterministically, but its
 * kernel type string resolver (a map of op id → type-constraint arguments, needed to match kernels
 * when loading) comes out of a hash map in a different order on every save. This rewrites that one
 * table in sorted order, in the bytes it already occupies: nothing else in the file moves.
 *
 * The schema is onnxruntime's ort.fbs (InferenceSession { ort_version, model, session_state
 * (deprecated), kernel_type_str_resolver }; KernelTypeStrResolver { op_kernel_type_str_args:
 * [OpIdKernelTypeStrArgsEntry { op_id, kernel_type_str_args: [KernelTypeStrArgsEntry {
 * kernel_type_str, args: [ArgTypeAndIndex { arg_type: int8, index: uint32 }] }] }] }).
 */
import { InputError } from '../src/errors.ts';

interface Arg {
  argType: number;
  index: number;
}
interface TypeStrEntry {
  typeStr: Uint8Array;
  args: Arg[];
}
interface OpEntry {
  opId: Uint8Array;
  typeStrs: TypeStrEntry[];
}

const INFERENCE_SESSION_RESOLVER_FIELD = 3;
const INFERENCE_SESSION_MODEL_FIELD = 1;
const INFERENCE_SESSION_VERSION_FIELD = 0;

/** A reader of one flatbuffer that records every byte range the objects it visits occupy. */
class Reader {
  readonly view: DataView;
  /** [start, end) of each table, vector, string and vtable read. */
  readonly extents: [number, number][] = [];

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** The position of field `index` of the table at `table`, or null when it is absent. */
  field(table: number, index: number): number | null {
    const vtable = table - this.view.getInt32(table, true);
    const vtableBytes = this.view.getUint16(vtable, true);
    this.extents.push([vtable, vtable + vtableBytes], [table, table + this.view.getUint16(vtable + 2, true)]);
    const slot = 4 + 2 * index;
    const offset = slot < vtableBytes ? this.view.getUint16(vtable + slot, true) : 0;
    return offset ? table + offset : null;
  }

  deref(position: number): number {
    return position + this.view.getUint32(position, true);
  }

  /** The positions of the tables a vector of offsets at `position` (a field) points to. */
  tables(position: number | null): number[] {
    if (position === null) return [];
    const vector = this.deref(position);
    const length = this.view.getUint32(vector, true);
    this.extents.push([vector, vector + 4 + 4 * length]);
    return Array.from({ length }, (_, i) => this.deref(vector + 4 + 4 * i));
  }

  string(position: number | null): Uint8Array {
    if (position === null) return new Uint8Array(0);
    const start = this.deref(position);
    const length = this.view.getUint32(start, true);
    this.extents.push([start, start + 4 + length + 1]);
    return this.bytes.slice(start + 4, start + 4 + length);
  }
}

function readResolver(reader: Reader, resolver: number): OpEntry[] {
  return reader.tables(reader.field(resolver, 0)).map((op) => ({
    opId: reader.string(reader.field(op, 0)),
    typeStrs: reader.tables(reader.field(op, 1)).map((entry) => ({
      typeStr: reader.string(reader.field(entry, 0)),
      args: reader.tables(reader.field(entry, 1)).map((arg) => {
        const argType = reader.field(arg, 0);
        const index = reader.field(arg, 1);
        return {
          argType: argType === null ? 0 : reader.view.getInt8(argType),
          index: index === null ? 0 : reader.view.getUint32(index, true),
        };
      }),
    })),
  }));
}

const compareBytes = (a: Uint8Array, b: Uint8Array) => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
};

/** Writes flatbuffer objects forward from `start`: a referenced object always lands after its reference, as uoffsets need. */
class Writer {
  private readonly view: DataView;
  private readonly vtables = new Map<string, number>();

  constructor(
    private readonly bytes: Uint8Array,
    public cursor: number,
    private readonly end: number,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private alloc(size: number, align: number): number {
    const at = Math.ceil(this.cursor / align) * align;
    if (at + size > this.end) throw new InputError('the ORT-format graph has no room to rewrite its kernel type string resolver');
    this.cursor = at + size;
    return at;
  }

  /** A table with `fields` (byte offset in the table, or 0 when absent) and `size` inline bytes; returns its position. */
  table(fields: number[], size: number): number {
    const key = `${size}:${fields.join(',')}`;
    let vtable = this.vtables.get(key);
    if (vtable === undefined) {
      vtable = this.alloc(4 + 2 * fields.length, 2);
      this.view.setUint16(vtable, 4 + 2 * fields.length, true);
      this.view.setUint16(vtable + 2, size, true);
      for (const [i, offset] of fields.entries()) this.view.setUint16(vtable + 4 + 2 * i, offset, true);
      this.vtables.set(key, vtable);
    }
    const table = this.alloc(size, 4);
    this.view.setInt32(table, table - vtable, true);
    return table;
  }

  /** Points the uoffset at `from` to `to`. */
  link(from: number, to: number): void {
    this.view.setUint32(from, to - from, true);
  }

  vector(length: number): number {
    const vector = this.alloc(4 + 4 * length, 4);
    this.view.setUint32(vector, length, true);
    return vector;
  }

  string(value: Uint8Array): number {
    const at = this.alloc(4 + value.length + 1, 4);
    this.view.setUint32(at, value.length, true);
    this.bytes.set(value, at + 4);
    this.bytes[at + 4 + value.length] = 0;
    return at;
  }

  setU32(position: number, value: number): void {
    this.view.setUint32(position, value, true);
  }

  setI8(position: number, value: number): void {
    this.view.setInt8(position, value);
  }
}

/**
 * Tables and vectors first, then the argument tables and strings, each written once however many
 * entries share it (as onnxruntime's builder shares them): a shared object must lie after every
 * reference to it.
 */
function writeResolver(writer: Writer, ops: OpEntry[]): number {
  const strings = new Map<string, number[]>();
  const argTables = new Map<string, number[]>();
  const later = (map: Map<string, number[]>, key: string, from: number) => {
    map.set(key, [...(map.get(key) ?? []), from]);
  };
  const text = new TextDecoder();
  const resolver = writer.table([4], 8);
  const opVector = writer.vector(ops.length);
  writer.link(resolver + 4, opVector);
  ops.forEach((op, i) => {
    const opTable = writer.table([4, 8], 12);
    writer.link(opVector + 4 + 4 * i, opTable);
    later(strings, text.decode(op.opId), opTable + 4);
    const entries = writer.vector(op.typeStrs.length);
    writer.link(opTable + 8, entries);
    op.typeStrs.forEach((entry, j) => {
      const entryTable = writer.table([4, 8], 12);
      writer.link(entries + 4 + 4 * j, entryTable);
      later(strings, text.decode(entry.typeStr), entryTable + 4);
      const args = writer.vector(entry.args.length);
      writer.link(entryTable + 8, args);
      for (const [k, arg] of entry.args.entries()) later(argTables, `${arg.argType}:${arg.index}`, args + 4 + 4 * k);
    });
  });
  for (const [key, froms] of argTables) {
    const [argType, index] = key.split(':').map(Number);
    // Defaults are left out, as flatbuffers' own builder does: arg_type INPUT (0), index 0.
    const table = writer.table([argType ? 8 : 0, index ? 4 : 0], argType ? 9 : index ? 8 : 4);
    if (index) writer.setU32(table + 4, index);
    if (argType) writer.setI8(table + 8, argType);
    for (const from of froms) writer.link(from, table);
  }
  const encoder = new TextEncoder();
  for (const [value, froms] of strings) {
    const at = writer.string(encoder.encode(value));
    for (const from of froms) writer.link(from, at);
  }
  return resolver;
}

/** `graph` (ORT format) with its kernel type string resolver in sorted order; the other bytes unchanged. */
export function canonicalOrtGraph(graph: Uint8Array): Uint8Array {
  const out = graph.slice();
  const reader = new Reader(out);
  const root = reader.deref(0);
  const resolverField = reader.field(root, INFERENCE_SESSION_RESOLVER_FIELD);
  if (resolverField === null) return out;
  const rootExtents = reader.extents.splice(0);
  // Everything the rest of the file holds lies at or above the lowest of the model and version objects.
  const model = reader.field(root, INFERENCE_SESSION_MODEL_FIELD);
  const version = reader.field(root, INFERENCE_SESSION_VERSION_FIELD);
  reader.extents.length = 0;
  const starts = [model, version].filter((p): p is number => p !== null).map((p) => reader.deref(p));
  if (model !== null) starts.push(reader.deref(model) - reader.view.getInt32(reader.deref(model), true));
  const rest = Math.min(...starts, out.length);
  const resolver = reader.deref(resolverField);
  const ops = readResolver(reader, resolver);
  // The resolver's own objects; a vtable it shares with the graph (deduplicated by the builder) stays where it is.
  const own = reader.extents.filter(([start]) => start < rest);
  const start = Math.min(...own.map(([s]) => s));
  const end = Math.max(...own.map(([, e]) => e));
  if (end > rest || rootExtents.some(([s, e]) => s < end && e > start) || resolverField >= start)
    throw new InputError('unexpected ORT-format layout: the kernel type string resolver is not a block of its own');
  for (const op of ops) op.typeStrs.sort((a, b) => compareBytes(a.typeStr, b.typeStr));
  ops.sort((a, b) => compareBytes(a.opId, b.opId));
  out.fill(0, start, end);
  const writer = new Writer(out, start, end);
  const rewritten = writeResolver(writer, ops);
  new DataView(out.buffer, out.byteOffset).setUint32(resolverField, rewritten - resolverField, true);
  return out;
}
