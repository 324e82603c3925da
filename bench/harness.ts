/**
 * What the benches that run Parley in a child process share: the child (a real startServer,
 * configured by the environment the parent gives it), a keep-alive HTTP client, a bare
 * graphql-transport-ws client, and wiping the bench database and Redis.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import type * as EnvModule from '../src/config/env';
import type * as ServerModule from '../src/server';
import { ensureDatabase } from './util';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type ToChild = { type: 'rss' } | { type: 'cpu' } | { type: 'stop' };
export type FromChild = { type: 'ready'; port: number } | { type: 'rss'; rss: number } | { type: 'cpu'; user: number; system: number };

/** A child's answer to its parent's `rss` and `cpu` questions (`stop` is each child's own). */
export async function answer(m: ToChild): Promise<void> {
  if (m.type === 'rss') process.send!({ type: 'rss', rss: await rssAfterGc() } satisfies FromChild);
  if (m.type === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send!({ type: 'cpu', user: user / 1000, system: system / 1000 } satisfies FromChild);
  }
}

export async function rssAfterGc(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await sleep(50);
  }
  return process.memoryUsage().rss;
}

/**
 * The V8 flags `npm start` gives Parley (package.json), read from its start script so that the
 * two can't drift: a bench measures Parley as it is deployed. Every child gets them, the baselines
 * too, so a ratio never credits Parley with a flag the baseline lacked.
 */
export const NODE_FLAGS: string[] = (() => {
  const start = (JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const flags = /\bnode((?:\s+--[^\s]+)*)\s+dist\//.exec(start);
  if (!flags) throw new Error(`package.json's start script does not run "node [--flags] dist/...": ${start}`);
  return flags[1].split(/\s+/).filter(Boolean);
})();

/** A Parley instance in this (child) process, configured by the parent's environment. */
export async function runParley(): Promise<void> {
  // Production as a deployment runs it: the libraries read NODE_ENV from the process (graphql-js
  // picks its production instanceOf when it loads), not from Parley's configuration.
  process.env.NODE_ENV = 'production';
  // Loaded here only, so a bare server's process holds none of Parley's code.
  const { loadEnv } = require('../src/config/env') as typeof EnvModule;
  const { startServer } = require('../src/server') as typeof ServerModule;
  const env = loadEnv({ ...process.env, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error', LOG_PRETTY: 'false' });
  const server = await startServer({ env, jobs: false });
  process.on('message', async (m: ToChild) => {
    await answer(m);
    if (m.type === 'stop') {
      await server.dispose();
      process.exit(0);
    }
  });
  process.send!({ type: 'ready', port: server.port } satisfies FromChild);
}

export interface Child {
  /** The child's process id (for /proc). */
  pid: number;
  port: number;
  url: string;
  wsUrl: string;
  rss(): Promise<number>;
  /** CPU time the child has spent so far, in ms: in its own code (user) and in the kernel for it (system). */
  cpu(): Promise<{ user: number; system: number }>;
  stop(): Promise<void>;
}

/**
 * Runs `script` with `role` as its argument in a child process (--expose-gc); resolves once it
 * listens, with NODE_FLAGS. BENCH_PROFILE=<dir>: the 'parley' child writes a CPU profile there on exit.
 * BENCH_NODE_FLAGS: more flags for every child (`--perf-basic-prof` for `perf record`, say).
 */
export function startChild(script: string, role: string, env: Record<string, string> = {}): Promise<Child> {
  const profile = role === 'parley' && process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const proc: ChildProcess = fork(script, [role], {
    execArgv: ['--expose-gc', ...NODE_FLAGS, '-r', '@swc-node/register', ...profile, ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`${role} server exited with ${code} before it was ready`)));
    proc.once('message', (m: FromChild) => {
      if (m.type !== 'ready') return reject(new Error(`unexpected ${m.type}`));
      proc.removeAllListeners('exit');
      const ask = <T>(type: 'rss' | 'cpu', answer: (a: FromChild) => T) =>
        new Promise<T>((r) => {
          proc.once('message', (a: FromChild) => r(answer(a)));
          proc.send({ type } satisfies ToChild);
        });
      resolve({
        pid: proc.pid!,
        port: m.port,
        url: `http://127.0.0.1:${m.port}/graphql`,
        wsUrl: `ws://127.0.0.1:${m.port}/graphql`,
        rss: () => ask('rss', (a) => (a.type === 'rss' ? a.rss : NaN)),
        cpu: () => ask('cpu', (a) => (a.type === 'cpu' ? { user: a.user, system: a.system } : { user: NaN, system: NaN })),
        stop: () =>
          new Promise<void>((r) => {
            const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
            proc.once('exit', () => (clearTimeout(timer), r()));
            proc.send({ type: 'stop' } satisfies ToChild);
          }),
      });
    });
  });
}

export const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One GraphQL request over the keep-alive agent; its data, or a thrown error. */
export function post(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<any> {
  const body = JSON.stringify({ query, variables });
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          if (parsed.errors) reject(new Error(`GraphQL errors: ${JSON.stringify(parsed.errors)}`));
          else resolve(parsed.data);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Empties every table of the bench database (whose name must contain 'bench' or 'test') and flushes Redis. */
export async function resetState(databaseUrl: string, redisUrl: string): Promise<void> {
  await ensureDatabase(databaseUrl, /bench|test/i, 'empty');
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rows } = await db.query<{ tablename: string }>("select tablename from pg_tables where schemaname = 'public' and tablename not like 'mikro_orm_%'");
    if (rows.length) await db.query(`truncate ${rows.map((r) => `"${r.tablename}"`).join(', ')} cascade`);
  } finally {
    await db.end();
  }
  const redis = new Redis(redisUrl);
  await redis.flushdb();
  redis.disconnect();
}

/** Opens a graphql-transport-ws socket, waits for connection_ack, sends the subscriptions. */
export function connect(
  wsUrl: string,
  token: string,
  subs: { id: string; query: string; variables?: Record<string, unknown> }[],
  onNext: (text: string) => void,
  init: Record<string, unknown> = {},
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
    let acked = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}`, ...init } })));
    ws.on('message', (data) => {
      const text = String(data);
      if (acked) return onNext(text);
      if (text.includes('"connection_ack"')) {
        acked = true;
        for (const s of subs) ws.send(JSON.stringify({ id: s.id, type: 'subscribe', payload: { query: s.query, variables: s.variables ?? {} } }));
        resolve(ws);
      }
    });
    ws.on('error', reject);
    ws.on('close', (code) => (acked ? undefined : reject(new Error(`closed ${code} before ack`))));
  });
}

export async function inBatches<T>(items: T[], size: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((t, k) => fn(t, i + k)));
}

export interface Seeded {
  lobby: string;
  users: { id: string; token: string }[];
}

/** One user through the API (for a real password hash and the lobby), the rest by SQL, sessions as auth stores them. */
export async function seedUsers(url: string, databaseUrl: string, n: number, password: string): Promise<Seeded> {
  const first = (await post(url, 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { token user { id } } }', { u: 'bench_0', p: password })).signup;
  const lobby = (await post(url, '{ groups(first: 10) { edges { node { id isLobby } } } }', {}, first.token)).groups.edges.find((e: any) => e.node.isLobby).node.id;
  const users = [{ id: first.user.id as string, token: first.token as string }];
  for (let i = 1; i < n; i++) users.push({ id: randomUUID(), token: randomBytes(32).toString('base64url') });
  const rest = users.slice(1);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await db.query(
      `insert into users (id, username, password_hash, created_at)
       select u.id, 'bench_' || u.n, (select password_hash from users where id = $3), now()
       from unnest($1::uuid[], $2::int[]) as u(id, n)`,
      [rest.map((u) => u.id), rest.map((_, i) => i + 1), first.user.id],
    );
    await db.query(
      `insert into group_members (id, group_id, user_id, joined_at) select gen_random_uuid(), $2, u, now() from unnest($1::uuid[]) as u`,
      [rest.map((u) => u.id), lobby],
    );
    // Their sidebar rows, as joining stores them (read up to the lobby's head).
    await db.query(
      `insert into conversation_members (conversation_key, user_id, kind, group_id, joined_at, read_seq)
       select 'g:' || $2, u, 'GROUP', $2::uuid, now(), coalesce((select seq from conversation_heads where conversation_key = 'g:' || $2), 0)
       from unnest($1::uuid[]) as u`,
      [rest.map((u) => u.id), lobby],
    );
    await db.query(
      `insert into sessions (id, user_id, token_hash, created_at, expires_at)
       select gen_random_uuid(), s.u, s.h, now(), now() + interval '1 day' from unnest($1::uuid[], $2::text[]) as s(u, h)`,
      [rest.map((u) => u.id), rest.map((u) => createHash('sha256').update(u.token).digest('hex'))],
    );
  } finally {
    await db.end();
  }
  return { lobby, users };
}
