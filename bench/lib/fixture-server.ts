import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { ROOT } from './report.js';
import { nowMs } from './stats.js';

/**
 * Serves bench/fixtures on 127.0.0.1. A page requested with `?t0=<enqueue time ms>` records how long after
 * the enqueue the browser asked for it: the enqueue → first flow step latency, on one clock.
 */
export interface FixtureServer {
  url: string;
  /** Milliseconds from t0 to the page request, in arrival order. */
  arrivals: number[];
  /** Page (.html) requests so far; favicon and other requests are not counted. */
  requests: number;
  close(): Promise<void>;
}

const DIR = path.join(ROOT, 'bench', 'fixtures');

export async function startFixtureServer(): Promise<FixtureServer> {
  const pages = new Map<string, Buffer>();
  const state = { arrivals: [] as number[], requests: 0 };
  const server = http.createServer((req, res) => {
    const now = nowMs();
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/' || u.pathname.endsWith('.html')) state.requests++;
    const t0 = Number(u.searchParams.get('t0'));
    if (t0 > 0) state.arrivals.push(now - t0);
    const name = path.basename(u.pathname === '/' ? 'list.html' : u.pathname);
    const serve = (body: Buffer | undefined) => {
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
        .end(body);
    };
    const cached = pages.get(name);
    if (cached) return serve(cached);
    readFile(path.join(DIR, name)).then(
      (b) => {
        pages.set(name, b);
        serve(b);
      },
      () => serve(undefined),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    get arrivals() {
      return state.arrivals;
    },
    get requests() {
      return state.requests;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
