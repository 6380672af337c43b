import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireChromium } from '../helpers/chromium.js';
import { startFixtureServer, type FixtureServer } from '../fixtures/server.js';

/** `sfw dev` as a user types it (`node bin/sfw.js dev …`, the built dist/): no API, no Postgres. */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin/sfw.js');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

let site: FixtureServer;
let dir: string;
let chromium: string;

beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js')))
    throw new Error('dist/ is missing: run `npm run build` before the e2e tests (npm test does)');
  chromium = await requireChromium();
  site = await startFixtureServer();
  dir = await mkdtemp(path.join(os.tmpdir(), 'sfw-dev-'));
});
afterAll(async () => {
  await site?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs `sfw dev <args>` to its end, in a folder of its own, with no API or database configured. */
function dev(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'dev', ...args], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        CHROMIUM_PATH: chromium,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sfw dev ${args.join(' ')} did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function file(name: string, content: unknown): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

describe('sfw dev <flow.json>', () => {
  it('prints each step as it runs, nested passes indented, then the result; exit 0', async () => {
    const flow = await file('paged.json', {
      steps: [
        { action: 'goto', url: `${site.url}/pages/paged.html?page={{input.start}}` },
        {
          action: 'repeat',
          max: 5,
          steps: [
            { action: 'waitFor', selector: 'li.item' },
            { action: 'extract', selector: 'li.item', as: 'items', all: true, append: true },
            {
              action: 'if',
              when: { selector: '#next', state: 'disabled' },
              then: [{ action: 'break' }],
              else: [{ action: 'click', selector: '#next' }],
            },
          ],
        },
        { action: 'extract', selector: '#page-label', as: 'label' },
      ],
    });
    const r = await dev([flow, '--input', '{"start":2}']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n');
    const at = (re: RegExp) => {
      const i = lines.findIndex((l) => re.test(l));
      expect(i, `${re} in:\n${r.stderr}`).toBeGreaterThanOrEqual(0);
      return i;
    };
    // Step numbers at the top level; what each step acted on, ok, its time.
    const goto = at(
      /^1 {2}goto http:\/\/127\.0\.0\.1:\d+\/pages\/paged\.html\?page=\{\{input\.start\}\} {2}ok {2}\d+ ms$/,
    );
    const repeat = at(/^2 {2}repeat \(up to 5 passes\)$/);
    const pass1 = at(/^ {5}pass 1$/);
    const extract1 = at(/^ {7}extract li\.item → items {2}ok {2}\d+ ms$/);
    const elseBranch = at(/^ {7}if: else branch$/);
    const click = at(/^ {9}click #next {2}ok {2}\d+ ms$/);
    const pass2 = at(/^ {5}pass 2$/);
    const thenBranch = at(/^ {7}if: then branch$/);
    const brk = at(/^ {9}break {2}ok {2}0 ms$/);
    const repeatEnd = at(/^ {3}repeat {2}ok {2}\d+ ms, 2 passes$/);
    const label = at(/^3 {2}extract #page-label → label {2}ok {2}\d+ ms$/);
    const order = [
      goto,
      repeat,
      pass1,
      extract1,
      elseBranch,
      click,
      pass2,
      thenBranch,
      brk,
      repeatEnd,
      label,
    ];
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(at(/^succeeded in \d+ ms$/)).toBeGreaterThan(label);
    // The result JSON alone on stdout.
    const out = JSON.parse(r.stdout) as { status: string; result: { extracted: Record<string, unknown> } };
    expect(out.status).toBe('succeeded');
    expect(out.result.extracted).toEqual({
      items: ['Date', 'Elderberry', 'Fig', 'Grape', 'Honeydew', 'Kiwi'],
      label: 'Page 3 of 3',
    });
  });

  it('a failing step: its line says error and why, the result says which step; exit 1', async () => {
    const flow = await file('fail.json', {
      steps: [
        { action: 'goto', url: `${site.url}/pages/simple.html` },
        { action: 'click', selector: '#not-there', timeoutMs: 300 },
        { action: 'extract', selector: 'h1', as: 'never' },
      ],
    });
    const r = await dev([flow, '--out', path.join(dir, 'fail-artifacts')]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^1 {2}goto \S+simple\.html {2}ok {2}\d+ ms$/m);
    expect(r.stderr).toMatch(
      /^2 {2}click #not-there {2}error {2}\d+ ms: locator\.click: Timeout 300ms exceeded/m,
    );
    expect(r.stderr).not.toMatch(/^3 /m);
    const out = JSON.parse(r.stdout) as {
      status: string;
      errorMessage: string;
      result: { steps: unknown[] };
    };
    expect(out.status).toBe('failed');
    expect(out.errorMessage).toMatch(/^step 2 \(click\): /);
    expect(out.result.steps).toHaveLength(2);
    // The failure screenshot a runner would store is saved with --out.
    const png = await readFile(path.join(dir, 'fail-artifacts', 'failure.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
  });

  it('a failing step that shows a secret of the input prints it [redacted], as the runner stores it', async () => {
    const flow = await file('secret.json', {
      steps: [
        { action: 'goto', url: `${site.url}/pages/simple.html` },
        { action: 'assert', selector: 'h1', text: '{{input.secretWord}}', timeoutMs: 300 },
      ],
    });
    const r = await dev([flow, '--input', '{"secretWord": "hunter2-pass"}']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(
      /^2 {2}assert h1 {2}error {2}\d+ ms: expected "h1" to contain text "\[redacted\]"/m,
    );
    expect(r.stderr + r.stdout).not.toContain('hunter2-pass');
  });

  it('a bad flow is refused before any browser starts, with the path of the bad field; exit 2', async () => {
    const flow = await file('bad.json', {
      steps: [
        { action: 'goto', url: `${site.url}/` },
        { action: 'repeat', max: 2, steps: [{ action: 'fill', selector: '#q' }] },
      ],
    });
    const r = await dev([flow]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`sfw dev: ${flow}: input.steps.1.steps.0.value: is required`);
    expect(r.stdout).toBe('');

    const notJson = await file('broken.json', '{"steps": [');
    const broken = await dev([notJson]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toContain(`flow file ${notJson} is not valid JSON`);
  });

  it('bad usage names the flag; exit 2', async () => {
    const flow = await file('ok.json', { steps: [{ action: 'goto', url: `${site.url}/pages/simple.html` }] });
    const timeout = await dev([flow, '--timeout-ms', 'soon']);
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toContain('--timeout-ms must be a whole number, got "soon"');
    const input = await dev([flow, '--input', '{nope']);
    expect(input.code).toBe(2);
    expect(input.stderr).toContain('--input is not valid JSON');
    const list = await dev([flow, '--input', '[1]']);
    expect(list.code).toBe(2);
    expect(list.stderr).toContain('--input must be a JSON object for a flow');
    const unknown = await dev([flow, '--headless']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--headless'");
    const none = await dev([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('missing <flow.json | module.ts>');
  });
});

describe('sfw dev <module.ts>', () => {
  const MODULE = `import { defineSession, z } from 'session-framework';

export default defineSession({
  name: 'dev-heading',
  input: z.object({ url: z.string(), times: z.number().int().default(1) }),
  async run({ page, input, log, artifacts, attempt }) {
    await page.goto(input.url);
    const heading: string = ((await page.locator('h1').first().textContent()) ?? '').trim();
    for (let i = 1; i <= input.times; i++) log('heading read', { i, heading });
    await artifacts.add('heading.txt', Buffer.from(heading));
    return { heading, attempt };
  },
});
`;

  it('runs a TypeScript module from a bare folder: its log() lines, its artifacts, the result; exit 0', async () => {
    const mod = await file('heading.ts', MODULE);
    await file('input.json', { url: `${site.url}/pages/simple.html`, times: 2 });
    const out = path.join(dir, 'module-artifacts');
    const r = await dev([mod, '--input', '@input.json', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^log: heading read \{"i":1,"heading":"[^"]+"\}$/m);
    expect(r.stderr).toMatch(/^log: heading read \{"i":2,"heading":"[^"]+"\}$/m);
    expect(r.stderr).not.toMatch(/Warning/);
    const result = JSON.parse(r.stdout) as { status: string; result: { heading: string; attempt: number } };
    expect(result.status).toBe('succeeded');
    expect(result.result.attempt).toBe(1);
    expect(await readFile(path.join(out, 'heading.txt'), 'utf8')).toBe(result.result.heading);
  });

  it('checks --input against the module schema (exit 2 with the path); a throwing run is exit 1', async () => {
    const mod = await file('heading2.ts', MODULE);
    const bad = await dev([mod, '--input', '{"url": 5}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^sfw dev: --input: input\.url: .*expected string/m);
    expect(bad.stderr).not.toContain('browser:');

    const thrower = await file(
      'throws.mts',
      `import { defineSession } from 'session-framework';
       export default defineSession({ name: 'thrower', browser: false, run({ log }) { log('about to fail'); throw new Error('the check failed'); } });`,
    );
    // browser: false needs no Chromium at all.
    const r = await dev([thrower], { CHROMIUM_PATH: '' });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^log: about to fail$/m);
    expect(JSON.parse(r.stdout)).toEqual({ status: 'failed', errorMessage: 'the check failed' });

    const enumMod = await file('enum.ts', `enum A { B }\nexport default A;`);
    const e = await dev([enumMod]);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain(
      `sfw dev: ${enumMod}: TypeScript enum is not supported in strip-only mode (line 1)`,
    );
  });
});
