import { defineConfig } from 'vitest/config';

export default defineConfig({
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
