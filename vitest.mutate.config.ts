/**
 * The vitest config of `npm run mutate` (stryker.config.mjs): only the unit tests beside the code,
 * without the global setup of vitest.config.ts (which builds the worker with wrangler for the
 * workerd integration tests under tests/).
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
