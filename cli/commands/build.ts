import type { Command } from 'commander';
import { TABLE_DTYPES, type TableDtype } from '../../src/bundle/row-codec.ts';
import { buildBundle } from '../build-bundle.ts';
import { oneOf } from '../options.ts';

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('compile a checkpoint into a servable bundle (compute.onnx, memory tables, tokenizer, manifest)')
    .argument('<checkpoint>', 'checkpoint folder (config.json, *.safetensors, tokenizer.json)')
    .argument('<bundle>', 'bundle folder to create (must not exist)')
    .option('--dtype <dtype>', `table dtype: ${TABLE_DTYPES.join(', ')}`, oneOf(TABLE_DTYPES), 'f32')
    .option('--reference', 'also write reference.onnx (memory path computed in the graph)')
    .action(async (checkpoint: string, bundle: string, opts: { dtype: TableDtype; reference?: boolean }) => {
      const manifest = await buildBundle(checkpoint, bundle, {
        dtype: opts.dtype,
        reference: !!opts.reference,
        progress: process.stderr.isTTY,
      });
      const tableBytes = manifest.tables?.shards.reduce((n, s) => n + s.bytes, 0) ?? 0;
      console.log(
        `built bundle ${manifest.version} (${manifest.config.architecture}, ${opts.dtype} tables, ${tableBytes} table bytes) in ${bundle}`,
      );
    });
}
