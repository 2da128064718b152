/** Reading and writing checkpoint folders (docs/checkpoint-format.md) on the local file system. */
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../src/errors.ts';
import { parseConfig, type ModelConfig } from '../src/model/config.ts';
import type { WeightSource } from '../src/model/model.ts';
import { checkpointTensors, type TensorSpec } from '../src/model/tensors.ts';
import { decodeFloats, encodeFloats } from '../src/tensor/dtype.ts';
import { encodeHeader, headerLength, parseHeader, type SafetensorsEntry } from '../src/tensor/safetensors.ts';
import { TextTokenizer } from '../src/tokenizer/tokenizer.ts';

export interface Checkpoint {
  dir: string;
  config: ModelConfig;
  tokenizerJson: unknown;
  weights: WeightSource;
}

export function readJsonFile(path: string, what: string): unknown {
  if (!existsSync(path)) throw new InputError(`${what} not found: ${path}`);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new InputError(`${path}: not valid JSON (${(error as Error).message})`);
  }
}

/** Opens a checkpoint folder and checks it completely before any weight is read. */
export function readCheckpoint(dir: string): Checkpoint {
  if (!existsSync(dir)) throw new InputError(`checkpoint folder not found: ${dir}`);
  const config = parseConfig(readJsonFile(join(dir, 'config.json'), 'config.json'), join(dir, 'config.json'));
  const tokenizerJson = readJsonFile(join(dir, 'tokenizer.json'), 'tokenizer.json');
  const tokenizer = new TextTokenizer(tokenizerJson);
  if (tokenizer.vocabSize !== config.vocab_size) {
    throw new InputError(`tokenizer.json has ${tokenizer.vocabSize} tokens but config.json has vocab_size ${config.vocab_size}`);
  }
  const index = indexSafetensors(dir);
  checkTensors(config, index, dir);
  return { dir, config, tokenizerJson, weights: new SafetensorsWeights(index) };
}

type TensorIndex = Map<string, { file: string; entry: SafetensorsEntry }>;

function indexSafetensors(dir: string): TensorIndex {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .sort();
  if (files.length === 0) throw new InputError(`no *.safetensors file in ${dir}`);
  const index: TensorIndex = new Map();
  for (const name of files) {
    const file = join(dir, name);
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      const n = headerLength(readAt(fd, 0, Math.min(8, size)), file);
      for (const entry of parseHeader(readAt(fd, 8, n), size, file)) {
        const other = index.get(entry.name);
        if (other) throw new InputError(`tensor ${entry.name} appears in both ${other.file} and ${file}`);
        index.set(entry.name, { file, entry });
      }
    } finally {
      closeSync(fd);
    }
  }
  return index;
}

function checkTensors(config: ModelConfig, index: TensorIndex, dir: string): void {
  const expected = checkpointTensors(config);
  const expectedNames = new Set(expected.map((t) => t.name));
  const unused = [...index.keys()].filter((name) => !expectedNames.has(name));
  for (const spec of expected) {
    const found = index.get(spec.name);
    if (!found) {
      const hint = unused.length ? `; the checkpoint has unexpected tensor ${unused[0]} (misnamed?)` : '';
      throw new InputError(`missing tensor ${spec.name} (expected shape [${spec.shape}]) in ${dir}${hint}`);
    }
    if (found.entry.shape.join(',') !== spec.shape.join(',')) {
      throw new InputError(
        `tensor ${spec.name} has shape [${found.entry.shape}] but config.json (${config.architecture}, hidden_size ${config.hidden_size}, vocab_size ${config.vocab_size}) implies [${spec.shape}]`,
      );
    }
  }
  if (unused.length)
    throw new InputError(
      `unexpected tensor ${unused[0]} for architecture ${config.architecture} (misnamed, or a config that does not match the checkpoint?)`,
    );
}

class SafetensorsWeights implements WeightSource {
  constructor(private readonly index: TensorIndex) {}

  tensor(name: string): Float32Array {
    const found = this.index.get(name);
    if (!found) throw new InputError(`missing tensor ${name}`);
    const fd = openSync(found.file, 'r');
    try {
      return decodeFloats(readAt(fd, found.entry.begin, found.entry.end - found.entry.begin), found.entry.dtype);
    } finally {
      closeSync(fd);
    }
  }
}

function readAt(fd: number, position: number, length: number): Uint8Array {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, position + done);
    if (n === 0) throw new InputError(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
  return buffer;
}

/**
 * Writes a checkpoint folder; tensors are produced one at a time by `values` and streamed to
 * model.safetensors, so a large checkpoint never sits in memory whole.
 */
export function writeCheckpoint(
  dir: string,
  config: object,
  tokenizerJson: object,
  tensors: TensorSpec[],
  values: (spec: TensorSpec) => Float32Array,
  dtype: 'f32' | 'f16',
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  try {
    writeSync(fd, encodeHeader(tensors, dtype, { format: 'pt', producer: 'flexmem' }));
    for (const spec of tensors) writeSync(fd, encodeFloats(values(spec), dtype));
  } finally {
    closeSync(fd);
  }
}
