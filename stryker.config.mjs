// Mutation testing of the pure modules: `npm run mutate` (slow, not in CI; README "Testing").
// Only the unit tests beside the code run (vitest.mutate.config.ts), never the workerd suite.
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts', related: true },
  plugins: ['@stryker-mutator/vitest-runner'],
  mutate: [
    'src/engine/**/*.ts',
    'src/memory/**/*.ts',
    'src/bundle/**/*.ts',
    'src/api/request-schema.ts',
    'src/tokenizer/**/*.ts',
    '!src/**/*.test.ts',
    '!src/**/test-support.ts',
  ],
  // The sandbox gets only what the unit tests read (bench/.work alone holds gigabytes).
  ignorePatterns: [
    '/*',
    '!/src',
    '!/package.json',
    '!/tsconfig.json',
    '!/vitest.mutate.config.ts',
    // src/api/prompt-bound.test.ts reads the demo tokenizer.
    '/models/*',
    '!/models/flex',
    '/models/flex/*',
    '!/models/flex/tokenizer.json',
  ],
  coverageAnalysis: 'perTest',
  // A 2-core machine shared with other test runs.
  concurrency: 2,
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  // The run fails (exit 1) below 80%: the goal of the issue "A test suite that can fail".
  thresholds: { high: 90, low: 80, break: 80 },
};
