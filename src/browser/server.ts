import { chromium, type BrowserServer } from 'playwright-core';
import { chromiumArgs, egressArgs } from './chromium.js';
import type { EgressProxy } from './egress.js';

/**
 * A Playwright server for one Chromium (playwright-core's public `launchServer`), listening on loopback
 * only: the runner dials it from the same process, never from the network. Its clients speak Playwright's
 * own protocol, so `chromium.connect()` works through any relay that passes its messages on unchanged.
 */

export interface BrowserServerOptions {
  executablePath: string;
  /** A started egress proxy: the browser then connects through it only, as the pool's browsers do. */
  egress?: EgressProxy | undefined;
  launchTimeoutMs?: number;
}

export interface LaunchedBrowserServer {
  /** ws://127.0.0.1:PORT/<random path> */
  wsEndpoint: string;
  /** Ends when the browser process is gone (closed or crashed). */
  closed: Promise<void>;
  close(): Promise<void>;
}

export async function launchBrowserServer(opts: BrowserServerOptions): Promise<LaunchedBrowserServer> {
  const server: BrowserServer = await chromium.launchServer({
    executablePath: opts.executablePath,
    headless: true,
    host: '127.0.0.1',
    port: 0,
    args: [...chromiumArgs(), ...(opts.egress ? egressArgs(opts.egress.port) : [])],
    chromiumSandbox: typeof process.getuid === 'function' && process.getuid() !== 0,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    timeout: opts.launchTimeoutMs ?? 30_000,
  });
  const proc = server.process();
  const closed = new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    else proc.once('exit', () => resolve());
  });
  return {
    wsEndpoint: server.wsEndpoint(),
    closed,
    close: async () => {
      const kill = setTimeout(() => server.kill().catch(() => undefined), 5000);
      await server.close().catch(() => server.kill());
      clearTimeout(kill);
      await closed;
    },
  };
}
