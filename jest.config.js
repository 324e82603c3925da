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
  // A worker is replaced once a suite leaves it holding more than this much heap. Each suite loads
  // the server afresh (jest gives every file its own modules), and what a worker keeps of them grows
  // by ~50 MB a suite: left alone, one held 1.4-2.4 GB after 40 suites (8 GB allowed, so V8
  // collects late). A new worker for every suite instead cost ~1.5 s of CPU each (~75 suites).
  workerIdleMemoryLimit: '600MB',
};
