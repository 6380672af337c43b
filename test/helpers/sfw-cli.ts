import { spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface SfwRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `sfw <args>` from the sources (node + tsx, the SDK from its sources too, so no build is needed) against
 * the API at `apiUrl`, with a clean environment; killed after 60 s.
 */
export function sfwFromSources(apiUrl: string, args: string[]): Promise<SfwRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=@session-framework/source',
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { main } = await import(${JSON.stringify(MAIN)}); process.exit(await main(process.argv.slice(1)));`,
        ...args,
      ],
      {
        env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), API_BASE_URL: apiUrl },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sfw ${args.join(' ')} did not finish; stderr: ${stderr}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
