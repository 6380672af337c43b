// Live view of a queued or running session (GET /v1/sessions/:id/live): on demand only, read-only. The
// panel outlives the session page's re-renders, so watching goes on while the facts around it refresh.
import { events } from './api.js';
import { html, render } from './util.js';

const STATE_TEXT = {
  waiting: 'Waiting for the runner (it hears of viewers with its next heartbeat)…',
  live: 'Live',
  'no-page': 'The session has no page to show right now.',
};

/** A panel for session `id`: a Watch button, the page's frames, and what the view is doing. */
export function livePanel(id) {
  const el = document.createElement('section');
  el.id = 'live';
  el.setAttribute('aria-labelledby', 'live-h');
  render(
    el,
    html`<h3 id="live-h">Live</h3>
      <p>
        <button type="button" id="live-toggle" aria-pressed="false">Watch live</button>
        <span id="live-state" role="status" aria-live="polite"></span>
      </p>
      <figure id="live-figure" hidden>
        <img id="live-frame" alt="The session's page, live" />
        <figcaption id="live-caption"></figcaption>
      </figure>
      <p class="hint">
        Read-only: the page as the runner's browser paints it, a few frames a second. Nothing is captured
        while nobody watches.
      </p>`,
  );
  const button = el.querySelector('#live-toggle');
  const state = el.querySelector('#live-state');
  const figure = el.querySelector('#live-figure');
  const img = el.querySelector('#live-frame');
  const caption = el.querySelector('#live-caption');
  let ac;
  let url;
  const show = (frame) => {
    const bytes = Uint8Array.from(atob(frame.jpeg), (c) => c.charCodeAt(0));
    const next = URL.createObjectURL(new Blob([bytes], { type: 'image/jpeg' }));
    img.src = next;
    img.width = frame.width;
    img.height = frame.height;
    if (url) URL.revokeObjectURL(url);
    url = next;
    figure.hidden = false;
    caption.textContent = `${frame.url ?? ''} · ${frame.width}×${frame.height} · ${new Date(frame.ts).toLocaleTimeString()}`;
    state.textContent = STATE_TEXT.live;
  };
  const stop = (text) => {
    ac?.abort();
    ac = undefined;
    button.textContent = 'Watch live';
    button.setAttribute('aria-pressed', 'false');
    if (text !== undefined) state.textContent = text;
  };
  const start = () => {
    ac = new AbortController();
    const mine = ac;
    button.textContent = 'Stop watching';
    button.setAttribute('aria-pressed', 'true');
    state.textContent = STATE_TEXT.waiting;
    events(
      `/v1/sessions/${encodeURIComponent(id)}/live?format=sse`,
      (name, data) => {
        if (mine !== ac) return;
        if (name === 'frame') show(data);
        else if (name === 'state') state.textContent = STATE_TEXT[data.state] ?? data.message;
        else if (name === 'end') stop(`Ended: ${data.message}.`);
      },
      mine.signal,
    )
      .then(() => mine === ac && stop('The live view ended.'))
      .catch((err) => mine === ac && stop(`Live view unavailable: ${err.message}`));
  };
  button.addEventListener('click', () => (ac ? stop('') : start()));
  return {
    el,
    close() {
      stop();
      if (url) URL.revokeObjectURL(url);
      url = undefined;
    },
  };
}
