// Batches: the sessions of one tag by status (a bar and the counts), its export and the cancel of what is
// left. /tags asks for a tag; /tags/<tag> follows it live.
import { blobUrl, get, post, query } from './api.js';
import { ago, html, render, time } from './util.js';

export const title = 'Batches';
const STATUSES = ['succeeded', 'failed', 'error', 'cancelled', 'running', 'queued'];
const TAG_PATTERN = '[A-Za-z0-9][A-Za-z0-9._:\\/=@+\\-]*';

/**
 * Downloads GET /v1/sessions/export for a filter ({tag, status, type}) as a file (fetched with the token,
 * like artifacts). Answers the file name.
 */
export async function downloadExport(filter, format) {
  const url = await blobUrl(`/v1/sessions/export${query({ ...filter, format })}`);
  const name = `sessions${filter.tag ? `-${filter.tag.replace(/[^A-Za-z0-9._-]/g, '_')}` : ''}.${format}`;
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}

/** Two buttons that download the export of `filter()` as JSON lines or CSV; the outcome goes to `say`. */
export function exportButtons(el, filter, say) {
  for (const b of el.querySelectorAll('button[data-export]')) {
    b.addEventListener('click', async () => {
      b.disabled = true;
      say(`Exporting ${b.dataset.export.toUpperCase()}…`);
      try {
        say(`Downloaded ${await downloadExport(filter(), b.dataset.export)}`);
      } catch (err) {
        say(`Export failed: ${err.message}`);
      } finally {
        b.disabled = false;
      }
    });
  }
}

export const exportMarkup = html`<span class="actions export-actions">
  <button type="button" data-export="jsonl">Export JSON lines</button>
  <button type="button" data-export="csv">Export CSV</button>
</span>`;

/** A bar of the tag's sessions, one segment per status in proportion to its count. */
function bar(view) {
  if (view.total === 0) return '';
  return html`<div
    class="batch-bar"
    role="img"
    aria-label="${STATUSES.map((s) => `${view.byStatus[s]} ${s}`).join(', ')}"
  >
    ${STATUSES.filter((s) => view.byStatus[s] > 0).map(
      (s) =>
        html`<span
          class="batch-seg batch-${s}"
          data-width="${((100 * view.byStatus[s]) / view.total).toFixed(3)}%"
          title="${view.byStatus[s]} ${s}"
        ></span>`,
    )}
  </div>`;
}

export function mount(el, params, { navigate }) {
  // The route holds the tag percent-encoded (a tag may hold a /).
  const tag = params.has('tag') ? decodeURIComponent(params.get('tag')) : null;
  render(
    el,
    html`<h2 tabindex="-1">${tag ? `Batch ${tag}` : 'Batches'}</h2>
      <form id="batch-pick" class="filters" role="search" aria-label="Follow a tag">
        <label for="batch-tag">Tag</label>
        <input
          id="batch-tag"
          name="tag"
          value="${tag ?? ''}"
          placeholder="nightly-2024-06-01"
          autocomplete="off"
          required
          pattern="${TAG_PATTERN}"
          maxlength="64"
        />
        <button type="submit">Follow</button>
      </form>
      <div id="batch"></div>
      <p id="batch-note" class="hint" aria-live="polite"></p>`,
  );
  el.querySelector('#batch-pick').addEventListener('submit', (e) => {
    e.preventDefault();
    navigate(`#/tags/${encodeURIComponent(e.target.tag.value.trim())}`);
  });
  const note = (t) => (el.querySelector('#batch-note').textContent = t);
  if (!tag) {
    render(
      el.querySelector('#batch'),
      html`<p class="hint">
        Sessions enqueued with <code>tags</code> (<code>sfw enqueue --tag t</code>) are followed here: their
        counts by status, the export of their results, the cancel of what is left.
      </p>`,
    );
    return {};
  }
  const refresh = async () => {
    const v = await get(`/v1/tags/${encodeURIComponent(tag)}`);
    const box = el.querySelector('#batch');
    const left = v.byStatus.queued + v.byStatus.running;
    const pct = v.total === 0 ? 0 : Math.floor((100 * v.finished) / v.total);
    render(
      box,
      v.total === 0
        ? html`<p>No session carries this tag.</p>`
        : html`<p id="batch-summary">
              <strong>${v.finished} of ${v.total}</strong> final (${pct}%)${v.done ? ' · done' : ''} · created
              ${time(v.oldestCreatedAt)} to
              ${time(v.newestCreatedAt)}${v.lastFinishedAt ? ` · last finished ${ago(v.lastFinishedAt)}` : ''}
            </p>
            ${bar(v)}
            <dl class="batch-counts" id="batch-counts">
              ${STATUSES.map(
                (s) =>
                  html`<div>
                    <dt><span class="badge badge-${s}">${s}</span></dt>
                    <dd data-status="${s}">${v.byStatus[s]}</dd>
                  </div>`,
              )}
            </dl>
            <p class="actions">
              <a href="#/sessions${query({ tag })}">List its sessions</a>
              ${exportMarkup}
              ${left > 0 ? html`<button type="button" id="batch-cancel" class="danger">Cancel the ${left} not final</button>` : ''}
            </p>`,
    );
    // Widths through the CSSOM: the page's CSP allows no inline style attributes.
    for (const seg of box.querySelectorAll('.batch-seg')) seg.style.width = seg.dataset.width;
    exportButtons(box, () => ({ tag }), note);
    box.querySelector('#batch-cancel')?.addEventListener('click', async () => {
      if (!confirm(`Cancel every queued and running session of ${tag}?`)) return;
      const out = await post('/v1/sessions/cancel', { tag });
      note(`Cancelled ${out.cancelled} queued; asked ${out.requested} running to stop.`);
      await refresh();
    });
  };
  return { refresh };
}
