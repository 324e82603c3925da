import { setFlagsFromString } from 'node:v8';
import { INTERRUPT_BUDGET, tuneTierUp } from '../src/core/runtime';
import { createTestServer, type TestServer } from './helpers/server';

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

describe('tier-up', () => {
  let server: TestServer;
  afterAll(() => server?.dispose());

  it('should make a started server optimize a function within hundreds of calls, not thousands', async () => {
    // Under V8's default budget this function is marked after about 1,500 calls; with the
    // server's, about 500.
    server = await createTestServer();
    expect(callsToTierUp()).toBeLessThan(1000);
  });

  it('should leave a budget given on the command line alone', () => {
    expect(tuneTierUp(['--expose-gc', '--interrupt-budget=67584'])).toBe(false);
    expect(tuneTierUp([])).toBe(true);
    expect(INTERRUPT_BUDGET).toBeLessThan(67_584);
  });
});
