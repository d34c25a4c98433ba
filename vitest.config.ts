import { defineConfig } from 'vitest/config';

// Tests start real HTTPS listeners and real stores; they run in forked workers so each
// file gets its own process (node:sqlite handles and listeners never leak between files).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
