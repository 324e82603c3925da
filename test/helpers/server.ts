import { Writable } from 'node:stream';
import pg from 'pg';
import { Redis } from 'ioredis';
import { loadEnv, type Env } from '../../src/config/env';
import { startServer, type ParleyServer } from '../../src/server';
import { createLogger } from '../../src/shared/logger';

export type Overrides = Partial<Record<keyof Env, string>>;

export interface TestServer extends ParleyServer {
  env: Env;
  /** Every line the server logged, with `captureLogs` (empty otherwise). */
  logs: LogLine[];
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
/** `describe` for suites that need Redis: says clearly that they were skipped without it. */
export const describeRedis: jest.Describe = hasRedis ? describe : describe.skip;

function testEnv(overrides: Overrides): Env {
  return loadEnv({
    // Suites sign many users up from one address and send in bursts; test/limits.test.ts and
    // test/hardening-auth.test.ts set real rates.
    RATE_LIMIT_SIGNUP: '1000000/1h',
    RATE_LIMIT_LOGIN: '1000000/1h',
    RATE_LIMIT_SEND_MESSAGE: '1000000/1h',
    RATE_LIMIT_EDIT: '1000000/1h',
    RATE_LIMIT_REACTION: '1000000/1h',
    RATE_LIMIT_TYPING: '1000000/1h',
    RATE_LIMIT_WS_MESSAGES: '1000000/1h',
    RATE_LIMIT_CREATE_GROUP: '1000000/1h',
    RATE_LIMIT_FRIEND_REQUEST: '1000000/1h',
    ...process.env,
    NODE_ENV: 'test',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    LOG_PRETTY: 'false',
    ...overrides,
  });
}

/** Empties every table and the Redis keyspace: each test starts from nothing. */
export async function resetState(env: Env): Promise<void> {
  const db = new URL(env.DATABASE_URL!).pathname.slice(1);
  if (!/test/i.test(db)) throw new Error(`refusing to wipe database '${db}': test databases must have 'test' in their name`);
  const client = new pg.Client({ connectionString: env.DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ tablename: string }>(
      "select tablename from pg_tables where schemaname = 'public' and tablename not like 'mikro_orm_%'",
    );
    if (rows.length) await client.query(`truncate ${rows.map((r) => `"${r.tablename}"`).join(', ')} cascade`);
  } finally {
    await client.end();
  }
  if (env.REDIS_URL) {
    const redis = new Redis(env.REDIS_URL, { lazyConnect: true });
    await redis.connect();
    await redis.flushdb();
    await redis.quit();
  }
}

/**
 * Starts a server on port 0, in this process. The first server of a test wipes the database and
 * Redis; pass `{ clean: false }` for further instances sharing them. `captureLogs` keeps every line
 * it logs in `logs` (at LOG_LEVEL, `info` unless overridden). Disposed after each test.
 * A server in a child process, as `npm start` runs it: `runParley` (helpers/process.ts).
 */
export async function createTestServer(overrides: Overrides = {}, opts: { clean?: boolean; jobs?: boolean; captureLogs?: boolean } = {}): Promise<TestServer> {
  const env = testEnv(opts.captureLogs ? { LOG_LEVEL: 'info', ...overrides } : overrides);
  if (opts.clean !== false) await resetState(env);
  const { lines, stream } = captureLines();
  const server = await startServer({ env, logger: createLogger(env, {}, opts.captureLogs ? stream : undefined), jobs: opts.jobs ?? false });
  const ts = Object.assign(server, { env, logs: lines });
  open.add(ts);
  const dispose = server.dispose;
  ts.dispose = async () => {
    open.delete(ts);
    await dispose();
  };
  return ts;
}

afterEach(async () => {
  await Promise.all([...open].map((s) => s.dispose()));
});
