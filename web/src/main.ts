/**
 * The playground: a chat that streams through the worker's OpenAI-compatible API, every generated
 * token clickable (the tier its memory row came from, its per-layer contribution, what its row
 * promotes), a token search, "ablate and regenerate" side by side with the same seed, and the
 * edits tried exported as the edits.json `flexmem patch` publishes. The chat computes on the edge
 * or, with `/?compute=browser`, in this page (browser-compute.ts); the inspector always asks the worker.
 */
import {
  ApiFailure,
  listModels,
  storedKey,
  storeKey,
  streamChat,
  type ChatMessage,
  type MemoryEdit,
  type Sampling,
  type StreamedToken,
} from './api.ts';
import { BROWSER_TIER_NAMES, BrowserCompute, modeOf, type ComputeMode } from './browser-compute.ts';
import { el, promptViewOf, renderHeatmap, renderTokenView, tokenViewOf } from './inspector.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const modelSelect = $<HTMLSelectElement>('model');
const keyInput = $<HTMLInputElement>('api-key');
const transcript = $<HTMLDivElement>('transcript');
const composer = $<HTMLFormElement>('composer');
const promptBox = $<HTMLTextAreaElement>('prompt');
const sendButton = $<HTMLButtonElement>('send');
const stopButton = $<HTMLButtonElement>('stop');
const status = $<HTMLParagraphElement>('status');
const inspector = $<HTMLDivElement>('inspector');
const editsList = $<HTMLUListElement>('edits');
const exportButton = $<HTMLButtonElement>('export');
const clearButton = $<HTMLButtonElement>('clear-edits');

/** One assistant turn: what was asked (to regenerate it exactly), where it was computed and the tokens it streamed. */
interface Turn {
  model: string;
  mode: ComputeMode;
  messages: ChatMessage[];
  sampling: Sampling;
  tokens: StreamedToken[];
  text: string;
}

const history: ChatMessage[] = [];
const edits: MemoryEdit[] = [];
let busy = false;
let stopping: AbortController | null = null;
const initial = modeOf(new URL(location.href));
let mode: ComputeMode = initial.mode;
const browserCompute = new BrowserCompute(initial.backend, $('browser-compute'));

const say = (text: string, error = false) => {
  status.textContent = text;
  status.classList.toggle('error', error);
};
const messageOf = (error: unknown) => (error instanceof ApiFailure || error instanceof Error ? error.message : String(error));

function sampling(): Sampling {
  const number = (id: string) => Number($<HTMLInputElement>(id).value);
  const seedField = $<HTMLInputElement>('seed').value.trim();
  return {
    temperature: number('temperature'),
    top_p: number('top_p'),
    top_k: number('top_k'),
    max_tokens: number('max_tokens'),
    // A seed always, so that "ablate and regenerate" can compare with the same one.
    seed: seedField === '' ? Math.floor(Math.random() * 2 ** 31) : Number(seedField),
  };
}

async function loadModels(): Promise<void> {
  try {
    const models = await listModels();
    modelSelect.replaceChildren(...models.map((m) => el('option', { value: m.id }, `${m.id} (${m.bundle_version})`)));
    say(models.length ? 'ready' : 'no model is published yet', !models.length);
    if (models.length && mode === 'browser') await openInBrowser();
  } catch (error) {
    say(`cannot list models: ${messageOf(error)}`, true);
  }
}

function tokenSpan(token: StreamedToken, turn: Turn): HTMLSpanElement {
  const span = el(
    'span',
    { class: 'token', 'data-testid': 'token', 'data-position': String(token.position), 'data-id': String(token.id), tabindex: '0' },
    token.text,
  );
  span.addEventListener('click', () => void openToken(turn, token));
  return span;
}

/** Opens the selected model in this page (the status line says how it went). */
async function openInBrowser(): Promise<void> {
  if (!modelSelect.value) return;
  say(`loading ${modelSelect.value} into this browser ...`);
  try {
    const m = await browserCompute.open(modelSelect.value, storedKey());
    if (mode === 'browser') say(`ready: computing in this browser (${m.backend})`);
  } catch (error) {
    say(`cannot compute in this browser: ${messageOf(error)}`, true);
  }
}

/** Switches where the chat computes, and says so in the address (a link opens the page in that mode). */
function setMode(next: ComputeMode): void {
  mode = next;
  const url = new URL(location.href);
  url.searchParams.set('compute', next);
  window.history.replaceState(null, '', url);
  for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="compute"]')) radio.checked = radio.value === next;
  $('browser-compute').hidden = next !== 'browser';
  if (next === 'browser') void openInBrowser();
  else {
    browserCompute.close();
    say('ready: computing on the edge');
  }
}

async function send(): Promise<void> {
  const content = promptBox.value.trim();
  if (!content || busy) return;
  busy = true;
  sendButton.disabled = true;
  stopButton.disabled = false;
  stopping = new AbortController();
  promptBox.value = '';
  history.push({ role: 'user', content });
  transcript.append(el('div', { class: 'message user' }, content));
  const turn: Turn = { model: modelSelect.value, mode, messages: [...history], sampling: sampling(), tokens: [], text: '' };
  const bubble = el('div', { class: 'message assistant', 'data-testid': 'assistant', 'data-compute': mode });
  transcript.append(bubble);
  say(`generating ${mode === 'browser' ? 'in this browser' : 'on the edge'} (seed ${turn.sampling.seed}) ...`);
  const callbacks = {
    onToken(token: StreamedToken) {
      turn.tokens[token.position] = token;
      bubble.append(tokenSpan(token, turn));
      transcript.scrollTop = transcript.scrollHeight;
    },
    onTier(position: number, tier: string | null) {
      const token = turn.tokens[position];
      if (token) token.tier = tier;
      bubble.querySelector(`[data-position="${position}"]`)?.setAttribute('data-tier', tier ?? 'unknown');
    },
  };
  const { signal } = stopping;
  try {
    turn.text =
      turn.mode === 'browser'
        ? await browserCompute.chat(turn.model, storedKey(), turn.messages, turn.sampling, callbacks, signal)
        : await streamChat(turn.model, turn.messages, turn.sampling, [], callbacks, signal);
    history.push({ role: 'assistant', content: turn.text });
    say(`${signal.aborted ? 'stopped' : 'done'}: ${turn.tokens.length} tokens, seed ${turn.sampling.seed}`);
    bubble.dataset.done = 'true';
  } catch (error) {
    if (signal.aborted) {
      // The edge's stream was cut: keep what arrived.
      turn.text = turn.tokens.map((t) => t.text).join('');
      history.push({ role: 'assistant', content: turn.text });
      say(`stopped: ${turn.tokens.length} tokens, seed ${turn.sampling.seed}`);
      bubble.dataset.done = 'true';
    } else {
      say(messageOf(error), true);
      history.pop();
    }
  } finally {
    busy = false;
    stopping = null;
    sendButton.disabled = false;
    stopButton.disabled = true;
  }
}

async function openToken(turn: Turn, token: StreamedToken): Promise<void> {
  const where = turn.mode === 'browser' ? ` (${BROWSER_TIER_NAMES[token.tier ?? ''] ?? 'unknown'})` : '';
  const tier =
    token.tier === undefined ? 'not read (the last token is never fed to the model)' : token.tier ? `${token.tier}${where}` : 'unknown';
  const ablate = el('button', { type: 'button', 'data-testid': 'ablate' }, "Ablate this token's memory and regenerate");
  ablate.addEventListener('click', () => void ablateAndRegenerate(turn, token));
  const views = el('div', {}, el('p', { class: 'hint' }, 'loading the inspector ...'));
  inspector.replaceChildren(
    el('h3', {}, `token "${JSON.stringify(token.text).slice(1, -1)}" (id ${token.id}, position ${token.position})`),
    el('p', {}, 'row served by: ', el('strong', { 'data-testid': 'tier', class: `tier-${token.tier ?? 'none'}` }, tier)),
    ablate,
    views,
  );
  const textSoFar = `${turn.messages.at(-1)?.content ?? ''}\n${turn.tokens
    .slice(0, token.position + 1)
    .map((t) => t.text)
    .join('')}`;
  const [tokenView, promptView] = await Promise.allSettled([
    tokenViewOf(turn.model, { id: token.id }),
    promptViewOf(turn.model, textSoFar),
  ]);
  views.replaceChildren(
    promptView.status === 'fulfilled'
      ? renderHeatmap(promptView.value)
      : el('p', { class: 'error' }, `prompt view: ${messageOf(promptView.reason)}`),
    tokenView.status === 'fulfilled'
      ? renderTokenView(tokenView.value)
      : el('p', { class: 'error' }, `token view: ${messageOf(tokenView.reason)}`),
  );
}

function renderEdits(): void {
  editsList.replaceChildren(
    ...edits.map((e) => el('li', {}, `${e.op} ${JSON.stringify(e.token)}${e.layers ? ` layers ${e.layers.join(',')}` : ''}`)),
  );
  exportButton.disabled = clearButton.disabled = edits.length === 0;
  $('edit-count').textContent = edits.length ? `(${edits.length})` : '';
}

async function ablateAndRegenerate(turn: Turn, token: StreamedToken): Promise<void> {
  if (!edits.some((e) => e.op === 'ablate' && e.token === token.id && !e.layers)) edits.push({ token: token.id, op: 'ablate' });
  renderEdits();
  const compare = $('compare');
  compare.hidden = false;
  $('compare-seed').textContent = String(turn.sampling.seed);
  // The browser client takes no edits: the edited completion is always computed on the edge.
  $('compare-where').textContent = turn.mode === 'browser' ? ' (computed on the edge; the base in this browser)' : '';
  $('compare-before').textContent = turn.text;
  const after = $<HTMLPreElement>('compare-after');
  after.textContent = '';
  delete after.dataset.done;
  say(`regenerating with ${edits.length} edit(s), seed ${turn.sampling.seed} ...`);
  try {
    const text = await streamChat(turn.model, turn.messages, turn.sampling, [...edits], {
      onToken: (t) => after.append(t.text),
      onTier: () => {},
    });
    after.textContent = text;
    after.dataset.done = 'true';
    say(text === turn.text ? 'the edits did not change this completion' : 'the edits changed the completion');
  } catch (error) {
    say(messageOf(error), true);
  }
}

async function search(query: string): Promise<void> {
  const trimmed = query.trim();
  if (!trimmed) return;
  inspector.replaceChildren(el('p', { class: 'hint' }, 'loading ...'));
  const ref = /^\d+$/.test(trimmed) ? { id: Number(trimmed) } : { token: query };
  try {
    inspector.replaceChildren(renderTokenView(await tokenViewOf(modelSelect.value, ref)));
  } catch (error) {
    inspector.replaceChildren(el('p', { class: 'error' }, messageOf(error)));
  }
}

function exportPatch(): void {
  const file = new Blob([`${JSON.stringify({ edits }, null, 2)}\n`], { type: 'application/json' });
  const link = el('a', { href: URL.createObjectURL(file), download: 'edits.json' });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

promptBox.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    void send();
  }
});
composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
$<HTMLFormElement>('search').addEventListener('submit', (event) => {
  event.preventDefault();
  void search($<HTMLInputElement>('search-token').value);
});
keyInput.value = storedKey();
keyInput.addEventListener('change', () => {
  storeKey(keyInput.value.trim());
  void loadModels();
});
modelSelect.addEventListener('change', () => {
  if (mode === 'browser') void openInBrowser();
});
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="compute"]'))
  radio.addEventListener('change', () => radio.checked && setMode(radio.value as ComputeMode));
stopButton.addEventListener('click', () => stopping?.abort());
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="compute"]')) radio.checked = radio.value === mode;
$('browser-compute').hidden = mode !== 'browser';
exportButton.addEventListener('click', exportPatch);
clearButton.addEventListener('click', () => {
  edits.length = 0;
  renderEdits();
});
void loadModels();
