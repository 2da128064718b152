import type { Command } from 'commander';
import { TABLE_DTYPES, type TableDtype } from '../../src/bundle/row-codec.ts';
import { COMPUTE_DTYPES, type ComputeDtype } from '../../src/model/quantize.ts';
import { buildBundle } from '../build-bundle.ts';
import { oneOf } from '../options.ts';

interface BuildFlags {
  dtype: TableDtype;
  computeDtype: ComputeDtype;
  reference?: boolean;
  optimizedGraph: boolean;
}

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description('compile a checkpoint into a servable bundle (compute.onnx, memory tables, tokenizer, manifest)')
    .argument('<checkpoint>', 'checkpoint folder (config.json, *.safetensors, tokenizer.json)')
    .argument('<bundle>', 'bundle folder to create (must not exist)')
    .option('--dtype <dtype>', `table dtype: ${TABLE_DTYPES.join(', ')}`, oneOf(TABLE_DTYPES), 'f32')
    .option(
      '--compute-dtype <dtype>',
      `dtype of the compute graph's matrix weights: ${COMPUTE_DTYPES.join(', ')} (docs/quantization.md)`,
      oneOf(COMPUTE_DTYPES),
      'f32',
    )
    .option('--reference', 'also write reference.onnx (memory path computed in the graph)')
    .option(
      '--no-optimized-graph',
      'do not write compute.optimized.onnx and compute.weights (the graph optimized at build time that the worker and the CLI load)',
    )
    .action(async (checkpoint: string, bundle: string, opts: BuildFlags) => {
      const manifest = await buildBundle(checkpoint, bundle, {
        dtype: opts.dtype,
        computeDtype: opts.computeDtype,
        reference: !!opts.reference,
        optimizedGraph: opts.optimizedGraph,
        progress: process.stderr.isTTY,
      });
      const tableBytes = manifest.tables?.shards.reduce((n, s) => n + s.bytes, 0) ?? 0;
      console.log(
        `built bundle ${manifest.version} (${manifest.config.architecture}, ${opts.computeDtype} compute, ${opts.dtype} tables, ${tableBytes} table bytes) in ${bundle}`,
      );
    });
}
