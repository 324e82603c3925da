import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Programs some suites need besides Node (a spare Redis to stop and restart, a browser). */
export const tools = {
  redisServer: spawnSync('redis-server', ['--version']).status === 0,
  redisCluster: spawnSync('redis-server', ['--version']).status === 0 && spawnSync('redis-cli', ['--version']).status === 0,
  chromium: existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'),
};

const said = new Set<string>();

/**
 * `describe` or `it` for tests that need a program besides Node. On a machine with only Node
 * they are skipped with a line saying so, and `npm test` passes; in CI (CI=true) they always
 * run, so a missing program fails them instead of letting them pass unseen.
 */
function needing<T extends jest.Describe | jest.It>(run: T, skip: T, what: string, available: boolean): T {
  if (available || process.env.CI) return run;
  if (!said.has(what)) {
    said.add(what);
    process.stdout.write(`\n${what} not found: the tests that need it are skipped here (CI runs them all).\n`);
  }
  return skip;
}

export const describeNeeding = (what: string, available: boolean): jest.Describe => needing(describe, describe.skip, what, available);
export const itNeeding = (what: string, available: boolean): jest.It => needing(it, it.skip, what, available);
