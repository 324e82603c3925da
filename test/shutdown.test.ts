import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { runParley, type ParleyProcess } from './helpers/process';
import { sleep, wsClient } from './helpers/graphql';
import { lobbyOf, signup } from './helpers/factories';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { holdNextMessagePublish } from './helpers/publish';
import { sql } from './helpers/db';
import { initialized } from './helpers/raw-socket';

const TIMEOUT = 3;

/** Whether a new connection to `port` is refused (the listener closed). */
const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const probe = connect(port, '127.0.0.1');
    probe.once('connect', () => (probe.destroy(), resolve(false)));
    probe.once('error', () => resolve(true));
  });

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

describe('operations in flight at a stop', () => {
  const SEND = 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id content } }';
  const stored = async (s: TestServer, content: string) => (await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from messages where content = $1', [content]))[0].n;

  it('should answer a mutation running on a socket before closing it with 1001, and refuse one sent after the stop began', async () => {
    const s = await createTestServer();
    const ada = await signup(s.url);
    const lobby = await lobbyOf(s.url, ada.token);
    const w = wsClient(s.wsUrl, ada.token, undefined, { onNonLazyError: () => undefined });
    await w.connected;
    const r = await initialized(s.wsUrl, ada.token);
    const hold = holdNextMessagePublish(s.services.pubsub);
    const first = w.client.iterate({ query: SEND, variables: { g: lobby, c: 'in flight' } });
    const answer = first.next();
    await hold.taken();
    const stopping = s.dispose();
    await sleep(100);
    // Sent once the stop began: refused, nothing run.
    const late = await w.client.iterate({ query: SEND, variables: { g: lobby, c: 'too late' } }).next().catch((e: unknown) => e);
    expect((late as any)[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    // A subscription is left unanswered: a graphql-ws client sends it again once it reconnects (an error would end it).
    r.send({ id: 'sub', type: 'subscribe', payload: { query: 'subscription { groupEvent { kind } }' } });
    hold.release();
    expect((await answer).value?.data?.sendMessage?.content).toBe('in flight');
    expect((await w.closed).code).toBe(1001);
    expect((await r.closed).code).toBe(1001);
    expect(r.messages.filter((m) => m.id === 'sub')).toEqual([]);
    await stopping;
    expect(await stored(s, 'in flight')).toBe(1);
    expect(await stored(s, 'too late')).toBe(0);
  });

  it('should not wait on a socket whose client stopped reading: it is cut, and the stop goes on to drain HTTP', async () => {
    const s = await createTestServer();
    const ada = await signup(s.url);
    const stalled = await initialized(s.wsUrl, ada.token);
    // A phone gone out of range: its side reads nothing more, and never answers the close.
    (stalled.socket as unknown as { _socket: { pause(): void } })._socket.pause();
    const started = Date.now();
    await s.dispose();
    // ws waited up to 30 s for its close handshake, and the stop with it.
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('should answer a keep-alive request running when HTTP begins to drain with Connection: close, so its client sends the next one elsewhere', async () => {
    const s = await createTestServer();
    const ada = await signup(s.url);
    const lobby = await lobbyOf(s.url, ada.token);
    const body = JSON.stringify({ query: SEND, variables: { g: lobby, c: 'running at the stop' } });
    const socket = connect(s.port, '127.0.0.1');
    let received = '';
    socket.on('data', (d) => (received += d));
    const ended = new Promise((r) => socket.on('close', r));
    const hold = holdNextMessagePublish(s.services.pubsub);
    socket.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ada.token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await hold.taken();
    const stopping = s.dispose();
    await sleep(200);
    hold.release();
    await ended;
    await stopping;
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(received).toMatch(/^Connection: close\r$/im);
    expect(await stored(s, 'running at the stop')).toBe(1);
  });

  it('should refuse with 503 a request read once HTTP began to drain, running nothing', async () => {
    const s = await createTestServer();
    const ada = await signup(s.url);
    const lobby = await lobbyOf(s.url, ada.token);
    const body = (c: string) => JSON.stringify({ query: SEND, variables: { g: lobby, c } });
    const request = (c: string) =>
      `POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ada.token}\r\nContent-Length: ${Buffer.byteLength(body(c))}\r\n\r\n${body(c)}`;
    // One connection: its first request is held in flight (its publish), which keeps the connection open while HTTP drains.
    const socket = connect(s.port, '127.0.0.1');
    let received = '';
    socket.on('data', (d) => (received += d));
    const ended = new Promise((r) => socket.on('close', r));
    const hold = holdNextMessagePublish(s.services.pubsub);
    socket.write(request('first'));
    await hold.taken();
    const stopping = s.dispose();
    await sleep(200);
    socket.write(request('read after the stop'));
    await sleep(100);
    hold.release();
    await ended;
    await stopping;
    const statuses = [...received.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 503]);
    // The first kept the connection for the one read behind it; that one, the last, closes it.
    expect([...received.matchAll(/^Connection: (\S+)/gim)].map((m) => m[1].toLowerCase())).toEqual(['keep-alive', 'close']);
    expect(received).toContain('SERVICE_UNAVAILABLE');
    // The refusal says when to come back (to another instance, through the balancer).
    expect([...received.matchAll(/^Retry-After: (\S+)/gim)].map((m) => m[1])).toEqual(['1']);
    expect(await stored(s, 'first')).toBe(1);
    expect(await stored(s, 'read after the stop')).toBe(0);
  });

  it('should refuse with 503, not reset, the first request of a connection accepted just before HTTP began to drain', async () => {
    const s = await createTestServer();
    const ada = await signup(s.url);
    const lobby = await lobbyOf(s.url, ada.token);
    const body = JSON.stringify({ query: SEND, variables: { g: lobby, c: 'first of a fresh connection' } });
    // Accepted, its request not written yet (as a client's burst opens connections).
    const socket = connect(s.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let received = '';
    socket.on('data', (d) => (received += d));
    socket.on('error', (e: NodeJS.ErrnoException) => (received += `error ${e.code}`));
    const ended = new Promise((r) => socket.on('close', r));
    await sleep(50);
    const stopping = s.dispose();
    // The drain has begun once the listener is closed: a new connection is refused.
    for (let i = 0; i < 500 && !(await refused(s.port)); i++) await sleep(5);
    socket.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${ada.token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await ended;
    await stopping;
    expect(received).toMatch(/^HTTP\/1\.1 503/);
    expect(received).toMatch(/^Connection: close\r$/im);
    expect(await stored(s, 'first of a fresh connection')).toBe(0);
  });
});
