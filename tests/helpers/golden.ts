/** The golden fixtures of tests/fixtures/golden/: logits of the independent PyTorch implementation in training/. */
import { readFileSync } from 'node:fs';

export interface GoldenPrompt {
  text: string;
  prompt_ids: number[];
  continuation_ids: number[];
  /** [rows, V]: the logits of the last `rows` positions of prompt_ids + continuation_ids. */
  logits_shape: [number, number];
  logits_f32_b64: string;
}

export interface Golden {
  vocab_size: number;
  prompts: GoldenPrompt[];
}

/** tests/fixtures/golden/<name>.json */
export function readGolden<T extends Golden = Golden>(name: string): T {
  return JSON.parse(readFileSync(`tests/fixtures/golden/${name}.json`, 'utf8')) as T;
}
