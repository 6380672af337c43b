// The dashboard's only door to the system: the HTTP API. The token (when the API requires one) stays in
// sessionStorage for this tab and goes out as a Bearer header; artifacts are fetched as blobs for the same reason.
const KEY = 'sfw-token';

export class Unauthorized extends Error {}
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const token = () => sessionStorage.getItem(KEY);
export const setToken = (t) => (t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY));

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
}

async function send(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) throw new Unauthorized('the API needs a token');
  return res;
}

async function json(method, path, body) {
  const res = await send(method, path, body);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok)
    throw new ApiError(res.status, data?.error?.message ?? `${method} ${path}: HTTP ${res.status}`);
  return data;
}

export const get = (path) => json('GET', path);
export const post = (path, body) => json('POST', path, body);
export const put = (path, body) => json('PUT', path, body);
export const patch = (path, body) => json('PATCH', path, body);
export const del = (path) => json('DELETE', path);

/** Fetches a file with the token and answers an object URL (for <img> and download links). */
export async function blobUrl(path) {
  const res = await send('GET', path);
  if (!res.ok) throw new ApiError(res.status, `${path}: HTTP ${res.status}`);
  return URL.createObjectURL(await res.blob());
}

export async function metricsText() {
  const res = await send('GET', '/metrics');
  if (!res.ok) throw new ApiError(res.status, `/metrics: HTTP ${res.status}`);
  return res.text();
}

export const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
};

/**
 * Reads a server-sent event stream (fetched with the token, which EventSource cannot send): calls
 * `onEvent(name, data)` for each event until the stream ends or `signal` aborts. Resolves when it ends.
 */
export async function events(path, onEvent, signal) {
  const res = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal });
  if (res.status === 401) throw new Unauthorized('the API needs a token');
  if (!res.ok) {
    let message = `${path}: HTTP ${res.status}`;
    try {
      message = (await res.json()).error?.message ?? message;
    } catch {
      // not JSON: the status says it
    }
    throw new ApiError(res.status, message);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const name = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (name && data) onEvent(name, JSON.parse(data));
    }
  }
}
