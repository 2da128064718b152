/** A few hand-made SVG charts (no dependencies): stacked horizontal bars and line plots. */

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1'];

export interface Panel {
  width: number;
  height: number;
  /** SVG elements, in panel coordinates. */
  body: string;
}

function niceMax(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function text(x: number, y: number, s: string, opts: { size?: number; anchor?: string; weight?: string; color?: string } = {}): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${opts.size ?? 11}" text-anchor="${opts.anchor ?? 'start'}" font-weight="${opts.weight ?? 'normal'}" fill="${opts.color ?? '#222'}">${esc(s)}</text>`;
}

export interface BarRow {
  label: string;
  /** Stacked segments, in order. */
  values: number[];
  /** Printed after the bar. */
  note?: string;
}

export function barChart(
  title: string,
  unit: string,
  segments: string[],
  rows: BarRow[],
  opts: { width?: number; limit?: { value: number; label: string } } = {},
): Panel {
  const width = opts.width ?? 560;
  const labelW = Math.min(260, Math.max(90, ...rows.map((r) => r.label.length * 5.8 + 10)));
  const rowH = 20;
  const top = 40;
  const height = top + rows.length * rowH + 40;
  const plotW = width - labelW - 70;
  const max = niceMax(
    Math.max(opts.limit?.value ?? 0, ...rows.map((r) => r.values.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0))) * 1.02,
  );
  let body = text(10, 18, title, { size: 13, weight: 'bold' });
  let lx = 10;
  segments.forEach((s, i) => {
    body += `<rect x="${lx}" y="26" width="10" height="10" fill="${COLORS[i]}"/>${text(lx + 14, 35, s, { size: 10 })}`;
    lx += 14 + s.length * 5.6 + 16;
  });
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    body += text(labelW - 6, y + 14, r.label, { anchor: 'end', size: 10.5 });
    let x = labelW;
    r.values.forEach((v, j) => {
      if (!Number.isFinite(v) || v <= 0) return;
      const w = (v / max) * plotW;
      body += `<rect x="${x.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${COLORS[j]}"/>`;
      x += w;
    });
    if (r.note) body += text(x + 4, y + 14, r.note, { size: 10, color: '#444' });
  });
  const axisY = top + rows.length * rowH + 4;
  body += `<line x1="${labelW}" y1="${axisY}" x2="${labelW + plotW}" y2="${axisY}" stroke="#888"/>`;
  for (let k = 0; k <= 4; k++) {
    const x = labelW + (k / 4) * plotW;
    body += `<line x1="${x}" y1="${axisY}" x2="${x}" y2="${axisY + 4}" stroke="#888"/>${text(x, axisY + 16, `${+((max * k) / 4).toPrecision(3)}`, { anchor: 'middle', size: 10 })}`;
  }
  body += text(labelW + plotW / 2, axisY + 30, unit, { anchor: 'middle', size: 10.5 });
  if (opts.limit) {
    const lxp = labelW + (opts.limit.value / max) * plotW;
    body += `<line x1="${lxp}" y1="${top - 2}" x2="${lxp}" y2="${axisY}" stroke="#e15759" stroke-dasharray="4,3"/>${text(lxp + 3, axisY - 4, opts.limit.label, { size: 9.5, color: '#e15759' })}`;
  }
  return { width, height, body };
}

export interface Series {
  name: string;
  points: [number, number][];
  dashed?: boolean;
}

export function lineChart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: Series[],
  opts: { logX?: boolean; yMax?: number; marks?: { x: number; label: string }[]; width?: number; height?: number } = {},
): Panel {
  const width = opts.width ?? 560;
  const height = opts.height ?? 300;
  const left = 55;
  const right = 20;
  const top = 30 + 13 * series.length;
  const bottom = 45;
  const xs = series.flatMap((s) => s.points.map((p) => p[0])).filter((x) => !opts.logX || x > 0);
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMin = opts.logX ? Math.min(...xs) : 0;
  const xMax = Math.max(...xs);
  const yMax = opts.yMax ?? niceMax(Math.max(...ys));
  const fx = (x: number) => left + (opts.logX ? Math.log(x / xMin) / Math.log(xMax / xMin) : x / xMax) * (width - left - right);
  const fy = (y: number) => top + (1 - y / yMax) * (height - top - bottom);
  let body = text(10, 18, title, { size: 13, weight: 'bold' });
  body += `<line x1="${left}" y1="${fy(0)}" x2="${width - right}" y2="${fy(0)}" stroke="#888"/><line x1="${left}" y1="${top}" x2="${left}" y2="${fy(0)}" stroke="#888"/>`;
  for (let k = 0; k <= 4; k++) {
    const y = (yMax * k) / 4;
    body += `<line x1="${left}" y1="${fy(y)}" x2="${width - right}" y2="${fy(y)}" stroke="#eee"/>${text(left - 4, fy(y) + 3, `${+y.toPrecision(3)}`, { anchor: 'end', size: 10 })}`;
  }
  const ticks = opts.logX
    ? xs.filter((x, i, a) => a.indexOf(x) === i).sort((a, b) => a - b)
    : [0, xMax / 4, xMax / 2, (3 * xMax) / 4, xMax];
  let lastTickX = -1e9;
  for (const x of ticks) {
    if (fx(x) - lastTickX < 28) continue;
    lastTickX = fx(x);
    body += text(fx(x), fy(0) + 14, `${+x.toPrecision(3)}`, { anchor: 'middle', size: 9.5 });
  }
  body += text((left + width - right) / 2, height - 10, xLabel, { anchor: 'middle', size: 10.5 });
  body += `<text x="12" y="${(top + fy(0)) / 2}" font-size="10.5" text-anchor="middle" transform="rotate(-90 12 ${(top + fy(0)) / 2})">${esc(yLabel)}</text>`;
  for (const m of opts.marks ?? []) {
    body += `<line x1="${fx(m.x)}" y1="${top}" x2="${fx(m.x)}" y2="${fy(0)}" stroke="#999" stroke-dasharray="3,3"/>${text(fx(m.x) + 3, top + 10, m.label, { size: 9.5, color: '#555' })}`;
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => !opts.logX || p[0] > 0);
    body += `<polyline fill="none" stroke="${COLORS[i]}" stroke-width="2" ${s.dashed ? 'stroke-dasharray="5,3"' : ''} points="${pts.map((p) => `${fx(p[0]).toFixed(1)},${fy(p[1]).toFixed(1)}`).join(' ')}"/>`;
    for (const p of pts) body += `<circle cx="${fx(p[0]).toFixed(1)}" cy="${fy(p[1]).toFixed(1)}" r="2.5" fill="${COLORS[i]}"/>`;
    const ly = 30 + i * 13;
    body += `<line x1="${left + 10}" y1="${ly}" x2="${left + 30}" y2="${ly}" stroke="${COLORS[i]}" stroke-width="2" ${s.dashed ? 'stroke-dasharray="5,3"' : ''}/>${text(left + 34, ly + 3, s.name, { size: 10 })}`;
  });
  return { width, height, body };
}

export function placeholder(title: string, message: string, width = 560, height = 120): Panel {
  return {
    width,
    height,
    body: text(10, 18, title, { size: 13, weight: 'bold' }) + text(width / 2, height / 2, message, { anchor: 'middle', color: '#888' }),
  };
}

/** Panels in a grid of `columns`, with a caption line at the bottom. */
export function compose(panels: Panel[], columns: number, caption: string): string {
  const colW = Math.max(...panels.map((p) => p.width));
  const rows: Panel[][] = [];
  for (let i = 0; i < panels.length; i += columns) rows.push(panels.slice(i, i + columns));
  const rowH = rows.map((r) => Math.max(...r.map((p) => p.height)));
  const width = colW * columns + 10 * (columns + 1);
  const height = rowH.reduce((a, b) => a + b + 10, 10) + 24;
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n`;
  let y = 10;
  rows.forEach((r, i) => {
    r.forEach((p, j) => {
      out += `<g transform="translate(${10 + j * (colW + 10)},${y})">${p.body}</g>\n`;
    });
    y += rowH[i] + 10;
  });
  out += `${text(10, height - 10, caption, { size: 10, color: '#555' })}\n</svg>\n`;
  return out;
}
