/** The inspector's views as compact text tables for a terminal (`flexmem inspect` without --json). */
import type { DiffView, PromptView, ScoredToken, TokenView } from '../src/inspect/views.ts';

const q = (text: string) => JSON.stringify(text);
const f = (n: number, digits = 2) => n.toFixed(digits);
const tokens = (list: { text: string }[]) => list.map((t) => q(t.text)).join(' ');
const scored = (list: ScoredToken[]) => list.map((t) => `${q(t.text)} ${f(t.logit)}`).join(', ');

export function formatTokenView(view: TokenView): string {
  const lines = [`token ${view.token.id} ${q(view.token.text)}  version ${view.version}  top ${view.top_k}`];
  for (const l of view.layers) {
    lines.push(`layer ${String(l.layer).padStart(2)} ${l.kind.padEnd(8)} norm ${f(l.norm)} (${f(l.norm_vs_median)}× median)`);
    lines.push(`  promotes   ${scored(l.promoted)}`);
    lines.push(`  suppresses ${scored(l.suppressed)}`);
    lines.push(`  neighbours ${l.neighbours.map((n) => `${q(n.text)} ${f(n.cosine)}`).join(', ')}`);
  }
  if (view.approximation) lines.push(`approximation: ${view.approximation}`);
  if (view.note) lines.push(`note: ${view.note}`);
  return lines.join('\n');
}

export function formatPromptView(view: PromptView): string {
  const layers = view.positions[0]?.layers.map((l) => l.layer) ?? [];
  const gated = view.positions[0]?.layers.some((l) => l.gate !== null) ?? false;
  const cell = gated ? 12 : 8;
  const lines = [
    `next token ${q(view.next_token.text)} (id ${view.next_token.id}, log p ${f(view.next_token.logprob, 3)})  version ${view.version}  ablation ${JSON.stringify(view.ablation)}  ${view.forward_passes} passes`,
    `memory/residual norm ratio per layer${gated ? ' [gate]' : ''}; Δ log p when ablated`,
    `${'pos'.padEnd(4)}${'token'.padEnd(14)}${layers.map((l) => `L${l}`.padStart(cell)).join('')}   Δall`,
  ];
  for (const p of view.positions) {
    const cells = p.layers.map((l) => {
      const ratio = f(l.ratio);
      return (l.gate === null ? ratio : `${ratio}[${f(l.gate)}]`).padStart(cell);
    });
    const all = p.delta_logprob_all === null ? '' : f(p.delta_logprob_all, 3);
    lines.push(`${String(p.index).padEnd(4)}${q(p.token.text).slice(0, 13).padEnd(14)}${cells.join('')}   ${all}`);
    const deltas = p.layers.filter((l) => l.delta_logprob !== null);
    if (deltas.length) lines.push(`${''.padEnd(18)}Δ ${deltas.map((l) => `L${l.layer} ${f(l.delta_logprob!, 3)}`).join('  ')}`);
  }
  return lines.join('\n');
}

export function formatDiffView(view: DiffView): string {
  const lines = [`${view.changed_count} rows differ between ${view.from} and ${view.to}`];
  for (const c of view.changed) {
    lines.push(`token ${c.token.id} ${q(c.token.text)}`);
    for (const l of c.layers) {
      lines.push(`  layer ${String(l.layer).padStart(2)} norm ${f(l.before.norm)} -> ${f(l.after.norm)}`);
      lines.push(`    before ${tokens(l.before.promoted)}`);
      lines.push(`    after  ${tokens(l.after.promoted)}`);
    }
  }
  if (view.changed.length < view.changed_count) lines.push(`(${view.changed_count - view.changed.length} more not listed; --limit)`);
  return lines.join('\n');
}
