// Inline SVG charts drawn from the API's numbers (no library). Each chart is an <svg role="img"> with a
// title and a text description of its latest and largest values for screen readers.
import { esc, raw } from './util.js';

const W = 560;
const H = 180;
const PAD = { top: 12, right: 12, bottom: 26, left: 48 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/**
 * series: [{ name, color, values: (number|null)[] }] over the same times; format(v) prints a value.
 */
export function lineChart({ id, title, times, series, format = String }) {
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = niceMax(Math.max(0, ...all));
  const n = Math.max(times.length, 2);
  const x = (i) => PAD.left + (i * (W - PAD.left - PAD.right)) / (n - 1);
  const y = (v) => PAD.top + (1 - v / max) * (H - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1]
    .map((f) => {
      const v = max * f;
      return `<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v)}" y2="${y(v)}"/>
        <text class="axis" x="${PAD.left - 6}" y="${y(v) + 4}" text-anchor="end">${esc(format(v))}</text>`;
    })
    .join('');
  const ticks = times.length
    ? [0, Math.floor((times.length - 1) / 2), times.length - 1]
        .map(
          (i) =>
            `<text class="axis" x="${x(i)}" y="${H - 8}" text-anchor="${
              i === 0 ? 'start' : i === times.length - 1 ? 'end' : 'middle'
            }">${esc(hhmm(times[i]))}</text>`,
        )
        .join('')
    : '';
  const lines = series
    .map((s) => {
      let d = '';
      s.values.forEach((v, i) => {
        if (v === null) return;
        d += `${d === '' || s.values[i - 1] === null ? 'M' : 'L'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      });
      // A value with no neighbour draws no line: mark it with a dot.
      const dots = s.values
        .map((v, i) =>
          v !== null && (s.values[i - 1] ?? null) === null && (s.values[i + 1] ?? null) === null
            ? `<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${s.color}"/>`
            : '',
        )
        .join('');
      return (d ? `<path class="line" d="${d}" stroke="${s.color}"/>` : '') + dots;
    })
    .join('');
  const desc = series
    .map((s) => {
      const vals = s.values.filter((v) => v !== null);
      const last = vals.length ? format(vals[vals.length - 1]) : 'no data';
      const peak = vals.length ? format(Math.max(...vals)) : 'no data';
      return `${s.name}: now ${last}, peak ${peak}`;
    })
    .join('; ');
  const legend = series
    .map(
      (s) =>
        `<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true"><rect width="10" height="10" rx="2" fill="${esc(s.color)}"/></svg>${esc(s.name)}</li>`,
    )
    .join('');
  return raw(`<figure class="chart" id="${esc(id)}">
    <figcaption>${esc(title)}</figcaption>
    <svg viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${esc(id)}-t ${esc(id)}-d">
      <title id="${esc(id)}-t">${esc(title)}</title>
      <desc id="${esc(id)}-d">${esc(desc)}</desc>
      ${grid}${ticks}${lines}
    </svg>
    <ul class="legend">${legend}</ul>
  </figure>`);
}
