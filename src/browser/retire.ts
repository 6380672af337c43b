import type { Instance } from './launch.js';
import { treePssBytes } from './procfs.js';

export const DEFAULT_MAX_CONTEXTS_PER_BROWSER = 200;
const MEMORY_CHECK_INTERVAL_MS = 2000;
const GUIDE_BASE_BYTES = 500 * 2 ** 20;
const GUIDE_PER_CONTEXT_BYTES = 500 * 2 ** 20;

export interface RetireOptions {
  maxContextsPerBrowser?: number;
  memoryBudgetBytes?: number;
}

/**
 * When a browser stops taking new sessions: once it has created `maxContextsPerBrowser` contexts, or
 * when its process tree's PSS passes the memory budget. Retiring itself (what happens to the browser's
 * contexts) is the pool's; this only decides and calls `retire`.
 */
export class RetirePolicy {
  private readonly maxContexts: number;
  private readonly budgetBytes: number | undefined;
  private readonly retire: (inst: Instance, reason: string) => void;
  private lastMemoryCheck = 0;
  private memoryCheck: Promise<void> | undefined;

  constructor(opts: RetireOptions, retire: (inst: Instance, reason: string) => void) {
    this.maxContexts = Math.max(1, opts.maxContextsPerBrowser ?? DEFAULT_MAX_CONTEXTS_PER_BROWSER);
    this.budgetBytes = opts.memoryBudgetBytes;
    this.retire = retire;
  }

  /** Retires `inst` when it has created its allowance of contexts; true when it did. */
  spent(inst: Instance): boolean {
    if (inst.contextsCreated < this.maxContexts) return false;
    this.retire(inst, `created ${inst.contextsCreated} contexts`);
    return true;
  }

  /** Measures `inst` in the background, at most every few seconds, and retires it when over budget. */
  checkMemory(inst: Instance | undefined): void {
    if (this.memoryCheck || Date.now() - this.lastMemoryCheck < MEMORY_CHECK_INTERVAL_MS) return;
    this.lastMemoryCheck = Date.now();
    if (!inst?.pid || inst.contextsCreated < 2) return;
    // Without a fixed budget, the guide's allowance: 500 MB base plus 500 MB per open context.
    const budget = this.budgetBytes ?? GUIDE_BASE_BYTES + GUIDE_PER_CONTEXT_BYTES * inst.contexts.size;
    this.memoryCheck = treePssBytes(inst.pid)
      .then((bytes) => {
        if (bytes > budget && !inst.retired && !inst.disconnected) {
          this.retire(
            inst,
            `memory ${Math.round(bytes / 2 ** 20)} MB over budget ${Math.round(budget / 2 ** 20)} MB`,
          );
        }
      })
      .catch(() => {})
      .finally(() => {
        this.memoryCheck = undefined;
      });
  }

  /** The memory check under way, if any. */
  get checking(): Promise<void> | undefined {
    return this.memoryCheck;
  }
}
