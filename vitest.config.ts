import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Tests read the SDK package's sources, not its last build (as typecheck and the dependency check do).
    alias: [
      {
        find: /^@session-framework\/sdk$/,
        replacement: fileURLToPath(new URL('./packages/sdk/src/index.ts', import.meta.url)),
      },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: a few files at a time; each file gets its own database.
    maxWorkers: 3,
    fileParallelism: true,
    reporters: ['default'],
  },
});
