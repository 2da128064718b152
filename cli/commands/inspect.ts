import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InputError } from '../../src/errors.ts';
import {
  diffVersions,
  inspectPrompt,
  inspectToken,
  parseDiffOptions,
  parsePromptOptions,
  parseTokenOptions,
} from '../../src/inspect/index.ts';
import { createServingCore, type LoadedBundle, type ServingCore } from '../../src/serving/serving-core.ts';
import { formatDiffView, formatPromptView, formatTokenView } from '../inspect-format.ts';
import { BundleFolderStore, localServingCore, openLocalBundle, readLocalManifest } from '../local-bundle.ts';
import { createNodeSession } from '../node-session.ts';
import { integerAtLeast } from '../options.ts';
import { targetOptions, withTargetFlags } from '../target-options.ts';
import { withTarget } from '../targets.ts';
import * as ort from 'onnxruntime-node';

interface InspectFlags {
  token?: string;
  id?: number;
  layers?: string;
  top?: number;
  prompt?: string;
  ablate?: string;
  diff?: boolean;
  limit?: number;
  in?: string;
  json?: boolean;
  endpoint?: string;
  region?: string;
  persistTo?: string;
}

function parseLayers(value: string): 'all' | number[] {
  if (value === 'all') return 'all';
  if (!/^\d+(,\d+)*$/.test(value)) throw new InputError(`--layers: expected all or a list such as 0,3,5, got ${JSON.stringify(value)}`);
  return value.split(',').map(Number);
}

function parseAblation(value: string | undefined): unknown {
  if (value === undefined || ['none', 'all', 'each-layer'].includes(value)) return value;
  if (/^\d+$/.test(value)) return Number(value);
  throw new InputError(`--ablate: expected all, each-layer, none or a layer number, got ${JSON.stringify(value)}`);
}

export function registerInspect(program: Command): void {
  withTargetFlags(
    program
      .command('inspect')
      .description("see what a token's memory holds: rows, promoted tokens, neighbours, contributions on a prompt, diffs")
      .argument('<bundles...>', 'a bundle folder; with --diff two bundle folders, or two versions of the --in target')
      .option('--token <text>', 'token view: the token with this text (exactly one token)')
      .option('--id <n>', 'token view: the token with this id', integerAtLeast(0))
      .option('--layers <list>', 'memory layers to show: all, or e.g. 0,3,5', 'all')
      .option('--top <k>', 'entries per list', integerAtLeast(1))
      .option('--prompt <text>', 'prompt view: memory contribution per position and layer, and ablation effects')
      .option('--ablate <what>', 'prompt view: all (default), each-layer, none, or a layer number')
      .option('--diff', 'diff view: rows that differ between two bundles or versions')
      .option('--limit <n>', 'diff view: changed tokens listed at most', integerAtLeast(1))
      .option('--in <target>', 'diff view: read versions from s3://bucket/prefix or local[://bucket]')
      .option('--json', 'print the JSON the worker routes return'),
  ).action(async (bundles: string[], flags: InspectFlags) => {
    const modes = [flags.token !== undefined || flags.id !== undefined, flags.prompt !== undefined, !!flags.diff].filter(Boolean);
    if (modes.length !== 1) throw new InputError('choose one view: --token/--id, --prompt, or --diff');
    const print = (view: unknown, text: string) => console.log(flags.json ? JSON.stringify(view, null, 2) : text);
    if (flags.diff) {
      if (bundles.length !== 2) throw new InputError(`--diff compares two bundles or versions, got ${bundles.length}`);
      const options = parseDiffOptions({ top: flags.top, limit: flags.limit });
      const diff = async (core: ServingCore, a: LoadedBundle, b: LoadedBundle) => {
        const view = await diffVersions(core, a, b, options);
        print(view, formatDiffView(view));
      };
      if (flags.in) {
        await withTarget(flags.in, targetOptions(flags), async ({ store }) => {
          const core = createServingCore({ origin: store, createSession: (g) => createNodeSession(g), Tensor: ort.Tensor });
          try {
            const [a, b] = await Promise.all(bundles.map((v) => core.bundle(v)));
            await diff(core, a, b);
          } finally {
            await core.close();
          }
        });
        return;
      }
      for (const dir of bundles)
        if (!existsSync(join(dir, 'manifest.json'))) throw new InputError(`${dir} is not a bundle folder (use --in <target> for versions)`);
      const manifests = bundles.map((dir) => readLocalManifest(dir));
      const core = localServingCore(bundles[0], manifests[0], {
        origin: new BundleFolderStore(bundles.map((dir, i) => ({ dir, version: manifests[i].version }))),
      });
      try {
        const [a, b] = await Promise.all(manifests.map((m) => core.bundle(m.version)));
        await diff(core, a, b);
      } finally {
        await core.close();
      }
      return;
    }
    if (bundles.length !== 1) throw new InputError(`inspect takes one bundle folder, got ${bundles.length}`);
    const { core, bundle } = await openLocalBundle(bundles[0]);
    try {
      if (flags.prompt !== undefined) {
        const view = await inspectPrompt(core, bundle, parsePromptOptions({ prompt: flags.prompt, ablate: parseAblation(flags.ablate) }));
        print(view, formatPromptView(view));
      } else {
        const layers = parseLayers(flags.layers ?? 'all');
        const view = await inspectToken(core, bundle, parseTokenOptions({ token: flags.token, id: flags.id, layers, top: flags.top }));
        print(view, formatTokenView(view));
      }
    } finally {
      await core.close();
    }
  });
}
