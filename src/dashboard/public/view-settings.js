// scheduler_config: max_concurrency (per runner) and the poll interval; runners pick changes up on their next heartbeat.
import { get, put } from './api.js';
import { html, render } from './util.js';

export const title = 'Settings';

export function mount(el) {
  render(
    el,
    html`<h2 tabindex="-1">Scheduler settings</h2>
      <form id="scheduler-form" class="form">
        <p class="hint">
          These values are <code>scheduler_config</code>: max concurrency applies per runner, not globally
          (global concurrency is the sum over runners). A runner started with
          <code>MAX_CONCURRENCY</code> keeps its own value.
        </p>
        <label for="max-concurrency">Max concurrency per runner</label>
        <input id="max-concurrency" name="maxConcurrency" type="number" min="1" max="1000" required />
        <label for="poll-interval">Poll interval (ms)</label>
        <input
          id="poll-interval"
          name="pollIntervalMs"
          type="number"
          min="50"
          max="600000"
          step="50"
          required
        />
        <div class="actions"><button type="submit">Save</button></div>
        <p id="scheduler-result" role="status" aria-live="polite"></p>
      </form>`,
  );
  const form = el.querySelector('#scheduler-form');
  const out = el.querySelector('#scheduler-result');
  const load = async () => {
    const c = await get('/v1/config/scheduler');
    form.maxConcurrency.value = c.maxConcurrency;
    form.pollIntervalMs.value = c.pollIntervalMs;
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.textContent = 'Saving…';
    try {
      const c = await put('/v1/config/scheduler', {
        maxConcurrency: Number(form.maxConcurrency.value),
        pollIntervalMs: Number(form.pollIntervalMs.value),
      });
      out.textContent = `Saved: max concurrency ${c.maxConcurrency}, poll interval ${c.pollIntervalMs} ms. Runners follow on their next heartbeat.`;
    } catch (err) {
      out.textContent = `Not saved: ${err.message}`;
    }
  });
  return { load };
}
