import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type CreateSessionBody, type StorageState } from '@session-framework/sdk';
import { BrowserPool } from '../../src/browser/pool.js';
import { loadConfig } from '../../src/core/config.js';
import type { ClaimedSession } from '../../src/protocol/schemas.js';
import { executeSession } from '../../src/sessions/execute.js';
import { flowSessionType } from '../../src/sessions/registry.js';
import { sfwFromSources } from '../helpers/sfw-cli.js';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { startRunner, type InProcessRunner } from '../helpers/runner.js';
import { waitFor } from '../helpers/wait.js';
import type { SessionStateAccess } from '../../src/protocol/states.js';
import type { SessionType } from '../../src/sessions/registry.js';

/**
 * Named states end to end: a real API (with STATE_ENCRYPTION_KEY) over Postgres, a runner running flows
 * in Chromium against a site whose login sets an HttpOnly cookie and whose page keeps local storage. One
 * session logs in and saves, a later one starts logged in; saves at once keep the newest; a stale holder's
 * save is refused; the data at rest is encrypted; TTL and delete.
 */

const KEY = randomBytes(32);
/** The cookie the site's login sets: it must never be stored in clear with a key, nor shown by the API. */
const SECRET = `sid-${randomBytes(12).toString('hex')}`;

let api: TestApi;
let pool: BrowserPool;
let runner: InProcessRunner;
let site: { url: string; close(): Promise<void> };

/** /login?user= sets the session cookie (HttpOnly, from the server) and local storage; /account reads both. */
async function startCookieSite(): Promise<typeof site> {
  const users = new Map<string, string>([[SECRET, 'ada']]);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const cookie = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    res.setHeader('content-type', 'text/html; charset=utf-8');
    if (url.pathname === '/login') {
      res.setHeader('set-cookie', `sid=${SECRET}; Path=/; HttpOnly; Max-Age=3600`);
      res.end(
        `<h1 id="done">Welcome</h1><script>localStorage.setItem('theme', ${JSON.stringify(url.searchParams.get('theme') ?? 'dark')})</script>`,
      );
      return;
    }
    if (url.pathname === '/account') {
      const user = cookie === undefined ? undefined : users.get(cookie);
      res.end(
        `<h1 id="user">${user === undefined ? 'Signed out' : `Signed in as ${user}`}</h1><p id="theme"></p>` +
          `<script>document.getElementById('theme').textContent = localStorage.getItem('theme') ?? 'none'</script>`,
      );
      return;
    }
    res.statusCode = 404;
    res.end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  const executablePath = await requireChromium();
  api = await startTestApi('states', { deps: { states: { encryptionKey: KEY } } });
  site = await startCookieSite();
  pool = new BrowserPool({ executablePath });
  await pool.start();
  const flow = flowSessionType();
  runner = await startRunner(api, {
    runnerId: 'states-runner',
    types: [{ name: 'flow', browser: true }],
    maxConcurrency: 4,
    executor: (session, ctx) =>
      executeSession({
        session,
        type: flow,
        pool,
        signal: ctx.signal,
        abort: (reason) => ctx.abort(reason),
        upload: (name, data, contentType) => ctx.upload(name, data, contentType),
        state: ctx.state,
        log: ctx.log,
      }),
  });
});

afterAll(async () => {
  await runner?.stop();
  await pool?.close();
  await site?.close();
  await api?.stop();
});

const login = (user = 'ada', theme = 'dark') => ({
  steps: [
    { action: 'goto', url: `${site.url}/login?user=${user}&theme=${theme}` },
    { action: 'extract', selector: '#done', as: 'done' },
  ],
});
const account = () => ({
  steps: [
    { action: 'goto', url: `${site.url}/account` },
    { action: 'extract', selector: '#user', as: 'user' },
    { action: 'extract', selector: '#theme', as: 'theme' },
  ],
});

async function run(body: CreateSessionBody) {
  const s = await api.client.createSession(body);
  return api.client.waitUntilDone(s.id, { timeoutMs: 30_000 });
}

async function refusal(body: unknown): Promise<ApiError> {
  const err = await api.client.createSession(body as CreateSessionBody).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApiError);
  expect((err as ApiError).httpStatus).toBe(400);
  return err as ApiError;
}

/** A session of a type no runner serves, claimed by hand: its lease for the runner routes. */
async function claimed(
  runnerId: string,
  type: string,
  state: CreateSessionBody['state'],
): Promise<ClaimedSession> {
  await api.client.createSession({ type, maxAttempts: 3, ...(state ? { state } : {}) });
  const { sessions } = await api.runnerClient.claim(runnerId, {
    slots: 1,
    types: [type],
    maxConcurrency: 10,
  });
  expect(sessions).toHaveLength(1);
  return sessions[0]!;
}

const storage = (value: string): StorageState => ({
  cookies: [
    {
      name: 'sid',
      value,
      domain: '127.0.0.1',
      path: '/',
      expires: -1,
      httpOnly: true,
      secure: false,
      sameSite: 'Lax',
    },
  ],
  origins: [],
});

const status = (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (e: unknown) => (e instanceof ApiError ? `${e.httpStatus} ${e.code}` : String(e)),
  );

describe('named states', () => {
  it('one session logs in and saves; a later one starts logged in, one without the state does not', async () => {
    const saver = await run({ type: 'flow', input: login(), state: { save: 'shop' } });
    expect(saver.errorMessage).toBeNull();
    expect(saver.status).toBe('succeeded');
    expect(saver.state).toEqual({ save: 'shop' });
    expect(saver.stateSave).toEqual({ name: 'shop', saved: true, version: 1 });

    const user = await run({ type: 'flow', input: account(), state: { use: 'shop' } });
    expect(user.status).toBe('succeeded');
    expect((user.result as { extracted: unknown }).extracted).toEqual({
      user: 'Signed in as ada',
      theme: 'dark',
    });

    const stranger = await run({ type: 'flow', input: account() });
    expect((stranger.result as { extracted: unknown }).extracted).toEqual({
      user: 'Signed out',
      theme: 'none',
    });

    // Listed with its metadata only: the API never answers the cookie.
    const res = await fetch(`${api.url}/v1/states`);
    const text = await res.text();
    expect(text).not.toContain(SECRET);
    const { items } = JSON.parse(text) as { items: { name: string }[] };
    expect(items.find((s) => s.name === 'shop')).toMatchObject({
      name: 'shop',
      version: 1,
      savedBySession: saver.id,
      encrypted: true,
      expiresAt: null,
    });
    const detail = await api.client.getState('shop');
    expect(detail.versions.map((v) => v.version)).toEqual([1]);
    expect(detail.size).toBeGreaterThan(SECRET.length);
    expect(JSON.stringify(detail)).not.toContain(SECRET);

    // At rest: encrypted, the cookie's value nowhere in the bytes.
    const { rows } = await api.db.query<{ data: Buffer; encrypted: boolean }>(
      `SELECT data, encrypted FROM session_states WHERE name = 'shop'`,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.encrypted).toBe(true);
    expect(rows[0]!.data.includes(Buffer.from(SECRET))).toBe(false);
    expect(rows[0]!.data.includes(Buffer.from('sid'))).toBe(false);
  });

  it('a session that uses and saves one name logs in on its first run and saves the next version', async () => {
    const first = await run({
      type: 'flow',
      input: login('ada', 'light'),
      state: { use: 'boot', save: 'boot' },
    });
    expect(first.status).toBe('succeeded');
    expect(first.stateSave).toEqual({ name: 'boot', saved: true, version: 1 });
    const again = await run({ type: 'flow', input: account(), state: { use: 'boot', save: 'boot' } });
    expect((again.result as { extracted: unknown }).extracted).toEqual({
      user: 'Signed in as ada',
      theme: 'light',
    });
    // It started from version 1 and saved on top of it: not a conflict.
    expect(again.stateSave).toEqual({ name: 'boot', saved: true, version: 2 });
  });

  it('a session that uses a state that does not exist fails and says which', async () => {
    const s = await run({ type: 'flow', input: account(), state: { use: 'never-saved' } });
    expect(s.status).toBe('failed');
    expect(s.errorMessage).toContain('state "never-saved"');
  });

  it('two sessions saving one name at once: both succeed, the first save is kept, the second says so', async () => {
    const a = await claimed('race-runner', 'race', { save: 'race' });
    const b = await claimed('race-runner', 'race', { save: 'race' });
    const [ra, rb] = await Promise.all([
      api.runnerClient.saveSessionState('race-runner', a.id, {
        leaseToken: a.leaseToken,
        storageState: storage('A'),
      }),
      api.runnerClient.saveSessionState('race-runner', b.id, {
        leaseToken: b.leaseToken,
        storageState: storage('B'),
      }),
    ]);
    const saved = [ra, rb].filter((r) => r.saved);
    const skipped = [ra, rb].filter((r) => !r.saved);
    expect(saved).toEqual([{ name: 'race', saved: true, version: 1 }]);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]!.version).toBe(1);
    expect(skipped[0]!.message).toMatch(/saved version 1 of "race" after this session started/);
    // Both sessions still complete as succeeded, and each shows what became of its save.
    for (const s of [a, b])
      expect(
        (await api.runnerClient.complete(s.id, { leaseToken: s.leaseToken, status: 'succeeded' })).status,
      ).toBe('succeeded');
    const views = await Promise.all([api.client.getSession(a.id), api.client.getSession(b.id)]);
    expect(views.map((v) => v.stateSave?.saved).sort()).toEqual([false, true]);

    // overwrite: true saves over a newer version; a session claimed after the newest save saves normally.
    const c = await claimed('race-runner', 'race', { save: 'race' });
    const d = await claimed('race-runner', 'race', { save: 'race', overwrite: true });
    expect(
      await api.runnerClient.saveSessionState('race-runner', c.id, {
        leaseToken: c.leaseToken,
        storageState: storage('C'),
      }),
    ).toEqual({ name: 'race', saved: true, version: 2 });
    expect(
      await api.runnerClient.saveSessionState('race-runner', d.id, {
        leaseToken: d.leaseToken,
        storageState: storage('D'),
      }),
    ).toEqual({ name: 'race', saved: true, version: 3 });
    expect((await api.client.getState('race')).versions.map((v) => v.version)).toEqual([3, 2, 1]);
  });

  it('a save or read from a holder whose lease moved on is refused and stores nothing', async () => {
    const a = await claimed('fence-a', 'fence-state', { use: 'shop', save: 'fenced' });
    // Its lease lapsed and the session was claimed again by another runner.
    await api.db.query(
      `UPDATE sessions SET lease_token = gen_random_uuid(), claimed_by = 'fence-b', attempt = attempt + 1 WHERE id = $1`,
      [a.id],
    );
    expect(
      await status(
        api.runnerClient.saveSessionState('fence-a', a.id, {
          leaseToken: a.leaseToken,
          storageState: storage('stale'),
        }),
      ),
    ).toBe('409 LEASE_LOST');
    expect(await status(api.runnerClient.getSessionState('fence-a', a.id, a.leaseToken))).toBe(
      '409 LEASE_LOST',
    );
    const { rows } = await api.db.query(`SELECT 1 FROM session_states WHERE name = 'fenced'`);
    expect(rows).toHaveLength(0);
    expect(
      await status(api.runnerClient.complete(a.id, { leaseToken: a.leaseToken, status: 'succeeded' })),
    ).toBe('409 LEASE_LOST');
    // Another runner with the current token is not the holder either: the lease names its runner.
    const { rows: cur } = await api.db.query<{ lease_token: string }>(
      `SELECT lease_token FROM sessions WHERE id = $1`,
      [a.id],
    );
    expect(await status(api.runnerClient.getSessionState('fence-a', a.id, cur[0]!.lease_token))).toBe(
      '409 LEASE_LOST',
    );
    expect(await status(api.runnerClient.getSessionState('fence-b', a.id, cur[0]!.lease_token))).toBe(200);
  });

  it('a state saved under one key does not open without it or under another, with an error naming the variable', async () => {
    const s = await claimed('key-runner', 'key-probe', { use: 'shop' });
    const other = await startTestApi('states_nokey', { db: { db: api.db, url: api.databaseUrl } });
    const wrong = await startTestApi('states_wrongkey', {
      db: { db: api.db, url: api.databaseUrl },
      deps: { states: { encryptionKey: randomBytes(32) } },
    });
    try {
      const noKey = await other.runnerClient
        .getSessionState('key-runner', s.id, s.leaseToken)
        .catch((e: unknown) => e);
      expect(noKey).toBeInstanceOf(ApiError);
      expect((noKey as ApiError).code).toBe('STATE_KEY');
      expect((noKey as ApiError).message).toContain('STATE_ENCRYPTION_KEY');
      const bad = await wrong.runnerClient
        .getSessionState('key-runner', s.id, s.leaseToken)
        .catch((e: unknown) => e);
      expect((bad as ApiError).code).toBe('STATE_KEY');
      expect((bad as ApiError).message).toMatch(/another STATE_ENCRYPTION_KEY/);
      // The right key opens it: the storage state the browser saved, cookie and local storage.
      const good = await api.runnerClient.getSessionState('key-runner', s.id, s.leaseToken);
      expect(good.storageState.cookies.some((c) => c.value === SECRET)).toBe(true);
      expect(JSON.stringify(good.storageState.origins)).toContain('theme');

      // Without a key a state is stored as it is (the README says so).
      const clear = await claimed('key-runner', 'key-clear', { save: 'clear' });
      await other.runnerClient.saveSessionState('key-runner', clear.id, {
        leaseToken: clear.leaseToken,
        storageState: storage('plain-cookie-value'),
      });
      const { rows } = await api.db.query<{ data: Buffer; encrypted: boolean }>(
        `SELECT data, encrypted FROM session_states WHERE name = 'clear'`,
      );
      expect(rows[0]!.encrypted).toBe(false);
      expect(rows[0]!.data.toString()).toContain('plain-cookie-value');
    } finally {
      await other.stop();
      await wrong.stop();
    }
    expect(() => loadConfig(['stateEncryptionKey'], { env: { STATE_ENCRYPTION_KEY: 'too-short' } })).toThrow(
      /STATE_ENCRYPTION_KEY must be a 32-byte key/,
    );
    expect(
      loadConfig(['stateEncryptionKey'], { env: { STATE_ENCRYPTION_KEY: KEY.toString('base64') } })
        .stateEncryptionKey,
    ).toBe(KEY.toString('base64'));
  });

  it('a version with a TTL expires: not listed, not used, deleted at the next save', async () => {
    const s = await claimed('ttl-runner', 'ttl', { save: 'short', ttlMs: 1000 });
    await api.runnerClient.saveSessionState('ttl-runner', s.id, {
      leaseToken: s.leaseToken,
      storageState: storage('t'),
    });
    const listed = await api.client.getState('short');
    expect(Date.parse(listed.expiresAt ?? '')).toBeGreaterThan(Date.now());
    await waitFor(async () => (await status(api.client.getState('short'))) === '404 NOT_FOUND', {
      timeoutMs: 5000,
      what: 'the state to expire',
    });
    expect((await api.client.listStates()).items.map((i) => i.name)).not.toContain('short');
    const user = await claimed('ttl-runner', 'ttl', { use: 'short' });
    expect(await status(api.runnerClient.getSessionState('ttl-runner', user.id, user.leaseToken))).toBe(
      '404 NOT_FOUND',
    );
    const next = await claimed('ttl-runner', 'ttl', { save: 'other-ttl' });
    await api.runnerClient.saveSessionState('ttl-runner', next.id, {
      leaseToken: next.leaseToken,
      storageState: storage('x'),
    });
    const { rows } = await api.db.query(`SELECT 1 FROM session_states WHERE name = 'short'`);
    expect(rows).toHaveLength(0);

    // Without state.ttlMs a save lives STATE_TTL_MS, when the API has it.
    const ttlApi = await startTestApi('states_ttl', {
      db: { db: api.db, url: api.databaseUrl },
      deps: { states: { encryptionKey: KEY, defaultTtlMs: 60_000 } },
    });
    try {
      const d = await claimed('ttl-runner', 'ttl', { save: 'default-ttl' });
      await ttlApi.runnerClient.saveSessionState('ttl-runner', d.id, {
        leaseToken: d.leaseToken,
        storageState: storage('y'),
      });
      const left = Date.parse((await api.client.getState('default-ttl')).expiresAt ?? '') - Date.now();
      expect(left).toBeGreaterThan(50_000);
      expect(left).toBeLessThanOrEqual(60_000);
    } finally {
      await ttlApi.stop();
    }
  });

  it('deletes a state: gone from the list, a second delete is 404', async () => {
    const s = await claimed('del-runner', 'del', { save: 'doomed' });
    await api.runnerClient.saveSessionState('del-runner', s.id, {
      leaseToken: s.leaseToken,
      storageState: storage('d'),
    });
    await api.client.deleteState('doomed');
    expect(await status(api.client.getState('doomed'))).toBe('404 NOT_FOUND');
    expect((await api.client.listStates()).items.map((i) => i.name)).not.toContain('doomed');
    expect(await status(api.client.deleteState('doomed'))).toBe('404 NOT_FOUND');
  });

  it('refuses bad state options at enqueue with the path of the field, storing nothing', async () => {
    const before = await api.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sessions`);
    const cases: [unknown, string][] = [
      [{ use: 'bad name' }, 'body.state.use'],
      [{ save: 'x'.repeat(101) }, 'body.state.save'],
      [{ save: '-lead' }, 'body.state.save'],
      [{}, 'body.state'],
      [{ use: 'a', overwrite: true }, 'body.state.overwrite'],
      [{ use: 'a', ttlMs: 5000 }, 'body.state.ttlMs'],
      [{ save: 'a', ttlMs: 10 }, 'body.state.ttlMs'],
      [{ save: 'a', extra: 1 }, 'body.state.extra'],
    ];
    for (const [state, path] of cases) {
      const err = await refusal({ type: 'flow', input: account(), state });
      expect(err.path, JSON.stringify(state)).toBe(path);
    }
    const after = await api.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM sessions`);
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
    expect((await fetch(`${api.url}/v1/states/bad%20name`)).status).toBe(400);
  });

  it('in the executor: a skipped save keeps the flow succeeded with a warning, a failed save is an error, state on a type without a browser fails', async () => {
    const claimedSession = (state: ClaimedSession['state'], type = 'flow'): ClaimedSession => ({
      id: '00000000-0000-7000-8000-000000000001',
      type,
      input: login(),
      priority: 0,
      attempt: 1,
      maxAttempts: 1,
      timeoutMs: 20_000,
      leaseToken: '00000000-0000-4000-8000-000000000001',
      leaseExpiresAt: new Date(Date.now() + 60_000).toISOString(),
      createdAt: new Date().toISOString(),
      artifactOptions: { screenshot: 'off', trace: 'off' },
      state,
    });
    const saves: unknown[] = [];
    const access = (save: SessionStateAccess['save']): SessionStateAccess => ({
      load: () => Promise.resolve({ outcome: 'missing', message: 'state "x" not found' }),
      save: (st, seen) => {
        saves.push(st);
        return save(st, seen);
      },
    });
    const exec = (
      session: ClaimedSession,
      state: SessionStateAccess,
      type: SessionType = flowSessionType(),
    ) => {
      const controller = new AbortController();
      return executeSession({
        session,
        type,
        pool,
        signal: controller.signal,
        abort: (r) => controller.abort(r),
        upload: () => Promise.resolve(),
        state,
      });
    };
    const skipped = await exec(
      claimedSession({ save: 'w' }),
      access(() =>
        Promise.resolve({
          outcome: 'skipped',
          save: { name: 'w', saved: false, version: 7, message: 'not saved: newer version 7' },
        }),
      ),
    );
    expect(skipped.status).toBe('succeeded');
    expect((skipped.result as { warnings?: string[] }).warnings).toEqual(['not saved: newer version 7']);
    // What the runner sent is the browser's storage state: the login's HttpOnly cookie among it.
    expect(JSON.stringify(saves[0])).toContain(SECRET);

    const failed = await exec(
      claimedSession({ save: 'w' }),
      access(() => Promise.reject(new Error('API down'))),
    );
    expect(failed.status).toBe('error');
    expect(failed.errorMessage).toBe('state "w" not saved: API down');
    expect((failed.result as { extracted: unknown }).extracted).toEqual({ done: 'Welcome' });

    const noBrowser: SessionType = {
      name: 'http-check',
      kind: 'code',
      browser: false,
      reuseContext: false,
      source: 'test',
      validateInput: (i) => i,
      run: () => Promise.resolve({ ok: true }),
    };
    const plain = await exec(
      claimedSession({ use: 'shop' }, 'http-check'),
      access(() => Promise.reject(new Error('unused'))),
      noBrowser,
    );
    expect(plain.status).toBe('failed');
    expect(plain.errorMessage).toMatch(
      /needs a browser context: session type http-check runs without a browser/,
    );
  });

  it('sfw states list, get and delete; sfw sessions shows a session’s state; sfw enqueue --use-state --save-state', async () => {
    const s = await claimed('cli-runner', 'cli', { save: 'cli-state' });
    await api.runnerClient.saveSessionState('cli-runner', s.id, {
      leaseToken: s.leaseToken,
      storageState: storage('c'),
    });
    const list = await sfw(['states', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+VERSION\s+SIZE\s+ENCRYPTED/);
    expect(list.stdout).toMatch(/cli-state\s+1\s+\d+ B\s+yes/);
    const got = await sfw(['states', 'get', 'cli-state', '--json']);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ name: 'cli-state', version: 1, savedBySession: s.id });
    const shown = await sfw(['sessions', s.id]);
    expect(shown.stdout).toContain('state: saves cli-state (version 1)');
    // sfw enqueue sets a session's state from its flags (the API checks the names).
    const queued = await sfw([
      'enqueue',
      'cli-idle',
      '--use-state',
      'cli-state',
      '--save-state',
      'cli-next',
      '--json',
    ]);
    expect(queued.code).toBe(0);
    const [queuedId] = (JSON.parse(queued.stdout) as { ids: string[] }).ids;
    expect((await api.client.getSession(queuedId!)).state).toEqual({ use: 'cli-state', save: 'cli-next' });
    const refused = await sfw(['enqueue', 'cli-idle', '--save-state', 'bad name']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('body.state.save');
    const del = await sfw(['states', 'delete', 'cli-state']);
    expect(del.stdout).toContain('deleted state cli-state');
    const gone = await sfw(['states', 'get', 'cli-state']);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain('state "cli-state" not found');
    const bad = await sfw(['states', 'rename']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('unknown action "rename": use list, get, delete');
  });
});

/** `sfw …` from the sources against the test API. */
const sfw = (args: string[]) => sfwFromSources(api.url, args);
