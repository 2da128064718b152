import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { FlexmemError } from '../../src/errors.ts';
import { ARCHITECTURES, parseConfig, type Architecture } from '../../src/model/config.ts';
import { formatPlan, planServing } from '../../src/model/plan.ts';
import { presetConfig, PRESETS } from '../../src/model/presets.ts';
import { readJsonFile } from '../checkpoint.ts';
import { oneOf } from '../options.ts';

export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('print what serving a model costs (params, table bytes, bytes per token) without building anything')
    .argument('[dir-or-config]', 'a checkpoint folder or a config.json')
    .option('--preset <name>', `a named shape: ${Object.keys(PRESETS).join(', ')}`, oneOf(Object.keys(PRESETS)))
    .option('--arch <arch>', 'override the architecture', oneOf(ARCHITECTURES))
    .option('--json', 'print JSON')
    .action((source: string | undefined, opts: { preset?: string; arch?: Architecture; json?: boolean }) => {
      if (!source === !opts.preset) throw new FlexmemError('give either a checkpoint folder / config.json or --preset, not both or neither');
      let raw: object;
      if (opts.preset) raw = presetConfig(opts.preset, opts.arch);
      else {
        if (!existsSync(source!)) throw new FlexmemError(`not found: ${source}`);
        const path = statSync(source!).isDirectory() ? join(source!, 'config.json') : source!;
        raw = readJsonFile(path, 'config.json') as object;
        if (opts.arch) raw = { ...raw, architecture: opts.arch };
      }
      const plan = planServing(parseConfig(raw, source ?? `preset ${opts.preset}`));
      console.log(opts.json ? JSON.stringify(plan, null, 2) : formatPlan(plan));
    });
}
