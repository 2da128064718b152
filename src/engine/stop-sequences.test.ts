import { describe, expect, it } from 'vitest';
import { StopSequences } from './stop-sequences.ts';

function run(sequences: string[], deltas: string[]): { text: string; stopped: boolean } {
  const stops = new StopSequences(sequences);
  let text = '';
  for (const d of deltas) text += stops.push(d);
  return { text: text + stops.flush(), stopped: stops.stopped };
}

describe('stop sequences', () => {
  it('cuts at a stop sequence split over several deltas and never emits it', () => {
    expect(run(['\n\n'], ['Hello', '\n', '\nWorld'])).toEqual({ text: 'Hello', stopped: true });
    expect(run(['END'], ['abc E', 'N', 'D more'])).toEqual({ text: 'abc ', stopped: true });
  });

  it('releases held-back text that turned out not to be a stop sequence', () => {
    expect(run(['END'], ['abc E', 'N', 'x'])).toEqual({ text: 'abc ENx', stopped: false });
    expect(run(['END'], ['abc EN'])).toEqual({ text: 'abc EN', stopped: false });
  });

  it('stops at the earliest of several sequences', () => {
    expect(run(['b', 'a'], ['xxab'])).toEqual({ text: 'xx', stopped: true });
  });
});
