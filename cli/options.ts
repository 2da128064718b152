/** Option parsers for commander: each rejects bad input with one line naming the expectation. */
import { InvalidArgumentError } from 'commander';

export const integerAtLeast = (min: number) => (value: string) => {
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || n < min)
    throw new InvalidArgumentError(`expected an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
};

export const numberInRange = (min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max)
    throw new InvalidArgumentError(`expected a number in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return n;
};

export const oneOf =
  <T extends string>(choices: readonly T[]) =>
  (value: string): T => {
    if (!choices.includes(value as T))
      throw new InvalidArgumentError(`expected one of ${choices.join(', ')}, got ${JSON.stringify(value)}`);
    return value as T;
  };
