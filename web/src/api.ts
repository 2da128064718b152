/** The page's client of the worker's API: the same origin, an optional key, OpenAI-style errors. */

const KEY_STORAGE = 'flexmem.apiKey';

export const storedKey = (): string => localStorage.getItem(KEY_STORAGE) ?? '';
export const storeKey = (key: string): void => (key ? localStorage.setItem(KEY_STORAGE, key) : localStorage.removeItem(KEY_STORAGE));

/** A refused request: the server's message (OpenAI's `error.message`). */
export class ApiFailure extends Error {}

function headers(): HeadersInit {
  const key = storedKey();
  return { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) };
}

async function failure(response: Response): Promise<ApiFailure> {
  const body = await response.json().catch(() => null);
  return new ApiFailure(body?.error?.message ?? `${response.status} ${response.statusText}`);
}

export async function postJson<T>(path: string, body: object): Promise<T> {
  const response = await fetch(path, { method: 'POST', headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function listModels(): Promise<{ id: string; bundle_version: string }[]> {
  const response = await fetch('/v1/models', { headers: headers() });
  if (!response.ok) throw await failure(response);
  return (await response.json()).data;
}

/** One memory edit, in the format `flexmem patch` reads (src/memory/memory-edits.ts). */
export type MemoryEdit =
  | { token: number | string; op: 'ablate'; layers?: number[] }
  | { token: number | string; op: 'scale'; factor: number; layers?: number[] };

export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface Sampling {
  temperature: number;
  top_p: number;
  top_k: number;
  max_tokens: number;
  seed: number;
}

/** A generated token as the stream reports it, with its row's tier once the token has been fed. */
export interface StreamedToken {
  position: number;
  id: number;
  text: string;
  tier?: string | null;
}

export interface StreamCallbacks {
  onToken(token: StreamedToken): void;
  onTier(position: number, tier: string | null): void;
}

/**
 * Streams a chat completion with provenance (and `edits`, when given) and returns its text.
 * Server-sent events are split on blank lines; each `data:` line is one chunk.
 */
export async function streamChat(
  model: string,
  messages: ChatMessage[],
  sampling: Sampling,
  edits: MemoryEdit[],
  callbacks: StreamCallbacks,
  signal?: AbortSignal,
): Promise<string> {
  const body = {
    model,
    messages,
    ...sampling,
    stream: true,
    flexmem: { provenance: true, ...(edits.length && { edits }) },
  };
  const response = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok || !response.body) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += value;
    let end = buffered.indexOf('\n\n');
    while (end >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf('\n\n');
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6))
        .join('\n');
      if (!data || data === '[DONE]') continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiFailure(chunk.error.message);
      text += chunk.choices?.[0]?.delta?.content ?? '';
      for (const token of chunk.flexmem?.tokens ?? []) callbacks.onToken(token);
      for (const row of chunk.flexmem?.rows ?? []) callbacks.onTier(row.position, row.tier);
    }
  }
  return text;
}
