/** Bad input gets one clear error line and a non-zero exit, and nothing half-written is left. */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeCheckpoint } from '../cli/checkpoint.ts';
import { parseConfig, type ConfigInput } from '../src/model/config.ts';
import { initialValues } from '../src/model/init.ts';
import { presetConfig } from '../src/model/presets.ts';
import { checkpointTensors, type TensorSpec } from '../src/model/tensors.ts';
import { trainByteLevelBpe } from '../src/tokenizer/byte-level-bpe.ts';
import { SAMPLE_TEXT } from '../src/tokenizer/sample-text.ts';
import { flexmem } from './helpers/cli.ts';
import { until } from './helpers/deadline.ts';
import { tempDir, writeTinyCheckpoint } from './helpers/fixtures.ts';

const dir = tempDir();
afterAll(() => dir.remove());

/** A tiny meki checkpoint whose tensor list, config or tokenizer a test has tampered with. */
function tamperedCheckpoint(
  name: string,
  tamper: { tensors?: (specs: TensorSpec[]) => TensorSpec[]; config?: (c: ConfigInput) => object; tokenizerVocab?: number },
): string {
  const path = join(dir.path, name);
  const raw = presetConfig('tiny', 'meki');
  const tensors = checkpointTensors(parseConfig(raw));
  const tokenizer = trainByteLevelBpe(SAMPLE_TEXT, tamper.tokenizerVocab ?? raw.vocab_size).json;
  writeCheckpoint(path, tamper.config?.(raw) ?? raw, tokenizer, tamper.tensors?.(tensors) ?? tensors, (s) => initialValues(s, 1), 'f32');
  return path;
}

function expectOneLineError(result: ReturnType<typeof flexmem>, pattern: RegExp): void {
  expect(result.status).toBe(1);
  const lines = result.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^flexmem: /);
  expect(lines[0]).toMatch(pattern);
}

describe('flexmem build refuses bad checkpoints', () => {
  it('names a missing tensor and its expected shape', () => {
    const ckpt = tamperedCheckpoint('missing', { tensors: (t) => t.filter((s) => s.name !== 'model.layers.1.memory.table') });
    expectOneLineError(
      flexmem('build', ckpt, join(dir.path, 'out-missing')),
      /missing tensor model\.layers\.1\.memory\.table \(expected shape \[512,16\]\)/,
    );
    expect(existsSync(join(dir.path, 'out-missing'))).toBe(false);
  });

  it('names a misnamed tensor', () => {
    const rename = (s: TensorSpec) =>
      s.name === 'model.layers.0.self_attn.q_proj.weight' ? { ...s, name: 'model.layers.0.attn.q_proj.weight' } : s;
    const ckpt = tamperedCheckpoint('misnamed', { tensors: (t) => t.map(rename) });
    expectOneLineError(
      flexmem('build', ckpt, join(dir.path, 'out-misnamed')),
      /missing tensor model\.layers\.0\.self_attn\.q_proj\.weight.*unexpected tensor model\.layers\.0\.attn\.q_proj\.weight/,
    );
  });

  it('names a tensor whose shape is wrong', () => {
    const reshape = (s: TensorSpec) => (s.name === 'model.layers.2.mlp.up_proj.weight' ? { ...s, shape: [100, 64] } : s);
    const ckpt = tamperedCheckpoint('shape', { tensors: (t) => t.map(reshape) });
    expectOneLineError(
      flexmem('build', ckpt, join(dir.path, 'out-shape')),
      /model\.layers\.2\.mlp\.up_proj\.weight has shape \[100,64\].*implies \[128,64\]/,
    );
  });

  it('refuses a config that contradicts the tensors', () => {
    const ckpt = tamperedCheckpoint('contradicts', { config: (c) => ({ ...c, hidden_size: 96 }) });
    expectOneLineError(
      flexmem('build', ckpt, join(dir.path, 'out-contradicts')),
      /model\.embed_tokens\.weight has shape \[512,64\] but config\.json .*hidden_size 96.* implies \[512,96\]/,
    );
  });

  it('refuses an unknown architecture', () => {
    const ckpt = tamperedCheckpoint('arch', { config: (c) => ({ ...c, architecture: 'mamba' }) });
    expectOneLineError(flexmem('build', ckpt, join(dir.path, 'out-arch')), /unknown architecture "mamba"/);
  });

  it('refuses a tokenizer whose vocabulary differs from the model', () => {
    const ckpt = tamperedCheckpoint('tokenizer', { tokenizerVocab: 600 });
    expectOneLineError(
      flexmem('build', ckpt, join(dir.path, 'out-tok')),
      /tokenizer\.json has 600 tokens but config\.json has vocab_size 512/,
    );
  });

  it('refuses a checkpoint folder that does not exist', () => {
    expectOneLineError(flexmem('build', join(dir.path, 'nope'), join(dir.path, 'out-nope')), /checkpoint folder not found/);
  });

  it('never overwrites an existing output folder', () => {
    const ckpt = join(dir.path, 'good');
    writeTinyCheckpoint(ckpt, 'flex');
    const out = join(dir.path, 'existing');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'mine');
    expectOneLineError(flexmem('build', ckpt, out), /output folder already exists/);
    expect(readdirSync(out)).toEqual(['keep.txt']);
  });

  it('rejects an unknown table dtype', () => {
    const result = flexmem('build', join(dir.path, 'good'), join(dir.path, 'out-dtype'), '--dtype', 'int4');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/expected one of f32, f16, int8, got "int4"/);
  });
});

describe('a build that is killed midway', () => {
  it('leaves no bundle that looks complete', async () => {
    // Big enough vocabulary that the table pass takes a while.
    const ckpt = join(dir.path, 'large');
    writeTinyCheckpoint(ckpt, 'memoryllm', { vocab_size: 60000 });
    const out = join(dir.path, 'killed');
    const child = spawn('node', ['bin/flexmem.js', 'build', ckpt, out], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    const staging = () => readdirSync(dir.path).find((f) => f.startsWith('.killed.partial-'));
    try {
      await until(() => !!staging() && existsSync(join(dir.path, staging()!, 'tables')), 'the build never started writing its tables', {
        timeoutMs: 30_000,
        giveUp: () =>
          child.exitCode === null && child.signalCode === null ? null : `it exited first (${child.exitCode ?? child.signalCode})`,
      });
    } finally {
      child.kill('SIGKILL');
    }
    await exited;
    expect(existsSync(out)).toBe(false);
    expect(existsSync(join(dir.path, staging()!, 'manifest.json'))).toBe(false);
  });
});

describe('other commands', () => {
  it('plan refuses a preset that does not exist', () => {
    const result = flexmem('plan', '--preset', 'gpt-5');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/expected one of tiny, memoryllm-1b, meki-1\.7b/);
  });

  it('init refuses to write into a non-empty folder', () => {
    expectOneLineError(flexmem('init', join(dir.path, 'good'), '--arch', 'flex'), /folder is not empty/);
  });

  it('run refuses a folder that is not a bundle', () => {
    expectOneLineError(flexmem('run', join(dir.path, 'good'), '--prompt', 'hi'), /manifest\.json.*not found/);
  });

  it('run rejects an out-of-range temperature', () => {
    const result = flexmem('run', join(dir.path, 'good'), '--prompt', 'hi', '--temperature', '-1');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/expected a number in \[0, 10\], got "-1"/);
  });
});
