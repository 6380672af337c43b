// Small helpers: escaping, formatting, building markup.
export const esc = (s) =>
  String(s ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );

/** Tagged template that escapes interpolations unless they are raw(...) markup. */
const RAW = Symbol('raw');
export const raw = (html) => ({ [RAW]: html });
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    const part = Array.isArray(v)
      ? v.map((x) => (x && x[RAW] !== undefined ? x[RAW] : esc(x))).join('')
      : v && v[RAW] !== undefined
        ? v[RAW]
        : esc(v);
    out += part + strings[i + 1];
  });
  return raw(out);
}
export const render = (el, markup) => {
  el.innerHTML = markup[RAW];
};

export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export const time = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
export const ago = (iso) => (iso ? duration(Date.now() - Date.parse(iso)) + ' ago' : '—');
export const percent = (x) => (x === null || Number.isNaN(x) ? '—' : `${(x * 100).toFixed(1)}%`);

export const badge = (status) => html`<span class="badge badge-${status}">${status}</span>`;

export function table(head, rows, opts = {}) {
  return html`<div class="table-wrap"><table${raw(opts.id ? ` id="${esc(opts.id)}"` : '')}>
    ${
      opts.caption
        ? html`<caption>
            ${opts.caption}
          </caption>`
        : ''
    }
    <thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
    <tbody>${rows.map(
      (r) =>
        html`<tr>
          ${r.map((c) => html`<td>${c}</td>`)}
        </tr>`,
    )}</tbody>
  </table></div>`;
}
