import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/**
 * Chromium features a headless server session never uses. New headless mode builds a window per
 * context, and with it a WebUI omnibox popup renderer (~45 MB PSS per context) unless these are off.
 */
export const EXTRA_DISABLED_FEATURES = ['WebUIOmniboxPopup', 'WebUIOmniboxFullPopup', 'WebUIOmniboxAimPopup'];

let playwrightFlag: Promise<string | undefined> | undefined;

/**
 * Playwright passes its own `--disable-features=…` and Chromium keeps only the last such switch, so
 * adding ours means replacing Playwright's with the union. Its exact value is learned once per process
 * by "launching" a stub executable that records its arguments (no browser starts).
 */
export function playwrightDisableFeaturesFlag(tempRoot: string): Promise<string | undefined> {
  playwrightFlag ??= (async () => {
    const dir = await mkdtemp(join(tempRoot, 'sfw-args-'));
    try {
      const stub = join(dir, 'record-args');
      await writeFile(stub, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > "$0.txt"\nexit 1\n`);
      await chmod(stub, 0o755);
      await chromium
        .launch({
          executablePath: stub,
          timeout: 5000,
          handleSIGINT: false,
          handleSIGTERM: false,
          handleSIGHUP: false,
        })
        .then((b) => b.close())
        .catch(() => {});
      const args = (await readFile(`${stub}.txt`, 'utf8').catch(() => '')).split('\n');
      return args.find((a) => a.startsWith('--disable-features='));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return playwrightFlag;
}

/** Launch options that swap Playwright's feature switch for the union with EXTRA_DISABLED_FEATURES. */
export async function featureArgs(
  tempRoot: string,
): Promise<{ args: string[]; ignoreDefaultArgs: string[] }> {
  const flag = await playwrightDisableFeaturesFlag(tempRoot);
  if (!flag) return { args: [], ignoreDefaultArgs: [] };
  const features = new Set(flag.slice('--disable-features='.length).split(',').filter(Boolean));
  for (const f of EXTRA_DISABLED_FEATURES) features.add(f);
  return { args: [`--disable-features=${[...features].join(',')}`], ignoreDefaultArgs: [flag] };
}
