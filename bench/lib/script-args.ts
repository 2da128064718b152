/**
 * The `--name value` options of a standalone bench or scripts/ tool, parsed by node:util's
 * parseArgs: every option the tool takes is named with its default, so an unknown option or a
 * missing value is an error, not a silently ignored word.
 */
import { parseArgs } from 'node:util';

export interface ScriptArgs {
  /** An option's value (its default when not given). */
  string(name: string): string;
  /** An option's value as a number; an error when it is not one. */
  number(name: string): number;
  /** An option without a default: undefined when not given. */
  optional(name: string): string | undefined;
  /** The arguments that are no option. */
  positionals: string[];
}

/** Parses process.argv; `defaults` names every option, undefined for one without a default. */
export function scriptArgs(defaults: Record<string, string | undefined>, argv = process.argv.slice(2)): ScriptArgs {
  const options = Object.fromEntries(
    Object.entries(defaults).map(([name, value]) => [
      name,
      value === undefined ? { type: 'string' as const } : { type: 'string' as const, default: value },
    ]),
  );
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true });
  const optional = (name: string) => values[name] as string | undefined;
  const string = (name: string) => {
    const value = optional(name);
    if (value === undefined) throw new Error(`--${name} has no value and no default`);
    return value;
  };
  const number = (name: string) => {
    const value = Number(string(name));
    if (!Number.isFinite(value)) throw new Error(`--${name} takes a number, got ${string(name)}`);
    return value;
  };
  return { string, number, optional, positionals };
}
