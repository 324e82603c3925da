/**
 * History at depth: fills one group with a million messages and measures a page of 50 at the
 * newest end, in the middle and at the oldest end, through the real API (HTTP, keep-alive).
 * Target: p99 under 5 ms, and the same at every depth (p99 ratios to the newest end near 1).
 *
 *   npm run bench:history
 *
 * Settings (environment):
 * - DATABASE_URL    postgres://… whose name contains 'bench' (created when missing). Required.
 * - BENCH_MESSAGES  messages in the group. @default 1000000
 * - BENCH_REQUESTS  measured requests per depth. @default 500
 * - BENCH_WARMUP    unmeasured requests per depth first. @default 50
 *
 * The fill is kept between runs: a group that already holds BENCH_MESSAGES is reused as is.
 * Exits 1 when a page comes back wrong (an error, or not the rows its position says);
 * a missed target is reported, not an exit code.
 */
import 'reflect-metadata';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { EntityManager } from '@mikro-orm/postgresql';
import pg from 'pg';
import { loadEnv } from '../src/config/env';
import { messageRepository } from '../src/modules/message/message.repository';
import { startServer, type ParleyServer } from '../src/server';
import { encodeCursor } from '../src/shared/graphql/connection';
import { ensureDatabase, out, positive, query, required } from './util';

const DATABASE_URL = required('DATABASE_URL', 'a database whose name contains bench or test');
const MESSAGES = positive('BENCH_MESSAGES', 1_000_000);
const REQUESTS = positive('BENCH_REQUESTS', 500);
const WARMUP = positive('BENCH_WARMUP', 50);
const PAGE = 50;
const TARGET_P99_MS = 5;
const USERNAME = 'bench_history';
const PASSWORD = 'bench-history-password';
const GROUP_NAME = 'bench-history';


// ---- database ----

/**
 * Gives the group exactly `n` messages from one sender, 1 ms apart and ending now, in one
 * statement (unless it holds `n` already).
 */
async function fill(url: string, groupId: string, senderId: string, n: number): Promise<void> {
  const key = `g:${groupId}`;
  const [{ count }] = await query<{ count: number }>(url, 'select count(*)::int as count from messages where conversation_key = $1', [key]);
  if (count >= n) {
    out(`group already holds ${count.toLocaleString('en')} messages: fill skipped`);
    return;
  }
  const started = performance.now();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    await client.query('delete from messages where conversation_key = $1', [key]);
    await client.query(
      `insert into messages (id, conversation_key, sender_id, content, group_id, seq, created_at)
       select gen_random_uuid(), $1, $2, 'bench message #' || g || ' ' || repeat('lorem ', (g % 12)::int), $3, g,
              date_trunc('milliseconds', now()) - ($4::int - g) * interval '1 millisecond'
       from generate_series(1, $4::int) g`,
      [key, senderId, groupId, n],
    );
    // The conversation's head, as sending keeps it.
    await client.query(
      `insert into conversation_heads (conversation_key, seq, last_message_id, activity_at, last_at)
       select conversation_key, seq, id, created_at, created_at from messages where conversation_key = $1 order by seq desc limit 1
       on conflict (conversation_key) do update set seq = excluded.seq, last_message_id = excluded.last_message_id, activity_at = excluded.activity_at, last_at = excluded.last_at`,
      [key],
    );
    await client.query('commit');
    // Statistics for the planner, and a visibility map as a settled table would have.
    await client.query('vacuum analyze messages');
  } catch (e) {
    await client.query('rollback').catch(() => undefined);
    throw e;
  } finally {
    await client.end();
  }
  out(`filled ${n.toLocaleString('en')} messages in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** The cursor the API gives the row `offset` places from the newest (desc) or the oldest (asc). */
async function cursorAt(url: string, key: string, offset: number, order: 'asc' | 'desc'): Promise<{ cursor: string; at: Date; id: string }> {
  const [row] = await query<{ id: string; created_at: Date }>(
    url,
    `select id, created_at from messages where conversation_key = $1 order by created_at ${order}, id ${order} offset $2 limit 1`,
    [key, offset],
  );
  if (!row) throw new Error(`no message at offset ${offset} (${order})`);
  return { cursor: encodeCursor({ k: row.created_at.toISOString(), id: row.id }), at: row.created_at, id: row.id };
}

// ---- HTTP ----

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

interface Response {
  ms: number;
  data?: any;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** One POST /graphql on the kept-alive socket; `ms` is the whole round trip as a client sees it. */
function post(url: string, body: string, token?: string): Promise<Response> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request(
      {
        agent,
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const ms = performance.now() - started;
          try {
            resolve({ ms, ...JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          } catch (e) {
            reject(new Error(`HTTP ${res.statusCode}: not JSON (${(e as Error).message})`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function gql(url: string, q: string, variables: Record<string, unknown>, token?: string): Promise<any> {
  const r = await post(url, JSON.stringify({ query: q, variables }), token);
  if (r.errors?.length) throw Object.assign(new Error(`GraphQL errors: ${JSON.stringify(r.errors)}`), { code: r.errors[0].extensions?.code });
  return r.data;
}

const AUTH = 'token user { id }';

/** Signs the bench user up, or in when an earlier run created it. */
async function benchUser(url: string): Promise<{ id: string; token: string }> {
  let auth;
  try {
    auth = (await gql(url, `mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { ${AUTH} } }`, { u: USERNAME, p: PASSWORD })).signup;
  } catch (e) {
    if ((e as { code?: string }).code !== 'CONFLICT') throw e;
    auth = (await gql(url, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { ${AUTH} } }`, { u: USERNAME, p: PASSWORD })).login;
  }
  return { id: auth.user.id, token: auth.token };
}

/** The bench group of an earlier run, or a new one created through the API. */
async function benchGroup(url: string, dbUrl: string, user: { id: string; token: string }): Promise<string> {
  const [found] = await query<{ id: string }>(dbUrl, 'select id from groups where owner_id = $1 and name = $2 order by created_at limit 1', [user.id, GROUP_NAME]);
  if (found) return found.id;
  return (await gql(url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: GROUP_NAME }, user.token)).createGroup.id;
}

// ---- measuring ----

const HISTORY = `query($c: ConversationInput!, $last: Int, $before: String, $first: Int) {
  history(conversation: $c, last: $last, before: $before, first: $first) {
    edges { cursor node { id content createdAt sender { id username } } }
    pageInfo { startCursor endCursor } } }`;

interface Depth {
  name: string;
  /** What the page is: the GraphQL arguments and the repository call behind them. */
  args: { last?: number; before?: string; first?: number };
  page: Parameters<typeof messageRepository.page>[2];
  /** Ids the first and last edge must have. */
  expect: { first: string; last: string };
  http: number[];
  db: number[];
  explain?: { executionMs: number; planningMs: number; plan: string; buffers: string };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), max: s[s.length - 1] };
}

/** Checks a page once: the right rows, oldest first, and exactly a page of them. */
function check(d: Depth, data: any): void {
  const edges = data.history.edges;
  const got = { n: edges.length, first: edges[0]?.node.id, last: edges[edges.length - 1]?.node.id };
  if (got.n !== PAGE || got.first !== d.expect.first || got.last !== d.expect.last) {
    throw new Error(`${d.name}: wrong page ${JSON.stringify(got)}, expected ${PAGE} edges ${JSON.stringify(d.expect)}`);
  }
}

/** EXPLAIN ANALYZE of exactly the SQL that `messageRepository.page` sends for this depth. */
async function explain(em: EntityManager, key: string, d: Depth): Promise<NonNullable<Depth['explain']>> {
  let captured: { sql: string; params: unknown[] } | undefined;
  // As inside a transaction: prepared hands the statement to execute() as it is.
  const recorder = { getTransactionContext: () => ({}), execute: async (sql: string, params: unknown[]) => ((captured = { sql, params }), []) } as unknown as EntityManager;
  await messageRepository.page(recorder, key, d.page);
  const [row] = await em.execute(`explain (analyze, buffers, format json) ${captured!.sql}`, captured!.params);
  const [result] = row['QUERY PLAN'] as { Plan: any; 'Execution Time': number; 'Planning Time': number }[];
  const nodes: string[] = [];
  const walk = (n: any): void => {
    const type = n['Scan Direction'] === 'Backward' ? `${n['Node Type']} Backward` : n['Node Type'];
    nodes.push(n['Index Name'] ? `${type} using ${n['Index Name']}` : type);
    (n.Plans ?? []).forEach(walk);
  };
  walk(result.Plan);
  const top = result.Plan;
  return {
    executionMs: result['Execution Time'],
    planningMs: result['Planning Time'],
    plan: nodes.join(' > '),
    buffers: `shared hit ${top['Shared Hit Blocks']}, read ${top['Shared Read Blocks']}`,
  };
}

async function main(): Promise<void> {
  await ensureDatabase(DATABASE_URL, /bench/i, 'fill');
  const env = loadEnv({ ...process.env, DATABASE_URL, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', LOG_PRETTY: 'false', NODE_ENV: 'test' });
  let server: ParleyServer | undefined;
  try {
    server = await startServer({ env, jobs: false });
    const url = server.url;
    const user = await benchUser(url);
    const groupId = await benchGroup(url, DATABASE_URL, user);
    const key = `g:${groupId}`;
    await fill(DATABASE_URL, groupId, user.id, MESSAGES);

    const [{ n }] = await query<{ n: number }>(DATABASE_URL, 'select count(*)::int as n from messages where conversation_key = $1', [key]);
    const row = (offset: number, order: 'asc' | 'desc') => cursorAt(DATABASE_URL, key, offset, order);
    const [newest, newest49] = [await row(0, 'desc'), await row(PAGE - 1, 'desc')];
    const mid = Math.floor(n / 2);
    // last 50 before the row `mid` places from the newest: rows mid+1 … mid+50 from the newest.
    const [midCursor, midFirst, midLast] = [await row(mid, 'desc'), await row(mid + PAGE, 'desc'), await row(mid + 1, 'desc')];
    const [oldest, oldest49, oldestCursor] = [await row(0, 'asc'), await row(PAGE - 1, 'asc'), await row(PAGE, 'asc')];
    const at = (c: { at: Date; id: string }) => ({ at: c.at, id: c.id });

    const depth = (name: string, args: Depth['args'], page: Depth['page'], expect: Depth['expect']): Depth => ({ name, args, page, expect, http: [], db: [] });
    const depths = [
      depth('newest', { last: PAGE }, { direction: 'backward', cursor: null, limit: PAGE }, { first: newest49.id, last: newest.id }),
      depth(
        `middle (${mid.toLocaleString('en')} back)`,
        { last: PAGE, before: midCursor.cursor },
        { direction: 'backward', cursor: at(midCursor), limit: PAGE },
        { first: midFirst.id, last: midLast.id },
      ),
      depth('oldest (first: 50)', { first: PAGE }, { direction: 'forward', cursor: null, limit: PAGE }, { first: oldest.id, last: oldest49.id }),
      depth(
        'oldest (last: 50, before)',
        { last: PAGE, before: oldestCursor.cursor },
        { direction: 'backward', cursor: at(oldestCursor), limit: PAGE },
        { first: oldest.id, last: oldest49.id },
      ),
    ];

    const c = { groupId };
    const body = (d: Depth) => JSON.stringify({ query: HISTORY, variables: { c, ...d.args } });
    // The cost of any authenticated request: HTTP, Apollo, the token check, no resolver work.
    const floorBody = JSON.stringify({ query: '{ __typename }' });
    const floor: number[] = [];

    out(`\nhistory of ${n.toLocaleString('en')} messages, pages of ${PAGE}: ${WARMUP} warm-up + ${REQUESTS} requests per depth, one at a time`);
    for (const d of depths) check(d, await gql(url, HISTORY, { c, ...d.args }, user.token));
    for (let i = 0; i < WARMUP; i++) {
      for (const d of depths) await post(url, body(d), user.token);
      await post(url, floorBody, user.token);
    }
    // Round-robin over the depths, so that drift (autovacuum, a busy neighbour) weighs on all alike.
    for (let i = 0; i < REQUESTS; i++) {
      for (const d of depths) {
        const r = await post(url, body(d), user.token);
        if (r.errors?.length) throw new Error(`${d.name}: ${JSON.stringify(r.errors)}`);
        d.http.push(r.ms);
      }
      floor.push((await post(url, floorBody, user.token)).ms);
    }

    // The database alone: the repository's page query through the server's own pool, then its plan.
    const em = server.services.orm.em.fork() as EntityManager;
    for (let i = 0; i < WARMUP + REQUESTS; i++) {
      for (const d of depths) {
        const started = performance.now();
        await messageRepository.page(em, key, d.page);
        if (i >= WARMUP) d.db.push(performance.now() - started);
      }
    }
    for (const d of depths) d.explain = await explain(em, key, d);

    const base = stats(depths[0].http).p99;
    const ms = (v: number) => v.toFixed(2).padStart(7);
    const head = ['depth'.padEnd(28), 'p50'.padStart(7), 'p99'.padStart(7), 'max'.padStart(7), ' │', 'db p50'.padStart(7), 'db p99'.padStart(7), 'explain'.padStart(8), ' │', 'p99/newest'.padStart(10)];
    out(`\n${'HTTP round trip (ms)'.padEnd(51)}│ database only (ms)        │`);
    out(head.join(' '));
    out('─'.repeat(head.join(' ').length));
    for (const d of depths) {
      const h = stats(d.http);
      const db = stats(d.db);
      out(
        [d.name.padEnd(28), ms(h.p50), ms(h.p99), ms(h.max), ' │', ms(db.p50), ms(db.p99), ms(d.explain!.executionMs).padStart(8), ' │', `${(h.p99 / base).toFixed(2)}×`.padStart(10)].join(' '),
      );
    }
    const f = stats(floor);
    out([`floor: { __typename }`.padEnd(28), ms(f.p50), ms(f.p99), ms(f.max), ' │'].join(' '));

    out('\nplans (EXPLAIN ANALYZE of the repository query):');
    for (const d of depths) {
      const e = d.explain!;
      out(`  ${d.name}: ${e.executionMs.toFixed(3)} ms execution, ${e.planningMs.toFixed(3)} ms planning, ${e.buffers}`);
      out(`    ${e.plan}`);
    }

    const worst = Math.max(...depths.map((d) => stats(d.http).p99));
    const spread = Math.max(...depths.map((d) => stats(d.http).p99 / base));
    out(`\ntarget p99 < ${TARGET_P99_MS} ms at every depth: ${worst < TARGET_P99_MS ? 'met' : 'MISSED'} (worst p99 ${worst.toFixed(2)} ms)`);
    out(`same at every depth: worst p99 ratio to the newest end ${spread.toFixed(2)}×`);
    out(`ratios of p99: middle/newest ${(stats(depths[1].http).p99 / base).toFixed(2)}, oldest/newest ${(stats(depths[2].http).p99 / base).toFixed(2)} (first), ${(stats(depths[3].http).p99 / base).toFixed(2)} (before)`);
  } finally {
    agent.destroy();
    await server?.dispose();
  }
}

main().catch((e) => {
  process.stderr.write(`bench:history failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
