import { describe, expect, it } from 'vitest';
import { TextStreamer } from './text-streamer.ts';

/** Tokens as byte strings: 1 is 'é' and the first byte of '€', 2 the rest of '€', 3 'A', 4 a lone continuation byte. */
const bytes: Record<number, number[]> = { 1: [0xc3, 0xa9, 0xe2], 2: [0x82, 0xac], 3: [0x41], 4: [0x80], 5: [0xe2] };
const decode = (ids: number[]) => new TextDecoder().decode(Uint8Array.from(ids.flatMap((id) => bytes[id])));

describe('TextStreamer', () => {
  it('holds back tokens that end inside a character, then emits the characters whole', () => {
    const streamer = new TextStreamer(decode);
    expect(streamer.push(3)).toBe('A');
    expect(streamer.push(1)).toBe('');
    expect(streamer.push(2)).toBe('é€');
    expect(streamer.push(3)).toBe('A');
    expect(streamer.flush()).toBe('');
  });

  it('emits a bad byte as the replacement character once the text goes on', () => {
    const streamer = new TextStreamer(decode);
    expect(streamer.push(4)).toBe('');
    expect(streamer.push(3)).toBe('\uFFFDA');
  });

  it('flushes an incomplete character as decoded, then starts afresh', () => {
    const streamer = new TextStreamer(decode);
    expect(streamer.push(5)).toBe('');
    expect(streamer.flush()).toBe('\uFFFD');
    expect(streamer.flush()).toBe('');
    expect(streamer.push(3)).toBe('A');
  });
});
