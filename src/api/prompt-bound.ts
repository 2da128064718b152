/**
 * Refuses a prompt that cannot fit the context from its byte length alone, before tokenizing it.
 * Tokenizing costs CPU in proportion to the text: 1 MB of English takes the demo tokenizer 2.2 to
 * 3 s in Node, more than a whole 255-token generation (about 0.8 s), and MAX_BODY_BYTES (1 MiB)
 * lets through some 4,000 times the demo's 256-token context.
 *
 * Tokens ≤ bytes bounds nothing here; the other direction does: no token stands for more than
 * `maxTokenBytes` bytes, so a prompt of B UTF-8 bytes has at least ceil(B / maxTokenBytes)
 * tokens. That needs tokenizing to keep every byte (decode(encode(text)) is text), as byte-level
 * BPE does (every bundle flexmem builds). A tokenizer that normalizes (NFKC, lowercasing, dropped
 * whitespace) can turn many bytes into one token; for it the check is off.
 */
import type { LoadedBundle } from '../serving/serving-core.ts';
import type { TextTokenizer } from '../tokenizer/tokenizer.ts';
import { ApiError } from './errors.ts';
import type { Endpoint } from './openai-format.ts';

/** Text a normalizing tokenizer changes: whitespace runs, a combining accent, ligature, full-width, case, emoji. */
const ROUND_TRIP_PROBE = 'Hello, World!  \t\n e\u0301 \ufb01 \uff21 \u00df \u0130 \u{1f600}';

/** Per loaded bundle's tokenizer; null when the bound does not hold for it. */
const longestToken = new WeakMap<TextTokenizer, number | null>();

/** The most bytes one token stands for (a scan of the vocabulary, about 18 ms for 4,096 tokens, once per loaded bundle). */
export function maxTokenBytes(bundle: LoadedBundle): number | null {
  const { tokenizer } = bundle;
  if (longestToken.has(tokenizer)) return longestToken.get(tokenizer)!;
  let longest: number | null = null;
  if (tokenizer.decode(tokenizer.encode(ROUND_TRIP_PROBE)) === ROUND_TRIP_PROBE) {
    longest = 0;
    const ids = Math.max(tokenizer.vocabSize, bundle.manifest.config.vocab_size);
    for (let id = 0; id < ids; id++) longest = Math.max(longest, tokenizer.tokenBytes(id).length);
  }
  longestToken.set(tokenizer, longest || null);
  return longest || null;
}

/** Throws 400 context_length_exceeded when `prompt` has too many bytes to fit the context in any tokenization. */
export function refuseOversizedPrompt(bundle: LoadedBundle, prompt: string, endpoint: Endpoint): void {
  const context = bundle.manifest.config.max_position_embeddings;
  const bytes = new TextEncoder().encode(prompt).length;
  // Fewer bytes than the context fit whatever the tokens: the vocabulary need not be scanned.
  if (bytes < context) return;
  const longest = maxTokenBytes(bundle);
  if (longest === null) return;
  const atLeast = Math.ceil(bytes / longest);
  if (atLeast < context) return;
  throw new ApiError(
    400,
    `This model's maximum context length is ${context} tokens. However, your prompt is ${bytes} bytes long, which is at least ${atLeast} tokens (no token is longer than ${longest} bytes).`,
    'invalid_request_error',
    endpoint === 'chat' ? 'messages' : 'prompt',
    'context_length_exceeded',
  );
}
