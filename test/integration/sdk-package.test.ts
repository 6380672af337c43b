import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Same } from '../../src/protocol/schemas.js';

/**
 * The SDK as users get it: `npm pack` of packages/sdk (as built by `npm run build`), installed alone into
 * an empty folder on this Node.js and on each one named in SFW_SDK_NODE_DIRS (bin folders, `:`-separated;
 * CI names 20, 22 and 24), then loaded, called and type-checked there.
 */

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const sdkDir = join(root, 'packages/sdk');
const PACKED_BUDGET = 200_000;
const UNPACKED_BUDGET = 1_000_000;

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

async function pack(args: string[]): Promise<PackResult> {
  // --ignore-scripts: pack the build the suite runs on, without rebuilding it under other test files.
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', ...args], { cwd: sdkDir });
  return (JSON.parse(stdout) as PackResult[])[0] as PackResult;
}

const nodeDirs = [
  ...new Set([dirname(process.execPath), ...(process.env.SFW_SDK_NODE_DIRS ?? '').split(delimiter)]),
].filter(Boolean);

describe('@session-framework/sdk package', () => {
  let manifest: Record<string, unknown>;
  let listed: PackResult;

  beforeAll(async () => {
    manifest = JSON.parse(await readFile(join(sdkDir, 'package.json'), 'utf8')) as Record<string, unknown>;
    listed = await pack(['--dry-run']);
  });

  it('ships its build, its sources and its license within the size budget', async () => {
    const paths = listed.files.map((f) => f.path);
    for (const p of paths)
      expect(p).toMatch(
        /^(dist\/[\w-]+\.(js|d\.ts)(\.map)?|src\/[\w-]+\.ts|package\.json|README\.md|LICENSE)$/,
      );
    expect(paths).toEqual(
      expect.arrayContaining(['dist/index.js', 'dist/index.d.ts', 'LICENSE', 'README.md', 'package.json']),
    );
    expect(listed.size).toBeLessThan(PACKED_BUDGET);
    expect(listed.unpackedSize).toBeLessThan(UNPACKED_BUDGET);
    expect(await readFile(join(sdkDir, 'LICENSE'), 'utf8')).toBe(
      await readFile(join(root, 'LICENSE'), 'utf8'),
    );

    // Source maps point at sources the package ships.
    for (const map of paths.filter((p) => p.endsWith('.map'))) {
      const { sources } = JSON.parse(await readFile(join(sdkDir, map), 'utf8')) as { sources: string[] };
      for (const source of sources) expect(paths).toContain(posix.join(posix.dirname(map), source));
    }
  });

  it('depends on nothing and builds nothing when installed', () => {
    for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'bundleDependencies'])
      expect(manifest[field], field).toBeUndefined();
    const scripts = Object.keys(manifest.scripts as object);
    for (const hook of ['prepare', 'preinstall', 'install', 'postinstall'])
      expect(scripts).not.toContain(hook);
    expect(manifest).toMatchObject({ license: 'MIT', type: 'module', engines: { node: '>=20' } });
  });

  describe('installed alone', () => {
    let work: string;
    let tarball: string;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'sfw-sdk-'));
      tarball = join(work, (await pack(['--pack-destination', work])).filename);
    });
    afterAll(async () => {
      await rm(work, { recursive: true, force: true });
    });

    it.each(nodeDirs)('with the Node.js in %s: installs without warnings and answers calls', async (dir) => {
      const env = { ...process.env, PATH: `${dir}${delimiter}${process.env.PATH ?? ''}` };
      const app = await mkdtemp(join(work, 'app-'));
      await writeFile(join(app, 'package.json'), '{"name":"app","private":true,"type":"module"}\n');
      const install = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], {
        cwd: app,
        env,
      });
      expect(install.stderr).toBe('');
      expect((await readdir(join(app, 'node_modules'))).filter((n) => !n.startsWith('.'))).toEqual([
        '@session-framework',
      ]);

      await writeFile(join(app, 'smoke.mjs'), SMOKE);
      const { stdout } = await run(join(dir, 'node'), ['smoke.mjs'], { cwd: app, env });
      expect(JSON.parse(stdout)).toEqual({
        health: { ok: true },
        error: { name: 'ApiError', httpStatus: 404, code: 'NOT_FOUND', sfwError: true },
        codes: true,
      });
    });

    it('type-checks a strict consumer with nothing but the package and @types/node', async () => {
      const app = await mkdtemp(join(work, 'types-'));
      await writeFile(join(app, 'package.json'), '{"name":"types","private":true,"type":"module"}\n');
      await run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: app });
      await writeFile(join(app, 'consumer.ts'), CONSUMER);
      await writeFile(
        join(app, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            module: 'nodenext',
            target: 'es2022',
            noEmit: true,
            skipLibCheck: false,
            types: ['node'],
            typeRoots: [join(root, 'node_modules/@types')],
          },
          files: ['consumer.ts'],
        }),
      );
      const tsc = join(root, 'node_modules/typescript/bin/tsc');
      await expect(run(process.execPath, [tsc, '-p', app], { cwd: app })).resolves.toMatchObject({
        stdout: '',
      });
      const types = join(app, 'node_modules/@session-framework/sdk/dist');
      for (const f of (await readdir(types)).filter((n) => n.endsWith('.d.ts')))
        expect(await readFile(join(types, f), 'utf8'), f).not.toMatch(/typebox|fastify|undici/);
    });
  });
});

const SMOKE = `
import { createServer } from 'node:http';
import { ERROR_CODES, SfwClient, SfwError } from '@session-framework/sdk';
const server = createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  if (req.url === '/healthz') return res.end('{"ok":true}');
  res.statusCode = 404;
  res.end('{"error":{"code":"NOT_FOUND","message":"session s1 not found"}}');
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const client = new SfwClient({ baseUrl: 'http://127.0.0.1:' + server.address().port, retries: 0 });
const health = await client.health();
const e = await client.getSession('s1').catch((err) => err);
await client.close();
server.closeAllConnections();
server.close();
const error = { name: e.name, httpStatus: e.httpStatus, code: e.code, sfwError: e instanceof SfwError };
console.log(JSON.stringify({ health, error, codes: ERROR_CODES.NOT_FOUND.status === 404 }));
`;

const CONSUMER = `
import { ApiError, SfwClient, type FlowStep, type SessionView } from '@session-framework/sdk';
const client = new SfwClient({ baseUrl: 'http://127.0.0.1:3000' });
const steps: FlowStep[] = [{ action: 'goto', url: 'https://example.com' }, { action: 'click', selector: 'a' }];
export async function enqueue(): Promise<SessionView['status']> {
  const s = await client.createSession({ type: 'flow', input: { steps } });
  try {
    return (await client.waitUntilDone(s.id)).status;
  } catch (e) {
    if (e instanceof ApiError && e.code === 'NOT_FOUND') return 'cancelled';
    throw e;
  }
}
// @ts-expect-error an unknown flow action is refused by the types
export const bad: FlowStep = { action: 'teleport', url: 'x' };
`;

// The agreement of src/protocol/schemas.ts counts as drift an extra optional field, a field made optional
// and a nullable one (`npm run typecheck` fails when one of these compiles).
type Agrees<T extends true> = T;
// @ts-expect-error an extra optional field
export type _ExtraOptional = Agrees<Same<{ a: string; b?: number }, { a: string }>>;
// @ts-expect-error a field made optional
export type _MadeOptional = Agrees<Same<{ a?: string }, { a: string }>>;
// @ts-expect-error a nullable field
export type _Nullable = Agrees<Same<{ a: string | null }, { a: string }>>;
export type _Agrees = Agrees<Same<{ a: string; b?: number[] }, { a: string; b?: number[] }>>;
