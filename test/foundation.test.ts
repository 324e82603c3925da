import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { ConfigError, loadEnv } from '../src/config/env';
import { createSchema, printSdl } from '../src/graphql/schema';
import { migrate } from '../src/core/database';
import { sql } from './helpers/db';
import { codeOf, eventually, gql, ok, sleep } from './helpers/graphql';
import { createTestServer, hasRedis } from './helpers/server';
import { signup } from './helpers/factories';
import { sparePorts } from './helpers/ports';
import { runParley } from './helpers/process';

const ROOT = path.join(__dirname, '..');

describe('foundation', () => {
  it('should answer { __typename } over HTTP', async () => {
    const s = await createTestServer();
    expect(await ok(gql(s.url, '{ __typename }'))).toEqual({ __typename: 'Query' });
  });

  it('should report liveness and readiness', async () => {
    const s = await createTestServer();
    const base = s.url.replace('/graphql', '');
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { database: boolean; redis: boolean | string };
    expect(body.database).toBe(true);
    expect(body.redis).toBe(hasRedis ? true : 'not configured');
    expect(s.services.pubsub.kind).toBe(hasRedis ? 'redis' : 'memory');
  });

  it('should answer unknown paths with 404 and bad JSON with BAD_USER_INPUT', async () => {
    const s = await createTestServer();
    // In the shape of every other error, with its code (a client that reads errors[0].extensions.code, say after a mistyped '/graphql/').
    for (const url of [s.url.replace('/graphql', '/nope'), `${s.url}/`]) {
      const missing = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ __typename }"}' });
      expect([url, missing.status, ((await missing.json()) as any).errors[0].extensions.code]).toEqual([url, 404, 'NOT_FOUND']);
    }
    const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": ' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
  });

  it('should give a parse error a code', async () => {
    const s = await createTestServer();
    const r = await gql(s.url, '{ me ');
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
  });

  it('should refuse a bad setting with one line naming the variable', () => {
    expect(() => loadEnv({ PORT: 'eighty' })).toThrow(ConfigError);
    expect(() => loadEnv({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadEnv({ PRESENCE_TIMEOUT: '-5' })).toThrow(/PRESENCE_TIMEOUT/);
    expect(() => loadEnv({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL/);
    expect(() => loadEnv({ PRESENCE_SWEEP_CRON: 'every minute' })).toThrow(/PRESENCE_SWEEP_CRON/);
    expect(() => loadEnv({ ATTACHMENT_URL_SECRET: 'short' })).toThrow(/ATTACHMENT_URL_SECRET/);
    expect(() => loadEnv({ ATTACHMENT_URL_TTL: 'forever' })).toThrow(/ATTACHMENT_URL_TTL/);
    expect(() => loadEnv({ PUBLIC_URL: 'chat.example.com' })).toThrow(/PUBLIC_URL/);
    expect(loadEnv({}).ATTACHMENT_URL_TTL).toBe(300);
    expect(loadEnv({}).DB_STATEMENT_TIMEOUT).toBe(15);
    expect(() => loadEnv({ DB_STATEMENT_TIMEOUT: '0' })).toThrow(/DB_STATEMENT_TIMEOUT/);
    // A duration that arms a timer is at most a timer's longest (24.8 days); expiry times and ages are not.
    for (const name of ['TYPING_TIMEOUT', 'SHUTDOWN_TIMEOUT', 'PRESENCE_GRACE', 'WS_CONNECTION_INIT_TIMEOUT', 'PRESENCE_PERSIST_INTERVAL']) {
      expect(() => loadEnv({ [name]: '25d' })).toThrow(new RegExp(`${name}.*at most 2147483s`));
    }
    expect(() => loadEnv({ RATE_LIMIT_SEND_MESSAGE: '5/30d' })).toThrow(/RATE_LIMIT_SEND_MESSAGE.*at most/);
    expect(loadEnv({ TYPING_TIMEOUT: '24d' }).TYPING_TIMEOUT).toBe(24 * 86400);
    expect(loadEnv({ TOKEN_TTL: '365d', FRIEND_REQUEST_COOLDOWN: '90d', WEBHOOK_MAX_AGE: '30d' }).TOKEN_TTL).toBe(365 * 86400);
    expect(loadEnv({ PUBLIC_URL: 'https://chat.example.com/' }).PUBLIC_URL).toBe('https://chat.example.com');
    // Origins as a browser sends them: lower case, no default port, no slash; a path is a mistake.
    expect(loadEnv({ CORS_ORIGINS: 'https://App.Example.com, https://good.example:443/, http://dev.example:8080, Capacitor://LocalHost' }).CORS_ORIGINS).toEqual([
      'https://app.example.com',
      'https://good.example',
      'http://dev.example:8080',
      'capacitor://localhost',
    ]);
    // A path (an app's scheme's too), no host (`localhost:3000` reads as a scheme), `null`: each a mistake.
    for (const bad of ['https://app.example/login', 'app.example', 'capacitor://ionic/app', 'ionic://localhost?x', 'localhost:3000', 'null']) {
      expect(() => loadEnv({ CORS_ORIGINS: `https://ok.example, ${bad}` })).toThrow(new RegExp(`CORS_ORIGINS.*'${bad.replace(/[.?/]/g, '\\$&')}'`));
    }
    const env = loadEnv({ PRESENCE_TIMEOUT: '5m', TOKEN_TTL: '1d' });
    expect(env.PRESENCE_TIMEOUT).toBe(300);
    expect(env.TOKEN_TTL).toBe(86400);
    expect(loadEnv({}).PORT).toBe(4000);
  });

  it('should decide on the pool that nothing is pending, and take the lock when a migration is', async () => {
    const s = await createTestServer();
    const { orm } = s.database;
    // The lock's own session would need this address, where nothing answers.
    const nowhere = 'postgres://postgres@127.0.0.1:1/none';
    await expect(migrate(orm, nowhere)).resolves.toBeUndefined();
    // The newest migration unrecorded: now the locked path runs, and cannot connect.
    const [newest] = await sql(s.env.DATABASE_URL!, 'delete from mikro_orm_migrations where id = (select max(id) from mikro_orm_migrations) returning *');
    try {
      await expect(migrate(orm, nowhere)).rejects.toThrow();
    } finally {
      await sql(s.env.DATABASE_URL!, 'insert into mikro_orm_migrations (id, name, executed_at) values ($1, $2, $3)', [newest.id, newest.name, newest.executed_at]);
    }
    await expect(migrate(orm, nowhere)).resolves.toBeUndefined();
  });

  it('should keep schema.graphql current with the code', async () => {
    const committed = readFileSync(path.join(ROOT, 'schema.graphql'), 'utf8');
    expect(printSdl(await createSchema())).toBe(committed);
  });

  it('should exit non-zero with one clear line when the database is unreachable', async () => {
    const p = runParley({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/nowhere', REDIS_URL: '' });
    expect(await p.exited).toBe(1);
    const { stderr } = p.output();
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/^Parley could not start: cannot use the database at postgres:\/\/nobody@127\.0\.0\.1:1\/nowhere/);
  });

  it('should say why once at a terminal, and give a log collector the JSON line too', async () => {
    const env = { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/nowhere', REDIS_URL: '' };
    const atTerminal = runParley({ ...env, NODE_OPTIONS: `--require ${path.join(ROOT, 'test/helpers/stdout-tty.cjs')}` });
    expect(await atTerminal.exited).toBe(1);
    const seen = atTerminal.output();
    expect(`${seen.stdout}${seen.stderr}`.match(/could not start/g)).toHaveLength(1);
    expect(seen.stderr).toMatch(/^Parley could not start: cannot use the database/);
    const collected = runParley(env);
    expect(await collected.exited).toBe(1);
    expect(collected.output().stdout).toMatch(/"level":"fatal"[^\n]*Parley could not start: cannot use the database/);
  });

  it('should exit non-zero with one clear line when the port is taken, before it makes an embedded database', async () => {
    const s = await createTestServer();
    const p = runParley({ PORT: String(s.port), LOG_LEVEL: 'silent' });
    expect(await p.exited).toBe(1);
    expect(p.output().stderr.trim()).toBe(`Parley could not start: port ${s.port} on 127.0.0.1 is taken (is Parley already running?): set PORT to a free port`);
    // Without DATABASE_URL: no data folder made and migrated for nothing (an outside probe's 65 MB).
    const dir = mkdtempSync(path.join(tmpdir(), 'parley-taken-'));
    chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user when we are root
    const embedded = runParley({ PORT: String(s.port), LOG_LEVEL: 'silent', DATABASE_URL: '', REDIS_URL: '', EMBEDDED_PG_DIR: path.join(dir, 'pg'), EMBEDDED_PG_PORT: String(await sparePorts()) });
    expect(await embedded.exited).toBe(1);
    expect(embedded.output().stderr.trim()).toBe(`Parley could not start: port ${s.port} on 127.0.0.1 is taken (is Parley already running?): set PORT to a free port`);
    expect(existsSync(path.join(dir, 'pg'))).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });

  it('should exit non-zero naming a bad variable', async () => {
    const p = runParley({ PORT: 'abc' });
    expect(await p.exited).toBe(1);
    expect(p.output().stderr.trim()).toBe("Invalid configuration: PORT must be an integer, got 'abc'");
  });

  it('should shut down on SIGTERM: sockets closed with 1001, exit 0', async () => {
    const s = await createTestServer({ NODE_ENV: 'production' }, { spawn: true });
    const p = s.process;
    const user = await signup(s.url);
    const ws = new WebSocket(s.wsUrl, 'graphql-transport-ws');
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ type: 'connection_init', payload: { token: user.token } }));
    await new Promise((r) => ws.once('message', r));
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    const started = Date.now();
    p.child.kill('SIGTERM');
    expect(await closed).toBe(1001);
    expect(await p.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('should answer a request in flight when it stops, and end idle connections at once', async () => {
    const s = await createTestServer();
    const port = Number(new URL(s.url).port);
    const body = JSON.stringify({ query: '{ __typename }' });
    const head = `POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
    /** A raw keep-alive connection: everything it received, once the server ended it. */
    const open = (first: string) => {
      let text = '';
      const socket = connect(port, '127.0.0.1', () => socket.write(first));
      socket.on('data', (d) => (text += d));
      const ended = new Promise<string>((resolve, reject) => (socket.on('end', () => resolve(text)), socket.on('error', reject)));
      return { socket, ended, text: () => text };
    };
    // One connection answered once and idle since; another whose request is half sent.
    const idle = open(head + body);
    await eventually(() => idle.text().includes('"__typename":"Query"'));
    const busy = open(head + body.slice(0, 5));
    await sleep(200);
    const stopping = s.dispose();
    expect(await idle.ended).toContain('"__typename":"Query"');
    busy.socket.write(body.slice(5));
    const answered = await busy.ended;
    expect(answered).toMatch(/^HTTP\/1\.1 200/);
    expect(answered).toContain('{"data":{"__typename":"Query"}}');
    await stopping;
  });

  it('should start an embedded PostgreSQL without DATABASE_URL and keep its data across restarts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'parley-embedded-'));
    chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user when we are root
    const env = { DATABASE_URL: '', REDIS_URL: '', EMBEDDED_PG_DIR: path.join(dir, 'pg'), EMBEDDED_PG_PORT: String(await sparePorts()) };
    try {
      const first = await createTestServer(env, { clean: false, spawn: true, captureLogs: true });
      expect(first.logs.find((l) => l.json.url)?.json.database).toMatch(/^embedded /);
      const user = await signup(first.url);
      await first.dispose();
      expect(await first.process.exited).toBe(0);

      const second = await createTestServer(env, { clean: false, spawn: true });
      const login = await ok(gql(second.url, 'mutation($u:String!,$p:String!){ login(username:$u,password:$p){ user { id } } }', { u: user.username, p: user.password }));
      expect(login.login.user.id).toBe(user.id);
      // Started twice: another port would not help, and the line says so (not "set EMBEDDED_PG_PORT").
      const twice = runParley(env);
      expect(await twice.exited).toBe(1);
      expect(twice.output().stderr.trim()).toMatch(
        new RegExp(
          `^Parley could not start: port ${env.EMBEDDED_PG_PORT} of the embedded PostgreSQL is taken, and a PostgreSQL \\(pid \\d+\\) runs on its data folder ${env.EMBEDDED_PG_DIR}: if Parley is already running here, stop it first, or give this one a data folder of its own with EMBEDDED_PG_DIR and a free port with EMBEDDED_PG_PORT \\(another port alone would not help`,
        ),
      );
      // On another port, the folder is still in use: the line names the setting that gives it one of its own.
      const elsewhere = runParley({ ...env, EMBEDDED_PG_PORT: String(await sparePorts()) });
      expect(await elsewhere.exited).toBe(1);
      expect(elsewhere.output().stderr.trim()).toBe(
        `Parley could not start: another PostgreSQL is using the data folder ${env.EMBEDDED_PG_DIR} (is Parley already running?): stop it first, or give this one a data folder of its own with EMBEDDED_PG_DIR`,
      );
      // Killed (SIGKILL: no exit handler runs), it leaves its PostgreSQL running in a group of its
      // own; the next start stops that one, and serves the same data.
      await second.kill();
      const postmaster = () => Number(readFileSync(path.join(env.EMBEDDED_PG_DIR, 'postmaster.pid'), 'utf8').split('\n')[0]);
      const left = postmaster();
      expect(() => process.kill(left, 0)).not.toThrow();
      const third = await createTestServer(env, { clean: false, spawn: true, captureLogs: true });
      expect(third.logs.some((l) => /left running/.test(l.json.msg) && l.json.postgresPid === left)).toBe(true);
      const again = await ok(gql(third.url, 'mutation($u:String!,$p:String!){ login(username:$u,password:$p){ user { id } } }', { u: user.username, p: user.password }));
      expect(again.login.user.id).toBe(user.id);
      // A hang-up (a terminal closed) stops it as Ctrl-C does, its PostgreSQL with it.
      const running = postmaster();
      third.process.child.kill('SIGHUP');
      expect(await third.process.exited).toBe(0);
      expect(() => process.kill(running, 0)).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('should leave no embedded PostgreSQL behind a Parley hung up or killed while it starts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'parley-embedded-'));
    chmodSync(dir, 0o755);
    const env = { DATABASE_URL: '', REDIS_URL: '', EMBEDDED_PG_DIR: path.join(dir, 'pg'), EMBEDDED_PG_PORT: String(await sparePorts()) };
    const postmaster = () => Number(readFileSync(path.join(env.EMBEDDED_PG_DIR, 'postmaster.pid'), 'utf8').split('\n')[0]);
    // Running: there, and not a zombie (an orphan's parent, init, may reap it late).
    const alive = (pid: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    const owner = () => JSON.parse(readFileSync(`${env.EMBEDDED_PG_DIR}.owner`, 'utf8')) as { parley: number; postgres: number };
    /**
     * Started, and signalled as soon as its PostgreSQL is (its postmaster.pid written: starting, not
     * ready yet); a signal it can handle, once it names itself that PostgreSQL's owner (its handlers
     * are on by then: under load, a stale postmaster.pid was read before they were).
     */
    const signalledWhileStarting = async (signal: NodeJS.Signals) => {
      const p = runParley(env);
      const handled = signal !== 'SIGKILL';
      await eventually(() => readFileSync(path.join(env.EMBEDDED_PG_DIR, 'postmaster.pid'), 'utf8').length > 0 && (!handled || owner().parley === p.child.pid), 60_000, 5);
      const pid = postmaster();
      const named = owner();
      p.child.kill(signal);
      return { code: await p.exited, pid, stdout: p.output().stdout, named, parley: p.child.pid! };
    };
    try {
      // Made once, so that the runs below start an existing cluster (no initdb in the way).
      const first = await createTestServer(env, { clean: false, spawn: true });
      await first.dispose();
      // Killed: its PostgreSQL outlives it, and the next start stops that one and serves.
      const killed = await signalledWhileStarting('SIGKILL');
      expect(alive(killed.pid)).toBe(true);
      // It named itself the owner before its PostgreSQL began: a kill at any point leaves it known.
      expect(killed.named.parley).toBe(killed.parley);
      const next = await createTestServer(env, { clean: false, spawn: true });
      await next.dispose();
      expect(alive(killed.pid)).toBe(false);
      // Killed after PostgreSQL began and before it recorded which one: the record names no PostgreSQL.
      const cut = await signalledWhileStarting('SIGKILL');
      writeFileSync(`${env.EMBEDDED_PG_DIR}.owner`, JSON.stringify({ parley: cut.parley }));
      const after = await createTestServer(env, { clean: false, spawn: true });
      await after.dispose();
      expect(alive(cut.pid)).toBe(false);
      // Hung up: it stops as asked once started (a migration is not cut in two), its PostgreSQL with it.
      const hungUp = await signalledWhileStarting('SIGHUP');
      expect(hungUp.code).toBe(0);
      expect(hungUp.stdout).toMatch(/"msg":"stopping once started"[\s\S]*"msg":"shutting down"[\s\S]*"msg":"stopped"/);
      await eventually(() => !alive(hungUp.pid), 10_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
