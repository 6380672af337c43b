/**
 * A multi-host fleet on one machine: Postgres and the API on one "host", three runners on three others,
 * all sharing one execution queue. Mid-run a fourth runner joins and one runner is stopped gracefully.
 *
 *   npm run demo:fleet                      # watch it on the dashboard URL it prints; Ctrl-C ends it
 *   npm run demo:fleet -- --sessions 200 --port 3000 --network loopback --keep
 *
 * Network: as root with `ip` (iproute2), every "host" is its own network namespace joined by veth pairs to
 * a bridge in the hub namespace (10.77.0.0/24, which exists only inside these namespaces); runners reach the
 * API at http://10.77.0.1:3000 over that network and cannot reach each other's loopback. Without root,
 * every process runs on 127.0.0.1 (`--network loopback`). The dashboard is relayed to 127.0.0.1 on this
 * machine through a Unix socket.
 *
 *   npm run demo:fleet -- recovery --trials 3   # time to recover a session after kill -9 of its runner
 *
 * The same file is also the entry of the processes it starts: `demo-fleet.ts sfw <args>` runs the sfw CLI
 * from source, `demo-fleet.ts relay <socket> <host:port>` forwards a Unix socket to TCP.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, createWriteStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SfwClient } from '@session-framework/sdk';
import type { RunnerView, SessionView } from '../src/protocol/schemas.js';
import { freePort } from '../test/helpers/ports.js';
import { waitFor } from '../test/helpers/wait.js';

const SCRIPT = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SCRIPT), '..');
export const SESSION_TYPE = 'fleet-work';
const API_TOKEN = 'fleet-demo-api-token';
const RUNNER_TOKEN = 'fleet-demo-runner-token';
const HUB_ADDR = '10.77.0.1';
const HUB_PORT = 3000;

export type Network = 'netns' | 'loopback';

export interface FleetOptions {
  sessions: number;
  /** Each session sleeps a random time in [min, max] ms. */
  sessionMs: [number, number];
  maxConcurrency: number;
  network: Network | 'auto';
  /** Port of the dashboard/API on this machine's 127.0.0.1 (0: any free port). */
  port: number;
  /** runner-4 joins once this share of the first half of the sessions is done; then the second half is enqueued. */
  joinAt: number;
  /** runner-2 is stopped (SIGTERM, drain) once this share is done and it has sessions in flight. */
  stopAt: number;
  /** Overall bound for the run. */
  timeoutMs: number;
  heartbeatIntervalMs: number;
  /** Keep the work folder (process logs, execution log) instead of deleting it. */
  keep: boolean;
  log: (line: string) => void;
  /** Called once the fleet is idle and verified, before it is torn down (the demo waits for Ctrl-C here). */
  beforeTeardown?: (apiUrl: string) => Promise<void>;
  /** Aborting it ends the run early (the demo's Ctrl-C); the fleet is still torn down cleanly. */
  signal?: AbortSignal;
}

export interface StopRecord {
  runnerId: string;
  inFlightAtSignal: string[];
  signalledAt: number;
  exitCode: number | null;
}

export interface FleetReport {
  network: Network;
  apiUrl: string;
  runnerIds: string[];
  sessions: ListedSession[];
  /** Session id → runner ids that executed it (from the sessions' own execution log). */
  executions: Map<string, string[]>;
  runners: RunnerView[];
  stopped: StopRecord;
  joinedAt: number;
  /** Runner id → its network address as seen from the API's host. */
  addresses: Record<string, string>;
  durationMs: number;
}

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

/** A failure that waiting will not fix (a process died). */
class FleetError extends Error {}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value, at most `timeoutMs`; a FleetError ends the wait at once. */
function waitUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
  signal?: AbortSignal,
) {
  return waitFor(check, {
    what,
    timeoutMs,
    intervalMs: 100,
    signal,
    fatal: (err) => err instanceof FleetError,
  });
}

// ---- network namespaces ---------------------------------------------------------------------------

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** True when this process may create network namespaces (root with iproute2). */
export function netnsAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = `sfwprobe${process.pid}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
    return true;
  } catch {
    return false;
  }
}

class Namespaces {
  readonly hub: string;
  private readonly created: string[] = [];
  constructor(private readonly prefix: string) {
    this.hub = `${prefix}-hub`;
  }

  createHub(): void {
    ip('netns', 'add', this.hub);
    this.created.push(this.hub);
    ip('-n', this.hub, 'link', 'set', 'lo', 'up');
    ip('-n', this.hub, 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.hub, 'addr', 'add', `${HUB_ADDR}/24`, 'dev', 'br0');
    ip('-n', this.hub, 'link', 'set', 'br0', 'up');
  }

  /** A runner host: its own namespace, one veth into the hub's bridge. Returns its address. */
  createHost(index: number): { ns: string; address: string } {
    const ns = `${this.prefix}-r${index}`;
    const address = `10.77.0.${10 + index}`;
    ip('netns', 'add', ns);
    this.created.push(ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    // Both ends are created directly inside our namespaces; the machine's own network is untouched.
    ip('link', 'add', `h${index}`, 'netns', this.hub, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', this.hub, 'link', 'set', `h${index}`, 'master', 'br0');
    ip('-n', this.hub, 'link', 'set', `h${index}`, 'up');
    ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    return { ns, address };
  }

  destroy(): void {
    for (const ns of this.created.reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
    this.created.length = 0;
  }
}

// ---- processes ----------------------------------------------------------------------------------

function startProc(
  name: string,
  ns: string | undefined,
  args: string[],
  env: Record<string, string>,
  logFile: string,
): Proc {
  const node = [process.execPath, '--import', 'tsx', SCRIPT, ...args];
  const [cmd, ...rest] = ns ? ['ip', 'netns', 'exec', ns, ...node] : node;
  const child = spawn(cmd!, rest, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Own process group: a Ctrl-C in the terminal reaches only this script, which stops the fleet in
    // order (a second signal straight to a draining runner would abort its sessions).
    detached: true,
  });
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout?.pipe(out, { end: false });
  child.stderr?.pipe(out, { end: false });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      out.end();
      resolve(code ?? (signal ? 128 : null));
    });
  });
  return { name, child, exited };
}

async function stopProc(p: Proc, timeoutMs: number): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.exited;
  p.child.kill('SIGTERM');
  const code = await Promise.race([p.exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  p.child.kill('SIGKILL');
  return p.exited;
}

/** Forwards TCP connections on 127.0.0.1:port of this machine to a Unix socket (served in the hub). */
function relayToSocket(socketPath: string, port: number): Promise<net.Server> {
  const server = net.createServer((conn) => {
    const up = net.connect(socketPath);
    conn.pipe(up).pipe(conn);
    conn.on('error', () => up.destroy());
    up.on('error', () => conn.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE' ? new FleetError(`port ${port} is in use: pass --port <free port>`) : err,
      ),
    );
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** The `relay` role: serve a Unix socket, forward each connection to host:port (run inside the hub). */
function serveRelay(socketPath: string, target: string): void {
  const [host = '127.0.0.1', port] = target.split(':');
  const server = net.createServer((conn) => {
    const up = net.connect(Number(port), host);
    conn.pipe(up).pipe(conn);
    conn.on('error', () => up.destroy());
    up.on('error', () => conn.destroy());
  });
  server.listen(socketPath);
  const close = () => server.close(() => process.exit(0));
  process.on('SIGTERM', close);
  process.on('SIGINT', close);
}

// ---- the session type the fleet runs -------------------------------------------------------------

/** A code session that needs no browser: sleeps input.ms and logs which runner executed it. */
function sessionModule(): string {
  const define = pathToFileURL(path.join(ROOT, 'src/sessions/define.ts')).href;
  return `import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { defineSession } from ${JSON.stringify(define)};

export default defineSession({
  name: ${JSON.stringify(SESSION_TYPE)},
  browser: false,
  async run(ctx) {
    const { ms, log } = ctx.input;
    const runnerId = process.env.RUNNER_ID;
    appendFileSync(log, JSON.stringify({ event: 'start', id: ctx.sessionId, runnerId }) + '\\n');
    await sleep(ms, undefined, { signal: ctx.signal });
    appendFileSync(log, JSON.stringify({ event: 'done', id: ctx.sessionId, runnerId }) + '\\n');
    return { ranBy: runnerId };
  },
});
`;
}

function readExecutions(file: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as { event: string; id: string; runnerId: string };
    if (e.event !== 'done') continue;
    out.set(e.id, [...(out.get(e.id) ?? []), e.runnerId]);
  }
  return out;
}

/** A session as the list answers it with every field (a list item has no state options). */
type ListedSession = Omit<SessionView, 'state' | 'stateSave'>;

async function allSessions(client: SfwClient): Promise<ListedSession[]> {
  const items: ListedSession[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const res = await client.listSessions({ type: SESSION_TYPE, limit: 1000, ...(cursor ? { cursor } : {}) });
    items.push(...res.items);
    if (!res.nextCursor) break;
    cursor = res.nextCursor;
  }
  return items;
}

// ---- the run --------------------------------------------------------------------------------------

export async function runFleet(options: Partial<FleetOptions> = {}): Promise<FleetReport> {
  const o: FleetOptions = {
    sessions: 60,
    sessionMs: [800, 1600],
    maxConcurrency: 3,
    network: 'auto',
    port: 0,
    joinAt: 0.3,
    stopAt: 0.5,
    timeoutMs: 180_000,
    heartbeatIntervalMs: 1000,
    keep: process.env.SFW_FLEET_KEEP === '1',
    log: (line) => console.error(line),
    ...options,
  };
  const wait = <T>(what: string, ms: number, check: () => Promise<T | undefined>) =>
    waitUntil(what, ms, check, o.signal);
  const t0 = Date.now();
  const log = o.log;
  o.log = (line) => log(line.replace('[fleet]', `[fleet +${((Date.now() - t0) / 1000).toFixed(1)}s]`));
  const network: Network = o.network === 'auto' ? (netnsAvailable() ? 'netns' : 'loopback') : o.network;
  const started = Date.now();
  const work = await mkdtemp(path.join(os.tmpdir(), 'sfw-fleet-'));
  // As root, embedded Postgres runs as its own unprivileged user, which must reach its data folder.
  await chmod(work, 0o755);
  const sessionsDir = path.join(work, 'sessions');
  const logs = path.join(work, 'logs');
  await mkdir(sessionsDir);
  await mkdir(logs);
  writeFileSync(path.join(sessionsDir, 'fleet-work.mjs'), sessionModule());
  const execLog = path.join(work, 'executions.jsonl');
  appendFileSync(execLog, '');

  const nets = new Namespaces(`sfw${process.pid}`);
  const procs: Proc[] = [];
  const runners = new Map<string, Proc>();
  const addresses: Record<string, string> = {};
  let relay: net.Server | undefined;
  let client: SfwClient | undefined;
  try {
    // The API host: embedded Postgres + API in one `sfw api` process.
    let apiBase: string;
    let apiUrl: string;
    const apiEnv: Record<string, string> = {
      DATA_DIR: path.join(work, 'data'),
      API_TOKEN,
      RUNNER_TOKEN,
      LOG_LEVEL: 'warn',
      REAPER_INTERVAL_MS: '1000',
    };
    if (network === 'netns') {
      nets.createHub();
      const api = startProc(
        'api',
        nets.hub,
        ['sfw', 'api'],
        { ...apiEnv, HOST: '0.0.0.0', PORT: String(HUB_PORT) },
        path.join(logs, 'api.log'),
      );
      procs.push(api);
      const socket = path.join(work, 'api.sock');
      procs.push(
        startProc(
          'relay',
          nets.hub,
          ['relay', socket, `127.0.0.1:${HUB_PORT}`],
          {},
          path.join(logs, 'relay.log'),
        ),
      );
      await wait('the hub relay socket', 60_000, async () => (existsSync(socket) ? true : undefined));
      relay = await relayToSocket(socket, o.port);
      apiBase = `http://${HUB_ADDR}:${HUB_PORT}`;
      apiUrl = `http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
    } else {
      const port = o.port || (await freePort());
      procs.push(
        startProc(
          'api',
          undefined,
          ['sfw', 'api'],
          { ...apiEnv, HOST: '127.0.0.1', PORT: String(port) },
          path.join(logs, 'api.log'),
        ),
      );
      apiBase = `http://127.0.0.1:${port}`;
      apiUrl = apiBase;
    }
    client = new SfwClient({ baseUrl: apiUrl, token: API_TOKEN, retries: 0 });
    const c = client;
    const apiProc = procs[0]!;
    await wait('the API to be ready', 90_000, async () => {
      if (apiProc.child.exitCode !== null)
        throw new FleetError(`sfw api exited: ${tail(path.join(logs, 'api.log'))}`);
      return (await c.ready()).ok ? true : undefined;
    });
    o.log(`[fleet] API ready (${network}): ${apiUrl}   dashboard ${apiUrl}/   token ${API_TOKEN}`);

    const startRunner = (index: number): string => {
      const runnerId = `fleet-runner-${index}`;
      let ns: string | undefined;
      if (network === 'netns') {
        const host = nets.createHost(index);
        ns = host.ns;
        addresses[runnerId] = host.address;
      } else addresses[runnerId] = '127.0.0.1';
      const p = startProc(
        runnerId,
        ns,
        ['sfw', 'runner'],
        {
          API_BASE_URL: apiBase,
          RUNNER_ID: runnerId,
          RUNNER_TOKEN,
          MAX_CONCURRENCY: String(o.maxConcurrency),
          SESSIONS_DIR: sessionsDir,
          HEARTBEAT_INTERVAL_MS: String(o.heartbeatIntervalMs),
          LOG_LEVEL: 'warn',
        },
        path.join(logs, `${runnerId}.log`),
      );
      procs.push(p);
      runners.set(runnerId, p);
      o.log(`[fleet] started ${runnerId} at ${addresses[runnerId]}`);
      return runnerId;
    };

    for (const i of [1, 2, 3]) startRunner(i);
    await wait('three runners to register', 120_000, async () => {
      const live = (await c.runners()).filter((r) => r.runnerId.startsWith('fleet-runner-'));
      return live.length >= 3 ? true : undefined;
    });

    const [lo, hi] = o.sessionMs;
    const batch = Array.from({ length: o.sessions }, (_, i) => ({
      type: SESSION_TYPE,
      input: { ms: Math.round(lo + ((hi - lo) * ((i * 7919) % 101)) / 100), log: execLog, n: i },
    }));
    const enqueue = async (items: typeof batch) => {
      for (let i = 0; i < items.length; i += 500) await c.createSessions(items.slice(i, i + 500));
    };
    const doneCount = async () => {
      const q = await c.queue();
      return (q.byStatus.succeeded ?? 0) + (q.byStatus.failed ?? 0) + (q.byStatus.error ?? 0);
    };

    // Two waves, so the runner that joins late finds work whatever its start-up time.
    const wave1 = batch.slice(0, Math.ceil(o.sessions / 2));
    await enqueue(wave1);
    o.log(`[fleet] enqueued ${wave1.length} sessions of ${lo}-${hi} ms`);

    // A fourth runner joins mid-run.
    await wait('the first sessions to finish', o.timeoutMs, async () =>
      (await doneCount()) >= Math.ceil(wave1.length * o.joinAt) ? true : undefined,
    );
    const joinedAt = Date.now();
    startRunner(4);
    await wait('fleet-runner-4 to register', 120_000, async () =>
      (await c.runners()).some((r) => r.runnerId === 'fleet-runner-4') ? true : undefined,
    );
    await enqueue(batch.slice(wave1.length));
    o.log(`[fleet] enqueued ${o.sessions - wave1.length} more`);

    // runner-2 stops gracefully while it is running sessions: with every slot busy, so that no claim of
    // its own is in flight at the signal (see docs/scaling.md, "Safe shutdown").
    const victim = 'fleet-runner-2';
    const inFlight = await wait(`${victim} to be busy`, o.timeoutMs, async () => {
      if ((await doneCount()) < Math.ceil(o.sessions * o.stopAt)) return undefined;
      const view = (await c.runners()).find((r) => r.runnerId === victim);
      const slots = view?.effectiveConcurrency ?? view?.maxConcurrency ?? o.maxConcurrency;
      const { items } = await c.listSessions({ status: 'running', runnerId: victim, limit: 100 });
      return items.length > 0 && items.length >= slots ? items.map((s) => s.id) : undefined;
    });
    const signalledAt = Date.now();
    runners.get(victim)!.child.kill('SIGTERM');
    o.log(`[fleet] SIGTERM ${victim} with ${inFlight.length} sessions in flight: it drains`);
    const exitCode = await Promise.race([
      runners.get(victim)!.exited,
      sleep(60_000).then(() => 'timeout' as const),
    ]);
    if (exitCode === 'timeout') throw new FleetError(`${victim} did not exit within 60 s of SIGTERM`);
    o.log(`[fleet] ${victim} exited with code ${exitCode}`);

    await wait('every session to finish', o.timeoutMs, async () =>
      (await doneCount()) >= o.sessions ? true : undefined,
    );
    const sessions = await allSessions(c);
    const fleet = (await c.runners()).filter((r) => r.runnerId.startsWith('fleet-runner-'));
    o.log(
      `[fleet] all ${sessions.length} sessions finished in ${Math.round((Date.now() - started) / 1000)} s`,
    );
    for (const x of sessions.filter((y) => y.status !== 'succeeded' || y.attempts.length !== 1))
      o.log(
        `[fleet]   session ${x.id}: ${x.status} after ${x.attempts.length} attempt(s) ${x.errorMessage ?? ''}`,
      );
    for (const r of fleet) {
      o.log(
        `[fleet]   ${r.runnerId.padEnd(16)} ${r.status.padEnd(9)} executed ${r.totalSessionsExecuted}  failures ${r.totalFailures}`,
      );
    }
    const report: FleetReport = {
      network,
      apiUrl,
      runnerIds: [...runners.keys()],
      sessions,
      executions: readExecutions(execLog),
      runners: fleet,
      stopped: { runnerId: victim, inFlightAtSignal: inFlight, signalledAt, exitCode },
      joinedAt,
      addresses,
      durationMs: Date.now() - started,
    };
    if (o.beforeTeardown) await o.beforeTeardown(apiUrl);
    return report;
  } finally {
    // Runners first (they drain), then the API (it stops Postgres), then the relay and the network.
    await Promise.all([...runners.values()].map((p) => stopProc(p, 30_000)));
    await client?.close();
    for (const p of procs.filter((x) => !runners.has(x.name)).reverse()) await stopProc(p, 30_000);
    await new Promise<void>((r) => (relay ? relay.close(() => r()) : r()));
    nets.destroy();
    if (o.keep) o.log(`[fleet] logs kept in ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---- recovery after a crash ---------------------------------------------------------------------

export interface RecoveryTrial {
  ms: number;
  status: string;
  errorMessage: string | null;
}

/**
 * Stale-session recovery as it happens: a real runner holding a session is killed with SIGKILL at a
 * random point of its heartbeat cycle; measured is the time from the kill until the API has recovered
 * the session (requeued, or `error` / `Runner connection lost`). Default settings unless the environment
 * sets STALE_SESSION_TIMEOUT_MS, REAPER_INTERVAL_MS or HEARTBEAT_INTERVAL_MS.
 */
export async function measureRecovery(trials: number, log: (line: string) => void): Promise<RecoveryTrial[]> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'sfw-recovery-'));
  await chmod(work, 0o755);
  const sessionsDir = path.join(work, 'sessions');
  await mkdir(sessionsDir);
  writeFileSync(path.join(sessionsDir, 'fleet-work.mjs'), sessionModule());
  const execLog = path.join(work, 'executions.jsonl');
  const port = await freePort();
  const pass = (names: string[]): Record<string, string> =>
    Object.fromEntries(names.flatMap((n) => (process.env[n] ? [[n, process.env[n]]] : [])));
  const api = startProc(
    'api',
    undefined,
    ['sfw', 'api'],
    {
      DATA_DIR: path.join(work, 'data'),
      API_TOKEN,
      RUNNER_TOKEN,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      ...pass(['STALE_SESSION_TIMEOUT_MS', 'REAPER_INTERVAL_MS']),
    },
    path.join(work, 'api.log'),
  );
  const client = new SfwClient({ baseUrl: `http://127.0.0.1:${port}`, token: API_TOKEN, retries: 0 });
  const out: RecoveryTrial[] = [];
  try {
    await waitUntil('the API to be ready', 90_000, async () => {
      if (api.child.exitCode !== null)
        throw new FleetError(`sfw api exited: ${tail(path.join(work, 'api.log'))}`);
      return (await client.ready()).ok ? true : undefined;
    });
    for (let t = 0; t < trials; t++) {
      const runnerId = `crash-runner-${t}`;
      const runner = startProc(
        runnerId,
        undefined,
        ['sfw', 'runner'],
        {
          API_BASE_URL: `http://127.0.0.1:${port}`,
          RUNNER_ID: runnerId,
          RUNNER_TOKEN,
          SESSIONS_DIR: sessionsDir,
          LOG_LEVEL: 'warn',
          ...pass(['HEARTBEAT_INTERVAL_MS']),
        },
        path.join(work, `${runnerId}.log`),
      );
      const s = await client.createSession({
        type: SESSION_TYPE,
        input: { ms: 600_000, log: execLog },
        timeoutMs: 900_000,
      });
      await waitUntil(`${runnerId} to claim`, 120_000, async () => {
        const v = await client.getSession(s.id);
        return v.status === 'running' && v.claimedBy === runnerId ? true : undefined;
      });
      await sleep(1000 + Math.random() * 5000);
      const killedAt = Date.now();
      // The runner's whole process group (a browser it started would be in it too).
      process.kill(-runner.child.pid!, 'SIGKILL');
      await runner.exited;
      const after = await waitUntil('the session to be recovered', 300_000, async () => {
        const v = await client.getSession(s.id);
        return v.status === 'running' ? undefined : v;
      });
      const trial = { ms: Date.now() - killedAt, status: after.status, errorMessage: after.errorMessage };
      out.push(trial);
      log(
        `[recovery] trial ${t + 1}: ${trial.status}${trial.errorMessage ? ` (${trial.errorMessage})` : ''} ${(trial.ms / 1000).toFixed(1)} s after kill -9`,
      );
      if (after.status === 'queued') await client.cancelSession(s.id);
    }
    return out;
  } finally {
    await client.close();
    await stopProc(api, 30_000);
    await rm(work, { recursive: true, force: true });
  }
}

// ---- entry ----------------------------------------------------------------------------------------

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function demo(args: string[]): Promise<number> {
  const network = (flag(args, 'network') ?? 'auto') as FleetOptions['network'];
  if (!['auto', 'netns', 'loopback'].includes(network)) {
    console.error('--network must be auto, netns or loopback');
    return 2;
  }
  // Ctrl-C at any point ends the run; runners drain, the API and Postgres stop, the namespaces go.
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const report = await runFleet({
      sessions: Number(flag(args, 'sessions') ?? 120),
      sessionMs: [1500, 4000],
      port: Number(flag(args, 'port') ?? 3000),
      network,
      heartbeatIntervalMs: 2000,
      timeoutMs: 600_000,
      keep: args.includes('--keep'),
      signal: interrupt.signal,
      log: (line) => console.log(line),
      beforeTeardown: async (url) => {
        console.log(`[fleet] done. The dashboard stays up at ${url}/ (token ${API_TOKEN}); Ctrl-C to stop.`);
        if (interrupt.signal.aborted) return;
        await new Promise<void>((resolve) => interrupt.signal.addEventListener('abort', () => resolve()));
      },
    });
    const once = report.sessions.every((s) => report.executions.get(s.id)?.length === 1);
    console.log(`[fleet] every session executed exactly once: ${once ? 'yes' : 'NO'}`);
    return once ? 0 : 1;
  } catch (err) {
    console.error(`[fleet] ${err instanceof Error ? err.message : String(err)}`);
    return interrupt.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === SCRIPT) {
  const [role, ...rest] = process.argv.slice(2);
  if (role === 'sfw') {
    const { main } = await import('../src/cli/main.js');
    process.exit(await main(rest));
  } else if (role === 'relay') {
    serveRelay(rest[0]!, rest[1]!);
  } else if (role === 'recovery') {
    const trials = await measureRecovery(Number(flag(rest, 'trials') ?? 3), (line) => console.log(line));
    console.log(`[recovery] ${JSON.stringify(trials.map((t) => t.ms))} ms`);
  } else {
    process.exit(await demo(process.argv.slice(2)));
  }
}
