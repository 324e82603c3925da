import { Writable } from 'node:stream';
import pg from 'pg';
import { Redis } from 'ioredis';
import { loadEnv, type Env } from '../../src/config/env';
import { startServer, type ParleyServer } from '../../src/server';
import { createLogger } from '../../src/shared/logger';
import { runParley, type ParleyProcess } from './process';
import { ofWorker } from '../setup/workers';

export type Overrides = Partial<Record<keyof Env, string>>;

export interface TestServer extends ParleyServer {
  env: Env;
  /** Every line the server logged, with `captureLogs` (empty otherwise). */
  logs: LogLine[];
}

/** A server in a child process (`spawn`): what a test can reach of it from outside. */
export interface SpawnedTestServer extends Pick<TestServer, 'url' | 'wsUrl' | 'port' | 'env' | 'logs'> {
  process: ParleyProcess;
  /** SIGTERM, as an operator stops it (sockets closed with 1001); resolves once it exited. */
  dispose(): Promise<void>;
  /** SIGKILL: gone without a goodbye. */
  kill(): Promise<void>;
}

export interface TestServerOptions {
  /** Wipe the database and Redis first. @default true */
  clean?: boolean;
  /** Run the cron jobs (the presence sweep); a spawned server always does. @default false */
  jobs?: boolean;
  /** Keep every line it logs in `logs`. */
  captureLogs?: boolean;
  /** Run it as `npm start` does, in a child process (runParley): to kill it, or to test the entry point. */
  spawn?: boolean;
  /** Not disposed after each test: started in a beforeAll for a whole describe, which disposes it in its afterAll. */
  suite?: boolean;
}

/** One log line, raw (to catch duplicated keys) and parsed. */
export interface LogLine {
  raw: string;
  json: Record<string, any>;
}

/** A pino destination that keeps every line it is given. */
export function captureLines(): { lines: LogLine[]; stream: Writable } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const raw of String(chunk).split('\n').filter(Boolean)) lines.push({ raw, json: JSON.parse(raw) });
      cb();
    },
  });
  return { lines, stream };
}

const open: Set<TestServer> = new Set();

export const hasRedis = !!process.env.REDIS_URL;
/**
 * A Redis key or channel as this worker's servers name it on the wire: with its REDIS_KEY_PREFIX
 * (set per jest worker, test/setup/workers.ts). For a test that talks to Redis itself.
 */
export const redisName = (name: string): string => `${process.env.REDIS_KEY_PREFIX ?? ''}${name}`;
/** Whether a channel on the shared Redis is this worker's (Redis shares channels across its databases). */
export const ownChannel = (channel: string): boolean => ofWorker(channel, Number(process.env.JEST_WORKER_ID ?? 1), redisName(''));
/** `describe` for suites that need Redis: says clearly that they were skipped without it. */
export const describeRedis: jest.Describe = hasRedis ? describe : describe.skip;
/** `it` for one test of a suite that needs Redis (two instances that must hear each other). */
export const itRedis: jest.It = hasRedis ? it : it.skip;

/** The variables a test server runs with, in this process or a child. */
function testVars(overrides: Overrides): Record<string, string | undefined> {
  const vars: Record<string, string | undefined> = {
    // Suites sign many users up from one address and send in bursts; test/limits.test.ts and
    // test/hardening-auth.test.ts set real rates.
    RATE_LIMIT_SIGNUP: '1000000/1h',
    RATE_LIMIT_LOGIN: '1000000/1h',
    RATE_LIMIT_SEND_MESSAGE: '1000000/1h',
    RATE_LIMIT_EDIT: '1000000/1h',
    RATE_LIMIT_REACTION: '1000000/1h',
    RATE_LIMIT_SEARCH: '1000000/1h',
    RATE_LIMIT_TYPING: '1000000/1h',
    RATE_LIMIT_WS_MESSAGES: '1000000/1h',
    RATE_LIMIT_CREATE_GROUP: '1000000/1h',
    RATE_LIMIT_FRIEND_REQUEST: '1000000/1h',
    RATE_LIMIT_CREATE_PROJECT: '1000000/1h',
    RATE_LIMIT_PROJECT_ADD: '1000000/1h',
    ...process.env,
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    LOG_PRETTY: 'false',
    ...overrides,
  };
  // Thousands of signups at 1 ms of a core each instead of 25; a server in production mode hashes
  // as production does (the setting refuses it there), and auth.test checks the default.
  return { PASSWORD_HASH_COST: vars.NODE_ENV === 'test' ? 'minimal' : undefined, ...vars };
}

/** Empties every table and the Redis keyspace: each test starts from nothing. */
export async function resetState(env: Env): Promise<void> {
  const db = new URL(env.DATABASE_URL!).pathname.slice(1);
  if (!/test/i.test(db)) throw new Error(`refusing to wipe database '${db}': test databases must have 'test' in their name`);
  // Both at once: a reset is in front of most tests.
  await Promise.all([truncateAll(env.DATABASE_URL!), env.REDIS_URL ? flushRedis(env.REDIS_URL) : undefined]);
}

/**
 * The reset's connection, kept for the suite: starting a session costs PostgreSQL ~20 ms of CPU,
 * and a new one then loads every table's catalog entries to truncate them (a reset
 * was ~115 ms of machine CPU with a session each, against ~40 on a kept one).
 */
let resetClient: { url: string; client: Promise<pg.Client> } | undefined;

function resetConnection(databaseUrl: string): Promise<pg.Client> {
  if (resetClient?.url !== databaseUrl) {
    void resetClient?.client.then((c) => c.end()).catch(() => undefined);
    const client = new pg.Client({ connectionString: databaseUrl });
    // A test that stops PostgreSQL ends this session under it: the next reset opens another.
    client.on('error', () => undefined);
    resetClient = { url: databaseUrl, client: client.connect().then(() => client) };
  }
  return resetClient.client;
}

afterAll(async () => {
  const kept = resetClient;
  resetClient = undefined;
  await kept?.client.then((c) => c.end()).catch(() => undefined);
});

/**
 * Truncates the tables that hold rows, all in one statement: TRUNCATE costs per table (new files
 * for it and its indexes) even when it is empty, and a test fills a few of the 24.
 */
async function truncateAll(databaseUrl: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const client = await resetConnection(databaseUrl);
      const { rows: tables } = await client.query<{ tablename: string }>(
        "select tablename from pg_tables where schemaname = 'public' and tablename not like 'mikro_orm_%'",
      );
      if (!tables.length) return;
      const quoted = tables.map((t) => `"${t.tablename}"`);
      const { rows } = await client.query<{ t: string }>(quoted.map((q) => `select '${q.replace(/'/g, "''")}' as t where exists (select 1 from ${q})`).join(' union all '));
      if (rows.length) await client.query(`truncate ${rows.map((r) => r.t).join(', ')} cascade`);
      return;
    } catch (e) {
      // The kept session is gone (PostgreSQL restarted under a test): once more on a new one.
      resetClient = undefined;
      if (attempt > 1) throw e;
    }
  }
}

async function flushRedis(redisUrl: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true });
  await redis.connect();
  await redis.flushdb();
  await redis.quit();
}

/**
 * Starts a server on port 0, in this process, or with `spawn` in a child process as `npm start`
 * runs it (helpers/process.ts). The first server of a test wipes the database and Redis; pass
 * `{ clean: false }` for further instances sharing them. `captureLogs` keeps every line it logs in
 * `logs` (at LOG_LEVEL, `info` unless overridden). Disposed after each test.
 */
export async function createTestServer(overrides: Overrides, opts: TestServerOptions & { spawn: true }): Promise<SpawnedTestServer>;
export async function createTestServer(overrides?: Overrides, opts?: TestServerOptions & { spawn?: false }): Promise<TestServer>;
export async function createTestServer(overrides: Overrides = {}, opts: TestServerOptions = {}): Promise<TestServer | SpawnedTestServer> {
  // A child says where it listens in an info line.
  const vars = testVars(opts.captureLogs || opts.spawn ? { LOG_LEVEL: 'info', ...overrides } : overrides);
  const env = loadEnv(vars);
  if (opts.clean !== false) await resetState(env);
  if (opts.spawn) return spawnServer(vars, env, opts.captureLogs ?? false);
  const { lines, stream } = captureLines();
  const server = await startServer({ env, logger: createLogger(env, {}, opts.captureLogs ? stream : undefined), jobs: opts.jobs ?? false });
  const ts = Object.assign(server, { env, logs: lines });
  if (!opts.suite) open.add(ts);
  const dispose = server.dispose;
  ts.dispose = async () => {
    open.delete(ts);
    await dispose();
  };
  return ts;
}

async function spawnServer(vars: Record<string, string | undefined>, env: Env, captureLogs: boolean): Promise<SpawnedTestServer> {
  const child = runParley(vars);
  const logs: LogLine[] = [];
  if (captureLogs) {
    let partial = '';
    child.child.stdout!.on('data', (d) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop()!;
      for (const raw of lines.filter(Boolean)) logs.push({ raw, json: JSON.parse(raw) });
    });
  }
  const url = (await child.listening).replace('localhost', '127.0.0.1');
  const stop = async (signal: NodeJS.Signals) => {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill(signal);
    await child.exited;
  };
  // Stopped after the test by runParley's own clean-up.
  return { url, wsUrl: url.replace('http', 'ws'), port: Number(new URL(url).port), env, logs, process: child, dispose: () => stop('SIGTERM'), kill: () => stop('SIGKILL') };
}

afterEach(async () => {
  await Promise.all([...open].map((s) => s.dispose()));
});
