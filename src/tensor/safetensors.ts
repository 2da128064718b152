/**
 * The safetensors container (https://github.com/huggingface/safetensors#format):
 * an 8-byte little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {...} }`,
 * then the raw little-endian tensor data (offsets are relative to the end of the header).
 *
 * Hand-written because npm has no maintained JavaScript reader (the `safetensors` package is an
 * abandoned 0.0.1); the format is small enough that this file is the whole of it. It works on
 * byte ranges so callers can read a header without loading a multi-gigabyte file.
 */
import { InputError } from '../errors.ts';
import { BYTES_PER_ELEMENT, type FloatDtype } from './dtype.ts';

const DTYPES: Record<string, FloatDtype> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  name: string;
  dtype: FloatDtype;
  shape: number[];
  /** Absolute byte range of the data within the file. */
  begin: number;
  end: number;
}

/** Reads the header length from the first 8 bytes of a file. */
export function headerLength(first8: Uint8Array, source: string): number {
  if (first8.byteLength < 8) throw new InputError(`${source}: not a safetensors file (shorter than 8 bytes)`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new InputError(`${source}: not a safetensors file (header length ${n})`);
  return Number(n);
}

/** Parses the JSON header (the N bytes after the length) into entries with absolute offsets. */
export function parseHeader(json: Uint8Array, fileBytes: number, source: string): SafetensorsEntry[] {
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(json));
  } catch {
    throw new InputError(`${source}: not a safetensors file (header is not JSON)`);
  }
  const dataStart = 8 + json.byteLength;
  const entries: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = value as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const floatDtype = DTYPES[dtype];
    if (!floatDtype) throw new InputError(`${source}: tensor ${name} has dtype ${dtype}; flexmem reads F32, F16 and BF16`);
    const [begin, end] = data_offsets;
    const expected = shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[floatDtype];
    if (end - begin !== expected || dataStart + end > fileBytes) {
      throw new InputError(`${source}: tensor ${name} has a corrupt byte range [${begin}, ${end}) for shape [${shape}] ${dtype}`);
    }
    entries.push({ name, dtype: floatDtype, shape, begin: dataStart + begin, end: dataStart + end });
  }
  return entries;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
}

/**
 * Builds the prefix (length + JSON header) of a file holding `tensors` in order, all of one
 * dtype. The caller then writes each tensor's encoded bytes in the same order.
 */
export function encodeHeader(tensors: TensorToWrite[], dtype: 'f32' | 'f16', metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[dtype];
    header[t.name] = { dtype: dtype.toUpperCase(), shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8; // keep the data 8-byte aligned
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}
