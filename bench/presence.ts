/**
 * Presence under load, in one run on one machine.
 *
 *   DATABASE_URL=postgres://…/my_bench_db REDIS_URL=redis://127.0.0.1:MYPORT npm run bench:presence
 *
 * 1. Heartbeats through the API. One Parley instance (child process, the real startServer, PostgreSQL
 *    and Redis) and one load client (this process). Over graphql-ws: S sockets of U users, each
 *    keeping W `heartbeat` mutations in flight (graphql-transport-ws `subscribe` of the mutation, the
 *    next one sent as each completes). Over HTTP: C keep-alive connections POSTing /graphql.
 *    The same client and load run against a bare server (child process) that answers the same JSON
 *    round trip without GraphQL: the floor on this machine. PostgreSQL writes during the Parley runs
 *    are read from pg_stat_database (tuples inserted + updated + deleted, and commits); the
 *    statistics reach that view up to ~10 s late, so the window is read after a quiet wait.
 *    Target: >= 10,000 heartbeats/s, and 0 PostgreSQL writes/s while they run.
 * 2. The sweep. 100,000 users (rows in PostgreSQL and stale entries in the presence store) are
 *    expired by one sweep (PresenceService.sweep, the code the cron job and the CLI run), while a
 *    Redis subscriber counts every presenceChanged published. Twice: 'steady state' (PostgreSQL
 *    already holds their last activity, as the interval flush leaves it) and 'never flushed' (every
 *    lastSeenAt still to write). Baseline: the bare Redis work of announcing them (one pipeline of
 *    100,000 PUBLISH from this process) in the same run.
 *    Target: every user OFFLINE and announced in under 2 s, each transition published exactly once.
 *
 * Settings (environment):
 * - DATABASE_URL   required; its name must contain 'bench' or 'test'. Users are added (and the
 *                  100,000 of the sweep removed again).
 * - REDIS_URL      required; its keyspace is FLUSHED.
 * - BENCH_SECONDS  measured seconds per heartbeat run. @default 8
 * - BENCH_USERS    U. @default 100
 * - BENCH_SOCKETS  S. @default 400
 * - BENCH_WINDOW   W, heartbeats in flight per socket. @default 8
 * - BENCH_HTTP_CONNECTIONS  C. @default 64
 * - BENCH_SWEEP_USERS  @default 100000
 * - BENCH_SKIP     'sweep' to run the heartbeats only, 'heartbeats' the sweep only.
 * - BENCH_SWEEP_PER_USER  '1': the sweep publishes each transition on its user's own channel (one
 *                  PUBLISH each, counted through a pattern subscription), as contacts mode could;
 *                  by default it announces them in batches on the topic-wide channel, as both modes do.
 * - BENCH_PROFILE  a directory: the Parley child writes a CPU profile (--cpu-prof) there on exit.
 *
 * The per-socket message rate limit is raised for the Parley child (RATE_LIMIT_WS_MESSAGES): the
 * bench measures the presence path, not the abuse limiter. Exits 1 when a heartbeat fails or a
 * transition is missing or duplicated; a missed target is reported, not an exit code.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import WebSocket, { WebSocketServer } from 'ws';
import { loadEnv } from '../src/config/env';
import { openDatabase } from '../src/core/database';
import { entities } from '../src/modules/entities';
import { PresenceService } from '../src/modules/presence/presence.service';
import { RedisPresenceStore } from '../src/modules/presence/presence.store';
import { startServer } from '../src/server';
import { createLogger } from '../src/shared/logger';
import { SWEEP_BATCH_FIELD, createPubSub } from '../src/shared/pubsub/pubsub';
import { Topic } from '../src/shared/pubsub/topics';
import { connectRedis } from '../src/shared/redis';
import { conversationRoutes } from '../src/modules/conversation/conversation.keys';
import { startChild, type FromChild } from './harness';
import { presenceStoreChannel } from '../src/modules/presence/presence.routing';
import { out, positive, query, required } from './util';

const fmt = (n: number, d = 0) => n.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const SECONDS = positive('BENCH_SECONDS', 8);
const U = positive('BENCH_USERS', 100);
const S = positive('BENCH_SOCKETS', 400);
const W = positive('BENCH_WINDOW', 8);
const C = positive('BENCH_HTTP_CONNECTIONS', 64);
const SWEEP_USERS = positive('BENCH_SWEEP_USERS', 100_000);
const TARGET_PER_SECOND = 10_000;
const TARGET_SWEEP_MS = 2000;
const HEARTBEAT = 'mutation { heartbeat { status lastSeenAt } }';
const PRESENCE_TIMEOUT_S = 300;

// ================= child processes =================


/** The real server, as `npm start` runs it. */
async function runParley(): Promise<void> {
  const server = await startServer({ env: loadEnv(process.env) });
  process.on('message', async (m: { type: string }) => {
    if (m.type === 'stop') {
      await server.dispose();
      process.exit(0);
    }
  });
  process.send!({ type: 'ready', port: server.port } satisfies FromChild);
}

/** The same JSON round trips with no GraphQL, no auth and no store: the floor. */
async function runBare(): Promise<void> {
  const answer = () => ({ data: { heartbeat: { status: 'ONLINE', lastSeenAt: new Date().toISOString() } } });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const body = JSON.stringify(answer());
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  const wss = new WebSocketServer({ server, path: '/graphql' });
  wss.on('connection', (socket) => {
    socket.on('message', (data) => {
      const m = JSON.parse(String(data)) as { id?: string; type: string };
      if (m.type === 'connection_init') socket.send('{"type":"connection_ack"}');
      else if (m.type === 'subscribe') {
        socket.send(JSON.stringify({ id: m.id, type: 'next', payload: answer() }));
        socket.send(JSON.stringify({ id: m.id, type: 'complete' }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.on('message', (m: { type: string }) => m.type === 'stop' && process.exit(0));
  process.send!({ type: 'ready', port: (server.address() as AddressInfo).port } satisfies FromChild);
}



// ================= load =================

const agent = new http.Agent({ keepAlive: true, maxSockets: C });

function post(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<any> {
  const body = JSON.stringify({ query, variables });
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(token ? { authorization: `Bearer ${token}` } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface Load {
  done: number;
  failed: number;
  seconds: number;
  perSecond: number;
}
/** A run not made (BENCH_SKIP). */
const none: Load = { done: 0, failed: 0, seconds: 0, perSecond: 0 };

/** S authenticated graphql-ws sockets, kept open across runs (closing them would be presence transitions). */
async function openSockets(wsUrl: string, tokens: string[]): Promise<WebSocket[]> {
  return Promise.all(
    Array.from({ length: S }, (_, i) => {
      const ws = new WebSocket(wsUrl, 'graphql-transport-ws');
      return new Promise<WebSocket>((resolve, reject) => {
        ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${tokens[i % tokens.length]}` } })));
        ws.once('message', (d) => (JSON.parse(String(d)).type === 'connection_ack' ? resolve(ws) : reject(new Error(String(d)))));
        ws.once('error', reject);
      });
    }),
  );
}

/** W heartbeats in flight on each socket, for `seconds`. */
async function wsLoad(sockets: WebSocket[], seconds: number): Promise<Load> {
  let done = 0;
  let failed = 0;
  let running = true;
  let seq = 0;
  const frame = (id: number) => `{"id":"${id}","type":"subscribe","payload":{"query":"${HEARTBEAT}"}}`;
  const started = performance.now();
  for (const ws of sockets) {
    ws.removeAllListeners('message');
    ws.on('message', (d) => {
      const text = String(d);
      if (text.includes('"type":"complete"')) {
        done++;
        if (running) ws.send(frame(++seq));
      } else if (text.includes('"errors"') || text.includes('"type":"error"')) {
        failed++;
        if (failed === 1) out(`  first failure: ${text.slice(0, 300)}`);
      }
    });
    for (let i = 0; i < W; i++) ws.send(frame(++seq));
  }
  await sleep(seconds * 1000);
  running = false;
  const elapsed = (performance.now() - started) / 1000;
  const counted = done;
  await sleep(300);
  return { done: counted, failed, seconds: elapsed, perSecond: counted / elapsed };
}

/** C keep-alive connections, one request in flight on each, for `seconds`. */
async function httpLoad(url: string, tokens: string[], seconds: number): Promise<Load> {
  let done = 0;
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: C }, async (_, i) => {
      while (performance.now() < end) {
        const r = await post(url, HEARTBEAT, {}, tokens[i % tokens.length]).catch((e: Error) => ({ errors: [e.message] }));
        if (r.errors || r.data?.heartbeat?.status !== 'ONLINE') {
          if (++failed === 1) out(`  first failure: ${JSON.stringify(r).slice(0, 300)}`);
        } else done++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  return { done, failed, seconds: elapsed, perSecond: done / elapsed };
}

// ================= PostgreSQL =================

interface DbCounters {
  writes: number;
  commits: number;
}

async function dbCounters(url: string): Promise<DbCounters> {
  const [r] = await query(
    url,
    'select (tup_inserted + tup_updated + tup_deleted)::bigint as writes, xact_commit::bigint as commits from pg_stat_database where datname = current_database()',
  );
  return { writes: Number(r.writes), commits: Number(r.commits) };
}

// ================= phases =================

async function heartbeats(DATABASE_URL: string, REDIS_URL: string): Promise<{ ws: Load; wsBare: Load; http: Load; httpBare: Load; writes: number; commits: number }> {
  const parley = await startChild(__filename, 'parley', {
    DATABASE_URL,
    REDIS_URL,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    LOG_PRETTY: 'false',
    PORT: '0',
    HOST: '127.0.0.1',
    PRESENCE_PERSIST_INTERVAL: '60s',
    RATE_LIMIT_SIGNUP: '1000000/1h',
    RATE_LIMIT_WS_MESSAGES: '1000000000/1h',
    WS_MAX_SOCKETS_PER_USER: String(Math.ceil(S / U) + 1),
    // All S sockets connect at once, from one address.
    WS_MAX_PENDING_PER_IP: String(S + 1),
  });
  const tokens: string[] = [];
  const tag = randomUUID().slice(0, 8);
  for (let i = 0; i < U; i++) {
    const r = await post(parley.url, 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { token } }', { u: `bp_${tag}_${i}`, p: 'bench-presence-password' });
    if (r.errors) throw new Error(`signup failed: ${JSON.stringify(r.errors)}`);
    tokens.push(r.data.signup.token);
  }
  out(`signed up ${U} users; warming up (the PostgreSQL statistics of the signups settle meanwhile)`);
  // Warm-up doubles as the quiet wait: signups' writes reach pg_stat_database within ~10 s.
  const sockets = await openSockets(parley.wsUrl, tokens);
  await wsLoad(sockets, 4);
  await httpLoad(parley.url, tokens, 2);
  await sleep(6000);
  const before = await dbCounters(DATABASE_URL);
  const ws = await wsLoad(sockets, SECONDS);
  const httpRun = await httpLoad(parley.url, tokens, SECONDS);
  const measured = ws.seconds + httpRun.seconds;
  // Let every backend's statistics land before reading again; nothing else uses this database.
  await sleep(11_000);
  const after = await dbCounters(DATABASE_URL);
  for (const socket of sockets) socket.terminate();
  await parley.stop();

  const bare = await startChild(__filename, 'bare');
  const bareSockets = await openSockets(bare.wsUrl, tokens);
  await wsLoad(bareSockets, 2);
  const wsBare = await wsLoad(bareSockets, SECONDS);
  const httpBare = await httpLoad(bare.url, tokens, SECONDS);
  for (const socket of bareSockets) socket.terminate();
  await bare.stop();
  return { ws, wsBare, http: httpRun, httpBare, writes: (after.writes - before.writes) / measured, commits: (after.commits - before.commits) / measured };
}

interface SweepResult {
  label: string;
  /** sweep() from call to return: removal, events and lastSeenAt written. */
  ms: number;
  /** From the call to the last OFFLINE event received by the subscriber. */
  deliveredMs: number;
  expired: number;
  published: number;
  duplicates: number;
  missing: number;
}

/**
 * Two runs over the same 100,000 users: 'steady state', where PostgreSQL already holds each user's
 * last activity (what the lastSeenAt interval flush leaves), and 'never flushed', where every row
 * still has to be written (an instance that crashed before its first flush).
 */
async function sweep(DATABASE_URL: string, REDIS_URL: string): Promise<{ runs: SweepResult[]; baselineMs: number }> {
  const env = loadEnv({ ...process.env, DATABASE_URL, REDIS_URL, NODE_ENV: 'production', LOG_LEVEL: 'warn', LOG_PRETTY: 'false', PRESENCE_TIMEOUT: String(PRESENCE_TIMEOUT_S) });
  const logger = createLogger(env);
  const database = await openDatabase(env, logger, { entities });
  const redis = connectRedis(env, logger)!;
  await new Promise((r) => (redis.client.status === 'ready' ? r(null) : redis.client.once('ready', r)));
  const perUser = process.env.BENCH_SWEEP_PER_USER === '1';
  const pubsub = createPubSub(redis, logger, conversationRoutes);
  const tag = randomUUID().slice(0, 8);

  // Seeding, not measured: rows in PostgreSQL whose last activity was 6 minutes ago, 1 ms apart.
  const base = Date.now() - (PRESENCE_TIMEOUT_S + 60) * 1000;
  const rows = await query<{ id: string; ms: string }>(
    DATABASE_URL,
    `insert into users (id, username, password_hash, created_at, last_seen_at)
     select gen_random_uuid(), 'bs_${tag}_' || i, '!', now(), to_timestamp(($2::bigint - i) / 1000.0) from generate_series(1, $1) i
     returning id, (extract(epoch from last_seen_at) * 1000)::bigint as ms`,
    [SWEEP_USERS, base],
  );
  const ids = rows.map((r) => r.id);
  const seedStore = async () => {
    for (let i = 0; i < rows.length; i += 10_000) {
      const chunk = rows.slice(i, i + 10_000);
      await redis.client
        .multi()
        .zadd('{presence}:active', ...chunk.flatMap((r) => [Number(r.ms), r.id]))
        .zadd('{presence}:online', ...chunk.flatMap((r) => [0, r.id]))
        .exec();
    }
  };

  const counter = new Redis(REDIS_URL);
  let counts = new Map<string, number>();
  let published = 0;
  let lastAt = 0;
  type Transition = { userId: string; status: string };
  if (perUser) {
    // Contacts mode: one envelope per user on their own presence channel.
    await counter.psubscribe(`${presenceStoreChannel('contacts', false, true)!.name}*`);
    counter.on('pmessage', (_p, _ch, text: string) => {
      const p = (JSON.parse(text) as { payload: Transition }).payload;
      if (p.status !== 'OFFLINE') return;
      counts.set(p.userId, (counts.get(p.userId) ?? 0) + 1);
      published++;
      lastAt = performance.now();
    });
  } else await counter.subscribe(Topic.PresenceChanged);
  counter.on('message', (_ch, text: string) => {
    const m = JSON.parse(text) as Transition | { [SWEEP_BATCH_FIELD]: Transition[] };
    // The sweep announces many transitions to a message; each is counted.
    for (const p of SWEEP_BATCH_FIELD in m ? m[SWEEP_BATCH_FIELD] : [m]) {
      if (p.status !== 'OFFLINE') continue;
      counts.set(p.userId, (counts.get(p.userId) ?? 0) + 1);
      published++;
    }
    lastAt = performance.now();
  });

  // Baseline: the bare Redis work of announcing the same number of transitions, one pipeline.
  const payload = (id: string) => JSON.stringify({ userId: id, status: 'OFFLINE', lastSeenAt: new Date().toISOString() });
  const b0 = performance.now();
  const pipe = redis.publisher.pipeline();
  for (const id of ids) pipe.publish('bench.presence.baseline', payload(id));
  await pipe.exec();
  const baselineMs = performance.now() - b0;

  const presence = new PresenceService({ store: new RedisPresenceStore(redis.client), pubsub, orm: database.orm, env, logger, instanceId: `bench-${tag}`, storeChannel: presenceStoreChannel(perUser ? 'contacts' : 'everyone', false, perUser) });
  const runs: SweepResult[] = [];
  for (const label of ['steady state', 'never flushed']) {
    if (label === 'never flushed') await query(DATABASE_URL, `update users set last_seen_at = null where username like 'bs_${tag}_%'`);
    await query(DATABASE_URL, 'vacuum analyze users');
    await seedStore();
    counts = new Map();
    published = 0;
    const t0 = performance.now();
    const run = await presence.sweep();
    const ms = performance.now() - t0;
    const deadline = Date.now() + 15_000;
    while (published < ids.length && Date.now() < deadline) await sleep(20);
    await sleep(500);
    let duplicates = 0;
    let missing = 0;
    for (const id of ids) {
      const n = counts.get(id) ?? 0;
      if (n === 0) missing++;
      if (n > 1) duplicates += n - 1;
    }
    runs.push({ label, ms, deliveredMs: lastAt - t0, expired: run.expired, published, duplicates, missing });
  }
  const [persisted] = await query(DATABASE_URL, `select count(*)::int as n from users where username like 'bs_${tag}_%' and last_seen_at is not null`);
  out(`  lastSeenAt in PostgreSQL after the runs: ${fmt(persisted.n)} of ${fmt(ids.length)} users`);
  await query(DATABASE_URL, `delete from users where username like 'bs_${tag}_%'`);
  counter.disconnect();
  await pubsub.dispose();
  await redis.dispose();
  await database.dispose();
  return { runs, baselineMs };
}

async function main(): Promise<void> {
  const DATABASE_URL = required('DATABASE_URL', 'a database whose name contains bench or test');
  const REDIS_URL = required('REDIS_URL', 'a Redis of its own: it is flushed');
  const name = decodeURIComponent(new URL(DATABASE_URL).pathname.slice(1));
  if (!/bench|test/i.test(name)) throw new Error(`refusing to use database '${name}': its name must contain 'bench' or 'test'`);
  const flush = new Redis(REDIS_URL);
  await flush.flushdb();
  flush.disconnect();
  out(`bench:presence  U=${U} users, S=${S} sockets x W=${W} in flight, C=${C} HTTP connections, ${SECONDS} s per run, sweep of ${fmt(SWEEP_USERS)}; ${new Date().toISOString()}`);

  const hb = process.env.BENCH_SKIP === 'heartbeats' ? { ws: none, wsBare: none, http: none, httpBare: none, writes: 0, commits: 0 } : await heartbeats(DATABASE_URL, REDIS_URL);
  out();
  out(`${'heartbeats'.padEnd(22)}${'done'.padStart(10)}${'failed'.padStart(8)}${'per s'.padStart(10)}${'x bare'.padStart(8)}`);
  const row = (label: string, r: Load, base?: Load) =>
    out(`${label.padEnd(22)}${fmt(r.done).padStart(10)}${fmt(r.failed).padStart(8)}${fmt(r.perSecond).padStart(10)}${(base ? (r.perSecond / base.perSecond).toFixed(2) : '1.00').padStart(8)}`);
  row('bare ws', hb.wsBare);
  row('parley graphql-ws', hb.ws, hb.wsBare);
  row('bare http', hb.httpBare);
  row('parley http', hb.http, hb.httpBare);
  out(`PostgreSQL during the Parley runs: ${fmt(hb.writes, 2)} tuple writes/s, ${fmt(hb.commits, 2)} commits/s (reads included)`);

  out();
  out(`sweep of ${fmt(SWEEP_USERS)} stale users`);
  const sw = process.env.BENCH_SKIP === 'sweep' ? { runs: [], baselineMs: 1 } : await sweep(DATABASE_URL, REDIS_URL);
  out(`${'  run'.padEnd(18)}${'expired'.padStart(10)}${'events'.padStart(10)}${'missing'.padStart(9)}${'dup'.padStart(6)}${'last event ms'.padStart(15)}${'sweep() ms'.padStart(12)}${'x baseline'.padStart(12)}`);
  for (const r of sw.runs) {
    out(
      `${`  ${r.label}`.padEnd(18)}${fmt(r.expired).padStart(10)}${fmt(r.published).padStart(10)}${fmt(r.missing).padStart(9)}${fmt(r.duplicates).padStart(6)}${fmt(r.deliveredMs).padStart(15)}${fmt(r.ms).padStart(12)}${(r.deliveredMs / sw.baselineMs).toFixed(2).padStart(12)}`,
    );
  }
  out(`  baseline: one pipeline of ${fmt(SWEEP_USERS)} PUBLISH from this process, ${fmt(sw.baselineMs)} ms ('x baseline' compares the last event)`);

  out();
  const best = Math.max(hb.ws.perSecond, hb.http.perSecond);
  out(`heartbeats/s: ${best >= TARGET_PER_SECOND ? 'meets' : 'MISSES'} ${fmt(TARGET_PER_SECOND)} (best transport ${fmt(best)}/s); PostgreSQL writes/s ${hb.writes === 0 ? 'is 0' : `is ${fmt(hb.writes, 2)}, NOT 0`}`);
  for (const r of sw.runs) {
    out(
      `sweep (${r.label}): every user OFFLINE and announced in ${fmt(r.deliveredMs)} ms, ${r.deliveredMs < TARGET_SWEEP_MS ? 'meets' : 'MISSES'} < ${fmt(TARGET_SWEEP_MS)} ms` +
        ` (sweep() returned after ${fmt(r.ms)} ms, lastSeenAt included); ${r.missing || r.duplicates || r.expired !== SWEEP_USERS ? 'transitions MISSING or DUPLICATED' : 'each transition published once'}`,
    );
  }
  agent.destroy();
  const failed = hb.ws.failed + hb.http.failed > 0 || sw.runs.some((r) => r.missing > 0 || r.duplicates > 0 || r.expired !== SWEEP_USERS);
  process.exit(failed ? 1 : 0);
}

const role = process.argv[2];
const entry = role === 'parley' ? runParley : role === 'bare' ? runBare : main;
entry().catch((e) => {
  process.stderr.write(`bench:presence${role ? ` (${role})` : ''}: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
