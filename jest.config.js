/** One transform for every project: TypeScript with decorators and their metadata, as the server is built. */
const base = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
          target: 'es2022',
        },
        module: { type: 'commonjs' },
      },
    ],
  },
  setupFiles: ['reflect-metadata', '<rootDir>/test/setup/worker-env.ts'],
  setupFilesAfterEnv: ['<rootDir>/test/setup/suites.ts'],
};

/**
 * Suites that take minutes or drive outside programs: the fuzzer, the browser (Chromium), a Redis
 * Cluster, several instances at once, and start-up from a packed install. `npm test` leaves them
 * out so a change is checked quickly; `npm run test:all` (what CI runs) takes them too.
 */
const slow = ['fuzz', 'demo.browser', 'graphiql', 'cluster', 'scaleout', 'startup', 'rolling', 'migrations', 'notifications.crash'];
const slowPaths = slow.map((name) => `<rootDir>/test/${name}.test.ts`);

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    { ...base, displayName: 'quick', testMatch: ['<rootDir>/test/**/*.test.ts'], testPathIgnorePatterns: ['/node_modules/', ...slow.map((name) => `/test/${name.replace('.', '\\.')}\\.test\\.ts$`)] },
    { ...base, displayName: 'slow', testMatch: slowPaths },
  ],
  globalSetup: '<rootDir>/test/setup/global-setup.ts',
  globalTeardown: '<rootDir>/test/setup/global-teardown.ts',
  testTimeout: 30_000,
  // Suites that measure time run last, alone (see the file).
  testSequencer: '<rootDir>/test/setup/sequencer.js',
  // Every suite in a fresh worker: a worker that had run 40 suites held 1.4-2.4 GB (8 GB allowed,
  // so V8 collects late) and whatever they left running, and rolling.test's clients and proxy,
  // which live in the worker, took 6.5 s to reconnect there against 3.6-3.9 in a fresh one, and
  // 12-13.6 s at the end of a whole CI run (its bound is 10 s).
  workerIdleMemoryLimit: 0,
};
