import 'reflect-metadata';
import { setFlagsFromString } from 'node:v8';
import { loadEnv } from '../../src/config/env';
import { startServer } from '../../src/server';
import { createLogger } from '../../src/shared/logger';

/** V8's %GetOptimizationStatus bits for "on its way to optimized code or there". */
const OPTIMIZED = 64;
const MARKED = 256 | 512 | 1024;

/** Calls a fresh function until V8 marks it for optimization (or optimizes it): how many calls that took. */
function callsToTierUp(): number {
  setFlagsFromString('--allow-natives-syntax');
  const status = new Function('f', 'return %GetOptimizationStatus(f)') as (f: unknown) => number;
  // A new function each time (new Function), so that no earlier call's feedback counts.
  const payload = new Function('row', 'return { id: row.id, text: row.text.trim(), at: row.at + 1 };') as (row: object) => unknown;
  const row = { id: 'x', text: ' hi ', at: 1 };
  let calls = 0;
  while (calls < 100_000 && !(status(payload) & (OPTIMIZED | MARKED))) {
    payload(row);
    calls++;
  }
  return calls;
}

/**
 * Run as a program (runtime.test), in a process started without the tests' V8 flags: prints the
 * calls to tier up before and after a server started in it, one line of JSON.
 */
if (require.main === module) {
  void (async () => {
    const before = callsToTierUp();
    const env = loadEnv(process.env);
    const server = await startServer({ env, logger: createLogger(env), jobs: false });
    const after = callsToTierUp();
    await server.dispose();
    process.stdout.write(`${JSON.stringify({ before, after })}\n`);
  })();
}
