// Dashboard: reads the API only. Token (when the API requires one) is kept in sessionStorage.
const token = () => sessionStorage.getItem('sfw-token');
async function api(path) {
  const headers = token() ? { authorization: `Bearer ${token()}` } : {};
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    const t = prompt('API token');
    if (t) {
      sessionStorage.setItem('sfw-token', t);
      return api(path);
    }
  }
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}
const esc = (s) =>
  String(s ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
function table(head, rows) {
  return `<table><thead><tr>${head.map((h) => `<th scope="col">${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}
async function refresh() {
  try {
    const [queue, runners, alerts] = await Promise.all([
      api('/v1/queue'),
      api('/v1/runners'),
      api('/v1/alerts'),
    ]);
    document.getElementById('queue').innerHTML =
      table(Object.keys(queue.byStatus), [Object.values(queue.byStatus)]) +
      `<p>Oldest queued: ${queue.oldestQueuedAgeMs === null ? '—' : Math.round(queue.oldestQueuedAgeMs / 1000) + ' s'} · fleet capacity ${queue.fleetCapacity}</p>`;
    document.getElementById('runners').innerHTML =
      runners.items.length === 0
        ? 'No runners yet.'
        : table(
            ['Runner', 'Status', 'Heartbeat age', 'Active / max', 'Executed', 'Failures'],
            runners.items.map((r) => [
              r.runnerId,
              r.status,
              `${Math.round(r.heartbeatAgeMs / 1000)} s`,
              `${r.activeSessions} / ${r.maxConcurrency}`,
              r.totalSessionsExecuted,
              r.totalFailures,
            ]),
          );
    document.getElementById('alerts').innerHTML =
      alerts.items.length === 0
        ? 'No alerts.'
        : alerts.items.map((a) => `<p class="alert">${esc(a.name)}: ${esc(a.message)}</p>`).join('');
    document.getElementById('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    document.getElementById('status').textContent = String(err);
  }
}
refresh();
setInterval(refresh, 3000);
