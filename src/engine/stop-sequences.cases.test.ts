import { describe, expect, it } from 'vitest';
import { StopSequences } from './stop-sequences.ts';

describe('stop sequences, delta by delta', () => {
  it('emits at once what cannot start a stop sequence, and holds back only what can', () => {
    const stops = new StopSequences(['END']);
    expect(stops.push('abc x')).toBe('abc x');
    expect(stops.push('yE')).toBe('y');
    expect(stops.push('N')).toBe('');
    expect(stops.push('d')).toBe('ENd');
    expect(stops.push('xxEN')).toBe('xx');
    expect(stops.flush()).toBe('EN');
  });

  it('holds back the longest suffix that starts any of the sequences', () => {
    const stops = new StopSequences(['abc', 'bcd']);
    expect(stops.push('xab')).toBe('x');
    expect(stops.push('c!')).toBe('');
    expect(stops.stopped).toBe(true);
  });

  it('cuts at the earliest sequence, whatever the order of the list, and when some never occur', () => {
    const cut = (sequences: string[], text: string) => {
      const stops = new StopSequences(sequences);
      return [stops.push(text), stops.stopped];
    };
    expect(cut(['a', 'b'], 'xxab')).toEqual(['xx', true]);
    expect(cut(['a', 'zzz'], 'xxab')).toEqual(['xx', true]);
    expect(cut(['zzz', 'b', 'q'], 'xxab')).toEqual(['xxa', true]);
    expect(cut(['x'], 'abxc')).toEqual(['ab', true]);
    expect(cut(['b'], 'abxc')).toEqual(['a', true]);
  });

  it('emits nothing more once stopped, and a flush empties what it held', () => {
    const stops = new StopSequences(['.']);
    expect(stops.push('one. two')).toBe('one');
    expect(stops.push('three')).toBe('');
    expect(stops.flush()).toBe('');

    const open = new StopSequences(['STOP']);
    expect(open.push('go S')).toBe('go ');
    expect(open.flush()).toBe('S');
    expect(open.flush()).toBe('');
    expect(open.push('x')).toBe('x');
  });
});
