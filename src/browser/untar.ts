import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * A tar reader for the packaged browser's archives: regular files and folders, with ustar, GNU long
 * and pax names. Anything else (links, devices) is refused rather than skipped, so a changed archive
 * fails its unpack loudly instead of leaving a browser with files missing.
 */

const BLOCK = 512;

function text(buf: Buffer, start: number, length: number): string {
  const field = buf.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

function octal(buf: Buffer, start: number, length: number): number {
  const value = text(buf, start, length).trim();
  if (!/^[0-7]*$/.test(value)) throw new Error(`tar: not an octal number in a header: ${value}`);
  return value === '' ? 0 : Number.parseInt(value, 8);
}

/** pax records: `<length> <key>=<value>\n` each. */
function paxPath(data: Buffer): string | undefined {
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = Number(data.subarray(at, space).toString('ascii'));
    if (!Number.isInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') return record.slice(eq + 1);
    at += length;
  }
  return undefined;
}

/** `name` inside `dest`, or an error for absolute names and names that climb out. */
function inside(dest: string, name: string): string {
  const clean = path.posix.normalize(name);
  if (path.posix.isAbsolute(clean) || clean === '..' || clean.startsWith('../'))
    throw new Error(`tar: entry ${name} points outside the folder it is unpacked to`);
  return path.join(dest, clean);
}

/**
 * Writes the entries of `archive` under `dest` (which must exist); `skip` leaves out entries by name.
 * Returns the names written.
 */
export async function extractTar(
  archive: Buffer,
  dest: string,
  skip: (name: string) => boolean = () => false,
): Promise<string[]> {
  const written: string[] = [];
  let longName: string | undefined;
  for (let at = 0; at + BLOCK <= archive.length;) {
    const header = archive.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break;
    const size = octal(header, 124, 12);
    const type = String.fromCharCode(header[156] ?? 0);
    const data = archive.subarray(at + BLOCK, at + BLOCK + size);
    if (data.length < size) throw new Error('tar: archive ends inside an entry');
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;

    if (type === 'L') {
      longName = text(data, 0, data.length);
      continue;
    }
    if (type === 'x') {
      longName = paxPath(data) ?? longName;
      continue;
    }
    if (type === 'g') continue;
    // POSIX ustar keeps a name prefix at 345; GNU headers ("ustar  ") keep other fields there.
    const prefix =
      text(header, 257, 6) === 'ustar' && text(header, 263, 2) === '00' ? text(header, 345, 155) : '';
    const name = longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    longName = undefined;
    if (skip(name.replace(/^\.\//, ''))) continue;
    const target = inside(dest, name);
    const mode = octal(header, 100, 8) & 0o777;
    if (type === '5') {
      await mkdir(target, { recursive: true });
    } else if (type === '0' || type === '\0' || type === '7') {
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, data);
      await chmod(target, mode || 0o644);
    } else {
      throw new Error(
        `tar: entry ${name} has type ${JSON.stringify(type)}; only files and folders are unpacked`,
      );
    }
    written.push(name);
  }
  return written;
}
