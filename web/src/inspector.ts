/**
 * The inspector panel: a token's memory as the worker's inspector routes show it (the token view:
 * per layer its norm and the tokens it promotes and suppresses; the prompt view: how much each
 * layer's memory contributes at each position of the text so far).
 */
import type { PromptView, TokenView } from '../../src/inspect/views.ts';
import { postJson } from './api.ts';

/** Builds an element; `children` are nodes or text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) if (value !== undefined) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const shown = (text: string) => JSON.stringify(text).slice(1, -1);

export function tokenViewOf(model: string, token: { id: number } | { token: string }): Promise<TokenView> {
  return postJson<TokenView>('/v1/memory/token', { model, ...token });
}

export function promptViewOf(model: string, prompt: string): Promise<PromptView> {
  return postJson<PromptView>('/v1/memory/prompt', { model, prompt, ablate: 'none' });
}

/** Per layer: the row's norm against the layer's median, and its top promoted and suppressed tokens. */
export function renderTokenView(view: TokenView): HTMLElement {
  const rows = view.layers.map((layer) =>
    el(
      'tr',
      {},
      el('td', {}, String(layer.layer)),
      el('td', {}, `${layer.norm.toFixed(2)} (${layer.norm_vs_median.toFixed(2)}× median)`),
      el('td', { 'data-testid': 'promoted' }, layer.promoted.map((t) => shown(t.text)).join('  ')),
      el('td', {}, layer.suppressed.map((t) => shown(t.text)).join('  ')),
    ),
  );
  return el(
    'div',
    { class: 'token-view', 'data-testid': 'token-view' },
    el('h3', {}, `memory of "${shown(view.token.text)}" (id ${view.token.id}), version ${view.version}`),
    el(
      'table',
      {},
      el('thead', {}, el('tr', {}, el('th', {}, 'layer'), el('th', {}, 'norm'), el('th', {}, 'promotes'), el('th', {}, 'suppresses'))),
      el('tbody', {}, ...rows),
    ),
    ...(view.approximation ? [el('p', { class: 'hint' }, view.approximation)] : []),
  );
}

/** The last positions of the prompt view as a heatmap: one row per position, one cell per layer, shade = memory / residual. */
export function renderHeatmap(view: PromptView, lastPositions = 12): HTMLElement {
  const positions = view.positions.slice(-lastPositions);
  const max = Math.max(1e-9, ...positions.flatMap((p) => p.layers.map((l) => l.ratio)));
  const layers = positions[0]?.layers.map((l) => l.layer) ?? [];
  const header = el('tr', {}, el('th', {}, 'token'), ...layers.map((l) => el('th', {}, `L${l}`)));
  const rows = positions.map((p, i) =>
    el(
      'tr',
      { class: i === positions.length - 1 ? 'current' : '' },
      el('td', {}, shown(p.token.text)),
      ...p.layers.map((l) =>
        el(
          'td',
          { class: 'cell', style: `--heat:${(l.ratio / max).toFixed(3)}`, title: `ratio ${l.ratio.toFixed(3)}` },
          l.ratio.toFixed(2),
        ),
      ),
    ),
  );
  return el(
    'div',
    { class: 'heatmap', 'data-testid': 'heatmap' },
    el('h3', {}, 'memory contribution per layer (‖memory‖ / ‖residual‖) over the text so far'),
    el('table', {}, el('thead', {}, header), el('tbody', {}, ...rows)),
  );
}
