import { spawn } from 'node:child_process';
import path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

/**
 * The V8 flags `npm test` starts jest with (package.json), which its workers inherit but a child
 * does not (V8's flags are refused in NODE_OPTIONS). A server sets an eighth of V8's default
 * interrupt budget unless given one (src/core/runtime.ts): right for a process that serves for
 * days, but a test process lives seconds, and spent about a third of its CPU optimizing code it
 * then barely ran.
 */
const V8_TEST_FLAGS = process.execArgv.filter((a) => /^--(interrupt-budget|max-semi-space-size)=/.test(a));

export interface ParleyProcess {
  child: ReturnType<typeof spawn>;
  /** The exit code once it exits. */
  exited: Promise<number | null>;
  /** The URL it listens on, from its log; rejects if it exits first. */
  listening: Promise<string>;
  output(): { stdout: string; stderr: string };
}

/**
 * Runs the real entry point (src/index.ts) as `npm start` would, without the build step:
 * from this checkout, or from `cwd` when given (a copy with its own src/ and node_modules/).
 * `entry` runs another script the same way (the presence sweep's CLI). The one process spawner
 * of the tests: whatever it started and a test left running is stopped after the test.
 */
export function runParley(env: Record<string, string | undefined>, opts: { cwd?: string; entry?: string; detached?: boolean } = {}): ParleyProcess {
  const child = spawn(process.execPath, [...V8_TEST_FLAGS, '-r', '@swc-node/register', opts.entry ?? 'src/index.ts'], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, NODE_ENV: 'production', LOG_PRETTY: 'false', LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own, as a supervisor signals it (`kill -- -pid`).
    detached: opts.detached,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', () => {
      // A JSON line's url, or the pretty line (colours stripped).
      const m = /"url":"(http:[^"]+)"/.exec(stdout) ?? /listening on (http:\S+)/.exec(stdout.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) resolve(m[1]);
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}${stdout}`)));
  });
  listening.catch(() => undefined);
  const p: ParleyProcess = { child, exited, listening, output: () => ({ stdout, stderr }) };
  running.add(p);
  void exited.then(() => running.delete(p));
  return p;
}

const running = new Set<ParleyProcess>();
// One that a failed test left running is stopped (SIGTERM: its PostgreSQL too), so jest is not kept waiting.
afterEach(async () => {
  await Promise.all([...running].map((p) => (p.child.kill('SIGTERM'), p.exited)));
});
