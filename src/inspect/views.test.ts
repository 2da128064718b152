import { describe, expect, it } from 'vitest';
import { InputError } from '../errors.ts';
import { parseDiffOptions, parsePromptOptions, parseTokenOptions } from './views.ts';

describe('inspector options', () => {
  it('accept what the CLI and the routes send', () => {
    expect(parseTokenOptions({ token: ' the', layers: [0, 3], top: 4 })).toEqual({ token: ' the', layers: [0, 3], top: 4 });
    expect(parseTokenOptions({ id: 7, layers: 'all' })).toEqual({ id: 7, layers: 'all' });
    expect(parsePromptOptions({ prompt: 'Hi', ablate: 2 })).toEqual({ prompt: 'Hi', ablate: { layer: 2 } });
    expect(parsePromptOptions({ prompt: 'Hi', ablate: 'each-layer' })).toEqual({ prompt: 'Hi', ablate: 'each-layer' });
    expect(parseDiffOptions({ top: 3, limit: 10 })).toEqual({ top: 3, limit: 10 });
  });

  it('refuse the rest with one line naming the field', () => {
    expect(() => parseTokenOptions({ token: 'a', id: 1 })).toThrow(/give exactly one of `token` and `id`/);
    expect(() => parseTokenOptions({})).toThrow(InputError);
    expect(() => parseTokenOptions({ id: -1 })).toThrow(/^token view: id: /);
    expect(() => parseTokenOptions({ id: 1, layers: [] })).toThrow(/layers/);
    expect(() => parseTokenOptions({ id: 1, colour: 'red' })).toThrow(/colour/);
    expect(() => parsePromptOptions({ prompt: '' })).toThrow(/the prompt is empty/);
    expect(() => parsePromptOptions({ prompt: 'a', ablate: 'some' })).toThrow(/^prompt view: ablate: /);
    expect(() => parseDiffOptions({ limit: 0 })).toThrow(/^diff: limit: /);
  });
});
