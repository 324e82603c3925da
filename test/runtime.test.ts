import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { NODE_FLAGS } from '../bench/harness';
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

describe('the flags Parley is started with', () => {
  const ROOT = path.join(__dirname, '..');
  /** The `--flags` between `node` and the entry point, in the order written. */
  const flagsOf = (command: string): string[] => /\bnode((?:\s+--[^\s]+)*)\s+dist\/src\/index\.js/.exec(command)?.[1].split(/\s+/).filter(Boolean) ?? [];

  it('should give the image the young generation npm start gives, and the benches the same', () => {
    const start = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
    expect(flagsOf(start)).toContain('--max-semi-space-size=32');
    expect(flagsOf((JSON.parse(cmd!) as string[]).join(' '))).toEqual(flagsOf(start));
    expect(NODE_FLAGS).toEqual(flagsOf(start));
  });
});
