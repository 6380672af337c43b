/**
 * Named session states: a browser context's Playwright storage state (cookies and local storage) kept
 * under a name, so that a later session starts where an earlier one left off (logged in, consent given).
 *
 * A session asks for them at enqueue with `state: {use?, save?}`; the API keeps the last versions of each
 * name, never answers their contents to a client, and encrypts them at rest when the server has
 * STATE_ENCRYPTION_KEY set.
 */

/** A session's named state: which one its context starts from, and under which name it is saved. */
export type StateOptions = {
  /** Start the session's context from this state (a fresh context, never a kept or pre-warmed one). */
  use?: string;
  /** When the session succeeds, store its context's storage state under this name as a new version. */
  save?: string;
  /**
   * Save even when another session saved the same name after this one started (default false: the newer
   * version is kept, the session still succeeds and its `stateSave` says the save was skipped).
   */
  overwrite?: boolean;
  /** The saved version expires after this long (default: the server's STATE_TTL_MS, else never). */
  ttlMs?: number;
};

/** What became of a session's save (on the session, once the runner saved or skipped it). */
export type StateSaveOutcome = {
  name: string;
  /** False: skipped, a newer version saved by another session since this one started was kept. */
  saved: boolean;
  /** The version this session saved, or (skipped) the newer version that was kept. */
  version: number;
  /** Why it was skipped. */
  message?: string;
};

/** One stored version of a state (never its contents). */
export type StateVersionView = {
  version: number;
  /** Bytes of the storage state JSON. */
  size: number;
  encrypted: boolean;
  savedAt: string;
  savedBySession: string | null;
  expiresAt: string | null;
};

/** A named state as listed: its newest live version. */
export type StateView = {
  name: string;
  version: number;
  size: number;
  updatedAt: string;
  savedBySession: string | null;
  encrypted: boolean;
  expiresAt: string | null;
};

export type StateList = { items: StateView[] };

/** A named state with its kept versions, newest first. */
export type StateDetail = {
  name: string;
  version: number;
  size: number;
  updatedAt: string;
  savedBySession: string | null;
  encrypted: boolean;
  expiresAt: string | null;
  versions: StateVersionView[];
};

/** Playwright's storage state (`context.storageState()`): cookies, and local storage per origin. */
export type StorageState = {
  cookies: Record<string, unknown>[];
  origins: Record<string, unknown>[];
};

/** What a runner gets for its session's `state.use` (runner token, under the session's lease). */
export type SessionStateReply = {
  name: string;
  version: number;
  storageState: StorageState;
};

/** A runner's save of its session's context under `state.save`, fenced by the lease. */
export type SaveSessionStateBody = {
  leaseToken: string;
  storageState: StorageState;
  /** The version of the same name this session started from (its `use`), if any. */
  seenVersion?: number;
};
