import type { Dir } from 'node:fs';
import { opendir, rm, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * The artifact side of retention. `SessionArtifacts` is the part of an artifact store retention needs
 * (the `deletePrefix` of src/server/artifact-store.ts); `LocalSessionFolders` is that, plus the listing the
 * orphan sweep walks, for the local layout `<dir>/<session id>/<upload id>/<name>`.
 */
export interface SessionArtifacts {
  /** Removes every stored artifact of the session; none is fine. */
  deletePrefix(sessionId: string): Promise<void>;
}

export interface SessionFolder {
  sessionId: string;
  /** Last change of the folder (an upload adds a folder in it). */
  modifiedAt: Date;
}

/** A walk over the sessions that have stored artifacts, a bounded step at a time. */
export interface SessionFolderScan {
  /** Up to `max` more folders; [] and `done` when the walk reached the end (the next call starts over). */
  next(max: number): Promise<{ folders: SessionFolder[]; done: boolean }>;
  /** Bytes under a session's folder (what the sweep frees). */
  size(sessionId: string): Promise<number>;
  close(): Promise<void>;
}

const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class LocalSessionFolders implements SessionArtifacts, SessionFolderScan {
  private readonly dir: string;
  private walk: Dir | null = null;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  async deletePrefix(sessionId: string): Promise<void> {
    if (!SESSION_ID.test(sessionId)) throw new Error(`not a session id: ${sessionId}`);
    await rm(path.join(this.dir, sessionId), { recursive: true, force: true });
  }

  async next(max: number): Promise<{ folders: SessionFolder[]; done: boolean }> {
    if (this.walk === null) {
      try {
        this.walk = await opendir(this.dir, { bufferSize: 256 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { folders: [], done: true };
        throw err;
      }
    }
    const folders: SessionFolder[] = [];
    let read = 0;
    while (read < max) {
      const entry = await this.walk.read();
      if (entry === null) {
        await this.close();
        return { folders, done: true };
      }
      read++;
      if (!entry.isDirectory() || !SESSION_ID.test(entry.name)) continue;
      const st = await stat(path.join(this.dir, entry.name)).catch(() => null);
      if (st) folders.push({ sessionId: entry.name, modifiedAt: st.mtime });
    }
    return { folders, done: false };
  }

  async size(sessionId: string): Promise<number> {
    if (!SESSION_ID.test(sessionId)) return 0;
    let bytes = 0;
    const walk = async (dir: string, depth: number): Promise<void> => {
      const d = await opendir(dir).catch(() => null);
      if (!d) return;
      for await (const e of d) {
        const p = path.join(dir, e.name);
        if (e.isDirectory() && depth < 3) await walk(p, depth + 1);
        else if (e.isFile()) bytes += (await stat(p).catch(() => null))?.size ?? 0;
      }
    };
    await walk(path.join(this.dir, sessionId), 0);
    return bytes;
  }

  async close(): Promise<void> {
    const w = this.walk;
    this.walk = null;
    await w?.close().catch(() => undefined);
  }
}
