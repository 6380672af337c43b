import nodeModule from 'node:module';
import { resolve as resolvePath, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Node module hooks for session modules, so a module in a bare folder (no package.json, no
 * node_modules) just works:
 * - `session-framework`, `session-framework/…` and `zod` (`zod/…`), when they do not resolve from the
 *   importing file, resolve from this package instead: its own exports (a self-reference) and its zod.
 *   A folder with its own node_modules keeps them: only a failed resolution is retried.
 * - `.ts` and `.mts` files under a sessions folder load as ES modules (type stripping), whatever
 *   package.json (or none) is around them: no CommonJS guess, no "module type not specified" warning.
 * Synchronous, in-thread hooks (module.registerHooks, Node 22.15+); installed once per process.
 */

/** A file inside this package: resolutions retried from here see its exports and its node_modules. */
const ANCHOR = import.meta.url;
const REDIRECTED = /^(session-framework|zod)(\/.*)?$/;
const TS_ESM = /\.m?ts$/;
const NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND']);

/** Folders whose TypeScript files load as ES modules, as file URLs ending in `/`. */
const roots = new Set<string>();
let installed = false;

function underRoot(url: string): boolean {
  if (!url.startsWith('file:') || url.includes('/node_modules/')) return false;
  for (const root of roots) if (url.startsWith(root)) return true;
  return false;
}

/** Installs the hooks (once) and adds `dir` to the folders whose `.ts` files load as ES modules. */
export function installSessionModuleHooks(dir: string): void {
  const root = pathToFileURL(resolvePath(dir) + sep).href;
  roots.add(root.endsWith('/') ? root : `${root}/`);
  if (installed) return;
  installed = true;
  // Node before 22.15 has none (and is not supported: bin/sfw.js says so); its own rules apply there.
  if (typeof nodeModule.registerHooks !== 'function') return;
  nodeModule.registerHooks({
    resolve(specifier, context, nextResolve) {
      try {
        return nextResolve(specifier, context);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (!REDIRECTED.test(specifier) || code === undefined || !NOT_FOUND.has(code)) throw err;
        // Not found from the importing file: the runner's own copy.
        return nextResolve(specifier, { ...context, parentURL: ANCHOR });
      }
    },
    load(url, context, nextLoad) {
      if (TS_ESM.test(new URL(url).pathname) && underRoot(url)) {
        return nextLoad(url, { ...context, format: 'module-typescript' });
      }
      return nextLoad(url, context);
    },
  });
}
