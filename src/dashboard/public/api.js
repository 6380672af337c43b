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
