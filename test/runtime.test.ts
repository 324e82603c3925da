import { readFileSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { NODE_FLAGS } from '../bench/harness';
import { INTERRUPT_BUDGET, tuneTierUp } from '../src/core/runtime';

describe('tier-up', () => {
  it('should make a started server optimize a function within hundreds of calls, not thousands', async () => {
    // In a process of its own: jest runs with a budget of its own (package.json), which a server
    // leaves alone. Under V8's default budget this function is marked after about 1,500 calls; with
    // the server's, about 500.
    const child = spawnSync(process.execPath, ['-r', '@swc-node/register', 'test/helpers/tier-up.ts'], {
      cwd: path.join(__dirname, '..'),
      env: { ...process.env, NODE_ENV: 'test', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(child.status).toBe(0);
    const { before, after } = JSON.parse(child.stdout) as { before: number; after: number };
    expect(before).toBeGreaterThan(1000);
    expect(after).toBeLessThan(1000);
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
