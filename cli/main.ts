/** The `flexmem` command line: one file per command under commands/. */
import { Command, CommanderError } from 'commander';
import { InputError } from '../src/errors.ts';
import { registerBuild } from './commands/build.ts';
import { registerEval } from './commands/eval.ts';
import { registerInit } from './commands/init.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerPlan } from './commands/plan.ts';
import { registerGc } from './commands/gc.ts';
import { registerPatch } from './commands/patch.ts';
import { registerPublish } from './commands/publish.ts';
import { registerRollback } from './commands/rollback.ts';
import { registerRun } from './commands/run.ts';
import { registerVersions } from './commands/versions.ts';

const program = new Command('flexmem')
  .description('build and serve memory-decoupled language models: compute is run, knowledge is read')
  .version('0.1.0')
  .showHelpAfterError(false)
  .configureOutput({ outputError: (message, write) => write(message.replace(/^error: /, 'flexmem: ')) })
  .exitOverride();

const commands = [
  registerInit,
  registerPlan,
  registerBuild,
  registerRun,
  registerEval,
  registerPublish,
  registerVersions,
  registerRollback,
  registerGc,
  registerPatch,
  registerInspect,
];
for (const register of commands) register(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  const message = error instanceof InputError ? error.message : `internal error: ${(error as Error).message ?? error}`;
  process.stderr.write(`flexmem: ${message}\n`);
  process.exit(error instanceof InputError ? 1 : 2);
}
