// One session: status, steps with timings, result, error, attempts, screenshots inline, trace download,
// and while it runs, its page live (on demand).
import { blobUrl, get, post } from './api.js';
import { badge, duration, html, render, table, time } from './util.js';
import { livePanel } from './live.js';

export const title = 'Session';
const TERMINAL = ['succeeded', 'failed', 'error', 'cancelled'];
const pretty = (v) => JSON.stringify(v, null, 2);

// The runner's rule (src/sessions/redact.ts): a field whose name starts with `secret` holds a secret.
const SECRET_KEY = /^secret/i;
const MASK = '••••';

/** The input as shown: every value under a `secret*` field masked (re-run still sends the real input). */
function masked(value, secret = false) {
  if (Array.isArray(value)) return value.map((v) => masked(v, secret));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, masked(v, secret || SECRET_KEY.test(k))]),
    );
  }
  return secret && value !== null && value !== undefined ? MASK : value;
}

function stepsOf(result) {
  return result && typeof result === 'object' && Array.isArray(result.steps) ? result.steps : [];
}

/** A bar of `width` pixels; drawn as SVG, since the page's CSP allows no inline styles. */
const bar = (width) =>
  html`<svg class="bar" width="${width}" height="8" aria-hidden="true">
    <rect width="${width}" height="8" rx="2" />
  </svg>`;

function stepsTable(steps) {
  if (steps.length === 0) return html``;
  const max = Math.max(1, ...steps.map((s) => Number(s.ms) || 0));
  return html`<section aria-labelledby="steps-h">
    <h3 id="steps-h">Steps</h3>
    ${table(
      ['#', 'Action', 'Result', 'Time', ''],
      steps.map((s, i) => [
        i + 1,
        s.action ?? '?',
        s.ok === false ? html`<span class="bad">failed</span>` : html`<span class="good">ok</span>`,
        duration(Number(s.ms) || 0),
        bar(Math.max(1, Math.round(((Number(s.ms) || 0) / max) * 160))),
      ]),
      { id: 'steps' },
    )}
  </section>`;
}

/** What a session does with named states, and what became of its save. */
function stateText(state, save) {
  const parts = [];
  if (state.use) parts.push(html`starts from <a href="#/states/${state.use}">${state.use}</a>`);
  if (state.save) {
    const outcome = !save
      ? ' (when it succeeds)'
      : save.saved
        ? ` (saved version ${save.version})`
        : ` (not saved: version ${save.version}, newer, kept)`;
    parts.push(
      html`saves <a href="#/states/${state.save}">${state.save}</a>${outcome}${
          state.overwrite ? ', overwriting newer versions' : ''
        }`,
    );
  }
  return html`${parts.map((p, i) => html`${i > 0 ? '; ' : ''}${p}`)}`;
}

export function mount(el, params, ctx) {
  const id = params.get('id');
  let shown = '';
  // The outcome of the last button press; kept across re-renders.
  let message = '';
  const urls = [];
  // Made once for a session that can still be watched; moved into each re-render's slot.
  let live;
  const refresh = async () => {
    const s = await get(`/v1/sessions/${encodeURIComponent(id)}`);
    if (s.updatedAt === shown) return;
    shown = s.updatedAt;
    const steps = stepsOf(s.result);
    const result = s.result && typeof s.result === 'object' ? { ...s.result } : s.result;
    if (result && typeof result === 'object') delete result.steps;
    const ran = s.claimedAt
      ? Date.parse(s.finishedAt ?? new Date().toISOString()) - Date.parse(s.claimedAt)
      : null;
    const waited = s.claimedAt ? Date.parse(s.claimedAt) - Date.parse(s.runAt) : null;
    const images = s.artifacts.filter((a) => a.contentType.startsWith('image/'));
    const videos = s.artifacts.filter((a) => a.contentType.startsWith('video/'));
    const files = s.artifacts.filter((a) => !/^(image|video)\//.test(a.contentType));
    const canCancel = !TERMINAL.includes(s.status) && !s.cancelRequested;
    render(
      el,
      html`<h2 tabindex="-1">Session <code>${s.id}</code> ${badge(s.status)}</h2>
        <div class="actions">
          ${canCancel ? html`<button type="button" id="cancel-session">Cancel</button>` : ''}
          <button type="button" id="rerun-session">Re-run</button>
          <a href="#/sessions">Back to sessions</a>
        </div>
        <p id="action-result" role="status" aria-live="polite">${message}</p>
        <dl class="facts">
          <dt>Type</dt>
          <dd>${s.type}</dd>
          <dt>Priority</dt>
          <dd>${s.priority}</dd>
          <dt>Attempt</dt>
          <dd>${s.attempt} of ${s.maxAttempts}</dd>
          <dt>Created</dt>
          <dd>${time(s.createdAt)}</dd>
          <dt>Claimed</dt>
          <dd>${time(s.claimedAt)}${waited !== null ? ` (waited ${duration(waited)})` : ''}</dd>
          <dt>Finished</dt>
          <dd>${time(s.finishedAt)}</dd>
          <dt>Ran for</dt>
          <dd>${ran === null ? '—' : duration(ran)} (timeout ${duration(s.timeoutMs)})</dd>
          <dt>Runner</dt>
          <dd>${s.claimedBy ?? '—'}</dd>
          ${
            s.scheduleId
              ? html`<dt>Schedule</dt>
                  <dd>
                    <a
                      href="#/sessions?scheduleId=${encodeURIComponent(s.scheduleId)}"
                      title="Sessions of this schedule"
                      >fire time ${time(s.scheduledFor)}</a
                    >
                  </dd>`
              : ''
          }
          ${
            s.state
              ? html`<dt>Named state</dt>
                  <dd id="session-state">${stateText(s.state, s.stateSave)}</dd>`
              : ''
          }
          ${
            s.cancelRequested && !TERMINAL.includes(s.status)
              ? html`<dt>Cancel</dt>
                  <dd>requested; the runner stops it at its next heartbeat</dd>`
              : ''
          }
        </dl>
        ${TERMINAL.includes(s.status) ? '' : html`<div id="live-slot"></div>`}
        ${
          s.errorMessage
            ? html`<section aria-labelledby="error-h">
                <h3 id="error-h">Error</h3>
                <pre class="error" id="session-error">${s.errorMessage}</pre>
              </section>`
            : ''
        }
        ${stepsTable(steps)}
        ${
          images.length
            ? html`<section aria-labelledby="shots-h">
                <h3 id="shots-h">Screenshots</h3>
                <div class="shots">
                  ${images.map(
                    (a) =>
                      html`<figure>
                        <img data-artifact="${a.name}" alt="Screenshot ${a.name} of session ${s.id}" />
                        <figcaption>${a.name}</figcaption>
                      </figure>`,
                  )}
                </div>
              </section>`
            : ''
        }
        ${
          videos.length
            ? html`<section aria-labelledby="video-h">
                <h3 id="video-h">Video</h3>
                ${videos.map(
                  (a) =>
                    html`<figure>
                      <video
                        controls
                        preload="metadata"
                        data-artifact-video="${a.name}"
                        aria-label="Video ${a.name} of session ${s.id}"
                      ></video>
                      <figcaption>${a.name}</figcaption>
                    </figure>`,
                )}
              </section>`
            : ''
        }
        ${
          files.length
            ? html`<section aria-labelledby="files-h">
                <h3 id="files-h">Files</h3>
                <ul class="files">
                  ${files.map(
                    (a) =>
                      html`<li>
                        <a href="#" data-download="${a.name}">${a.name}</a> (${a.contentType}, ${a.size}
                        bytes)
                        ${a.name.endsWith('.zip') ? html`<br /><span class="hint">A Playwright trace: download it, then open it with <code>npx playwright show-trace ${a.name}</code> (or drop it on trace.playwright.dev).</span>` : ''}
                        ${a.name.endsWith('.har') ? html`<br /><span class="hint">The session's requests as a HAR: open it in the browser's developer tools (Network, Import HAR) or a HAR viewer.</span>` : ''}
                      </li>`,
                  )}
                </ul>
              </section>`
            : ''
        }
        ${
          result !== null &&
          result !== undefined &&
          !(typeof result === 'object' && Object.keys(result).length === 0)
            ? html`<section aria-labelledby="result-h">
                <h3 id="result-h">Result</h3>
                <pre id="session-result">${pretty(result)}</pre>
              </section>`
            : ''
        }
        <section aria-labelledby="input-h">
          <h3 id="input-h">Input</h3>
          <pre id="session-input">${pretty(masked(s.input))}</pre>
        </section>
        ${
          s.attempts.length
            ? html`<section aria-labelledby="attempts-h">
                <h3 id="attempts-h">Attempts</h3>
                ${table(
                  ['Attempt', 'Runner', 'Outcome', 'Started', 'Finished', 'Message'],
                  s.attempts.map((a) => [
                    a.attempt,
                    a.runnerId ?? '—',
                    badge(a.status),
                    time(a.startedAt),
                    time(a.finishedAt),
                    a.errorMessage ?? '',
                  ]),
                  { id: 'attempts' },
                )}
              </section>`
            : ''
        }`,
    );
    const slot = el.querySelector('#live-slot');
    if (slot) {
      live ??= livePanel(s.id);
      slot.replaceWith(live.el);
    } else if (live) {
      live.close();
      live = undefined;
    }
    while (urls.length) URL.revokeObjectURL(urls.pop());
    const artifactPath = (name) =>
      `/v1/sessions/${encodeURIComponent(s.id)}/artifacts/${encodeURIComponent(name)}?redirect=false`;
    for (const img of el.querySelectorAll('img[data-artifact]')) {
      blobUrl(artifactPath(img.dataset.artifact))
        .then((u) => {
          urls.push(u);
          img.src = u;
        })
        .catch((err) => img.replaceWith(document.createTextNode(`(screenshot unavailable: ${err.message})`)));
    }
    for (const video of el.querySelectorAll('video[data-artifact-video]')) {
      blobUrl(artifactPath(video.dataset.artifactVideo))
        .then((u) => {
          urls.push(u);
          video.src = u;
        })
        .catch((err) => video.replaceWith(document.createTextNode(`(video unavailable: ${err.message})`)));
    }
    for (const link of el.querySelectorAll('a[data-download]')) {
      link.addEventListener('click', async (e) => {
        e.preventDefault();
        const u = await blobUrl(artifactPath(link.dataset.download));
        const a = document.createElement('a');
        a.href = u;
        a.download = link.dataset.download;
        a.click();
        setTimeout(() => URL.revokeObjectURL(u), 10_000);
      });
    }
    const out = el.querySelector('#action-result');
    el.querySelector('#cancel-session')?.addEventListener('click', async () => {
      try {
        const c = await post(`/v1/sessions/${encodeURIComponent(s.id)}/cancel`);
        message = c.status === 'cancelled' ? 'Cancelled.' : 'Cancel requested; the runner stops it shortly.';
        shown = '';
        await refresh();
      } catch (err) {
        out.textContent = `Could not cancel: ${err.message}`;
      }
    });
    el.querySelector('#rerun-session').addEventListener('click', async () => {
      try {
        const body = {
          type: s.type,
          input: s.input,
          priority: s.priority,
          timeoutMs: s.timeoutMs,
          maxAttempts: s.maxAttempts,
          retryOn: s.retryOn,
          artifacts: s.artifactOptions,
        };
        const created = await post('/v1/sessions', body);
        ctx.navigate(`#/sessions/${created.id}`);
      } catch (err) {
        out.textContent = `Could not re-run: ${err.message}`;
      }
    });
  };
  return {
    refresh,
    unmount: () => {
      live?.close();
      urls.forEach((u) => URL.revokeObjectURL(u));
    },
  };
}
