import { randomUUID } from 'node:crypto';
import { runParley, type ParleyProcess } from './helpers/process';
import { wsClient } from './helpers/graphql';
import { signup } from './helpers/factories';
import { describeRedis } from './helpers/server';

const TIMEOUT = 3;

/** Whether the process ended within `ms`, and how long it took. */
async function endsWithin(p: ParleyProcess, ms: number): Promise<{ ended: boolean; after: number }> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]);
  // Not left pending after the test: a timer outliving its suite keeps the jest worker from exiting.
  clearTimeout(timer);
  return { ended, after: Date.now() - started };
}

/** A development-mode instance as `npm start` runs it in a terminal: pretty logs through pino's worker, debug lines. */
async function devInstance(vars: Record<string, string> = {}) {
  const p = runParley({ NODE_ENV: 'development', LOG_PRETTY: 'true', LOG_LEVEL: 'debug', SHUTDOWN_TIMEOUT: String(TIMEOUT), ...vars }, { detached: true });
  const url = await p.listening;
  // This database is not wiped for these tests: a name of its own, never one an earlier suite of this run left behind.
  const user = await signup(url, { username: `shutdown_${randomUUID().slice(0, 8)}` });
  // Open sockets, as in the report: each has to be closed with 1001 on the way out.
  const sockets = Array.from({ length: 5 }, () => wsClient(url.replace('http', 'ws'), user.token, undefined, { onNonLazyError: () => undefined }));
  await Promise.all(sockets.map((s) => s.connected));
  return { p, url, sockets };
}

/** Requests that each log a line, until about `bytes` of log have been written to a pipe nobody reads. */
async function logAbout(url: string, bytes: number): Promise<void> {
  const perLine = 150;
  let left = Math.ceil(bytes / perLine);
  const worker = async () => {
    while (left-- > 0) {
      await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'x'.repeat(64) }, body: '{"query":"{ __typename }"}' }).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: 20 }, worker));
}

/** Stops reading its output, logs until the pipes are full, then SIGTERM: whether it ended in time. */
async function stopWithPipesFull(p: ParleyProcess, url: string): Promise<{ ended: boolean; after: number }> {
  p.child.stdout!.pause();
  p.child.stderr!.pause();
  await logAbout(url, 400 * 1024);
  process.kill(-p.child.pid!, 'SIGTERM');
  return endsWithin(p, TIMEOUT * 1000 + 1500);
}

describeRedis('shutdown', () => {
  const started: ParleyProcess[] = [];
  afterEach(() => {
    // A process the test saw hang must not outlive it (nor hold the after-each's SIGTERM wait).
    for (const p of started.splice(0)) if (p.child.exitCode === null && p.child.signalCode === null) process.kill(-p.child.pid!, 'SIGKILL');
  });

  it('should end within SHUTDOWN_TIMEOUT when its log pipes close with the parent (pretty logs through a worker)', async () => {
    // Two instances, the parent signals both process groups and its pipes close at once.
    const instances = await Promise.all([devInstance(), devInstance()]);
    started.push(...instances.map((i) => i.p));
    for (const { p } of instances) {
      process.kill(-p.child.pid!, 'SIGTERM');
      p.child.stdout!.destroy();
      p.child.stderr!.destroy();
    }
    const results = await Promise.all(instances.map(({ p }) => endsWithin(p, TIMEOUT * 1000 + 1500)));
    for (const r of results) expect(r).toEqual({ ended: true, after: expect.any(Number) });
  }, 60_000);

  it('should end within SHUTDOWN_TIMEOUT when nobody reads its pretty logs (a full pipe)', async () => {
    const { p, url } = await devInstance();
    started.push(p);
    expect(await stopWithPipesFull(p, url)).toEqual({ ended: true, after: expect.any(Number) });
  }, 90_000);

  it('should end within SHUTDOWN_TIMEOUT when nobody reads its JSON logs (writes that block the process)', async () => {
    const p = runParley({ LOG_LEVEL: 'debug', SHUTDOWN_TIMEOUT: String(TIMEOUT) }, { detached: true });
    started.push(p);
    expect(await stopWithPipesFull(p, await p.listening)).toEqual({ ended: true, after: expect.any(Number) });
  }, 90_000);

  it('should exit 0 by itself after SIGTERM when nothing holds it (not by the watchdog)', async () => {
    const { p } = await devInstance();
    started.push(p);
    process.kill(-p.child.pid!, 'SIGTERM');
    const r = await endsWithin(p, TIMEOUT * 1000);
    expect(r.ended).toBe(true);
    expect(await p.exited).toBe(0);
    expect(p.output().stdout).toContain('stopped');
  });
});
