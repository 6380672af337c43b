import { readFile } from 'node:fs/promises';
import { ConfigError } from '../core/errors.js';

/** Reads a JSON file a user named on the command line, with errors that name the file. */
export async function readJsonFile(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(`${what} ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export function parseJsonFlag(value: string, flag: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch (err) {
    throw new ConfigError(`--${flag} is not valid JSON: ${(err as Error).message}`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
