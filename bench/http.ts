/**
 * The request path over HTTP, side by side in one run: the operations a chat client calls most
 * against Parley's own floor, and that floor against a bare Apollo Server and a bare Node server.
 *
 *   DATABASE_URL=postgres://…/my_bench_db REDIS_URL=redis://127.0.0.1:MYPORT npm run bench:http
 *
 * Four child processes, all up at once, loaded one at a time by autocannon from this process at C
 * keep-alive connections, in rounds (every operation once per round, so drift weighs on all alike):
 * - bare Node: http.createServer answering the same JSON round trip without GraphQL (the floor
 *   for `heartbeat`);
 * - bare Apollo: Apollo Server 5 (startStandaloneServer, production mode) over Parley's own SDL,
 *   so the schema is the same size; it answers `{ __typename }`;
 * - Parley: the real startServer in production mode with PostgreSQL and Redis, answering
 *   `{ __typename }`, `heartbeat`, `sendMessage` (persisted, then published) to groups of 5
 *   members, either all C connections to one group (sends that arrive together) or C groups taken
 *   in turn (one send in flight per conversation), and `history(last: 50)` with sender fields;
 * - endpoint: the same two operations written by hand (Node http + pg + ioredis: token check, one
 *   durable insert, one PUBLISH; the same page by keyset with the same join and JSON) against the
 *   same database and Redis, each with groups of its own (see runEndpoint).
 * Set-up ends with ANALYZE (the local PostgreSQL runs with autovacuum off; a never-analyzed
 * messages table plans history's page as a sort of the whole conversation). History reads a
 * group of its own, filled before ANALYZE, that no measured operation writes to: the sends add
 * tens of thousands of messages after it, and a conversation the statistics still count at 60
 * rows made the endpoint's page (its key visible to the planner) sort all of them, 13-37 ms a page. For each operation on
 * Parley or the endpoint the table gives the server process's CPU per request and PostgreSQL's
 * (the database's backends), both from /proc/<pid>/stat.
 * Every response is checked (data, no errors); a request that fails or comes back wrong is counted,
 * and any such makes the exit code 1. The table gives each figure's range over the rounds, and each
 * ratio's range over the rounds (both sides measured in the same round). Targets (reported, not an
 * exit code):
 * `{ __typename }` >= 0.9x bare Apollo; history and sendMessage >= 0.5x Parley's `{ __typename }`;
 * heartbeat >= 0.6x bare Node; against the endpoint (issue 29): sendMessage to C groups in turn
 * >= 0.7x, sendMessage all to one group >= 1.0x (group commit against one commit a send),
 * history >= 0.8x; issue 30: a reply in a thread and a send with a mention (C groups in turn, as
 * neither goes through group commit) >= 0.83x the plain send to C groups (a reply <= 1.2x its cost).
 *
 * Settings (environment):
 * - DATABASE_URL   required; its name must contain 'bench' or 'test' (created when missing).
 *                  Users, a group and its messages are added.
 * - REDIS_URL      required (Parley's presence, rate limits and pub/sub).
 * - BENCH_SECONDS  measured seconds per operation and round. @default 2
 * - BENCH_ROUNDS   rounds; each measures every operation once, and the ratios are per round. @default 3
 * - BENCH_WARMUP   unmeasured seconds per operation before the first round. @default 1
 * - BENCH_CONNECTIONS  C. @default 32
 * - BENCH_PROFILE  a directory: the Parley child writes a CPU profile (--cpu-prof) there on exit.
 * - BENCH_ONLY     a comma-separated subset of bare, apollo, typename, heartbeat, send, ep-send,
 *                  spread, ep-spread, reply-spread, mention-spread, history, ep-history (to profile
 *                  one operation, or BENCH_ONLY=spread,reply-spread,mention-spread for issue 30); ratios are
 *                  printed where both sides ran.
 *
 * The sendMessage rate limit is raised for the Parley child (RATE_LIMIT_SEND_MESSAGE): the bench
 * measures the send path, not the abuse limiter (which still counts every send in Redis); so are
 * the group limits, for the set-up's 2C + 2 groups.
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { loadEnv } from '../src/config/env';
import { startServer } from '../src/server';
import { handwritten } from './handwritten';
import { startChild, type FromChild } from './harness';
import { cpuSince, ensureDatabase, out, positive, procCpuMs, required } from './util';

const SECONDS = positive('BENCH_SECONDS', 2);
const ROUNDS = positive('BENCH_ROUNDS', 3);
const WARMUP = positive('BENCH_WARMUP', 1);
const CONNECTIONS = positive('BENCH_CONNECTIONS', 32);
const GROUP_SIZE = 5;
/** Small groups the spread sends take in turn: one send in flight per group, as C users in C conversations. */
const SPREAD = CONNECTIONS;
const HISTORY_PAGE = 50;
/** Messages in history's conversation: several pages, as a conversation someone scrolls back in. */
const HISTORY_MESSAGES = 500;
/** Messages in the table at least, in 500 other conversations, before ANALYZE (see the set-up). */
const FILLER_MESSAGES = 100_000;
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const runs = (key: string) => !ONLY || ONLY.includes(key);

const TYPENAME = '{ __typename }';
const HEARTBEAT = 'mutation { heartbeat { status lastSeenAt } }';
const SEND = 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "bench message" }) { id content createdAt sender { id username displayName } } }';
/** A reply kept in its thread (issue 30): one statement, as a plain send. */
const REPLY = 'mutation($g: ID!, $p: ID!) { sendMessage(input: { groupId: $g, content: "bench reply", parentId: $p }) { id content createdAt sender { id username displayName } } }';
/** A send that mentions a member: resolved in the send's statement. */
const MENTION = 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id content createdAt sender { id username displayName } } }';
const HISTORY = `query($g: ID!) { history(conversation: { groupId: $g }, last: ${HISTORY_PAGE}) {
  edges { cursor node { id content createdAt sender { id username displayName } } } pageInfo { hasPreviousPage startCursor } } }`;

// ================= child processes =================


function ready(port: number, stop: () => Promise<void>): void {
  process.on('message', (m: { type: string }) => {
    if (m.type === 'stop') void stop().finally(() => process.exit(0));
  });
  process.send!({ type: 'ready', port } satisfies FromChild);
}

/** The real server, as `npm start` runs it in production. */
async function runParley(): Promise<void> {
  const server = await startServer({ env: loadEnv(process.env) });
  ready(server.port, () => server.dispose());
}

/** Apollo Server 5 as its docs start it, over Parley's SDL (the same schema size), nothing added. */
async function runApollo(): Promise<void> {
  const { ApolloServer } = await import('@apollo/server');
  const { startStandaloneServer } = await import('@apollo/server/standalone');
  const typeDefs = readFileSync(path.join(__dirname, '..', 'schema.graphql'), 'utf8');
  const server = new ApolloServer({ typeDefs });
  const { url } = await startStandaloneServer(server, { listen: { port: 0, host: '127.0.0.1' } });
  ready(Number(new URL(url).port), () => server.stop());
}

/**
 * What a team would write by hand for the two hot operations (Node http + pg + ioredis), over the
 * same tables and the same POST bodies as Parley's:
 * - sendMessage: the token checked (sha256, sessions cached for a minute as Parley caches them),
 *   one durable insert that checks the membership in the same statement and returns the message
 *   with its sender, its own commit; one PUBLISH; the same JSON answer;
 * - history(last: 50): the token checked, the same page by keyset (created_at, id) with the same
 *   join (attachments, users) and the membership checked in the same statement, the same JSON.
 * Its statements are prepared (named), as Parley's hot ones are. Its messages have no place
 * among their conversation's (seq 0, no head): it sends only to groups of its own.
 */
async function runEndpoint(): Promise<void> {
  const { Redis } = await import('ioredis');
  const store = handwritten(process.env.DATABASE_URL!, Number(process.env.DB_POOL_MAX ?? 10));
  const redis = new Redis(process.env.REDIS_URL!);
  const PAGE_SQL = `select m.id, m.conversation_key, m.sender_id, m.content, m.attachment_id, m.group_id, m.project_id, m.recipient_id,
      m.client_message_id, m.created_at, m.edited_at, m.deleted_at, m.version, m.pos, a.file_name, a.mime_type, a.size,
      u.username as sender_username, u.display_name as sender_display_name, u.created_at as sender_created_at
    from messages m left join attachments a on a.id = m.attachment_id join users u on u.id = m.sender_id
    where m.conversation_key = $1 and exists (select 1 from group_members gm where gm.group_id = $2 and gm.user_id = $3)
    order by m.created_at desc, m.id desc limit ${HISTORY_PAGE + 1}`;
  const cursor = (at: Date, id: string) => Buffer.from(`c1:["${at.toISOString()}","${id}"]`, 'latin1').toString('base64url');
  const reply = (res: http.ServerResponse, status: number, value: unknown) => {
    const body = JSON.stringify(value);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, raw: string) => {
    const body = JSON.parse(raw) as { query: string; variables: { g: string; t?: string } };
    const userId = await store.viewer(req.headers.authorization);
    if (!userId) return reply(res, 200, { errors: [{ message: 'Not authenticated.', extensions: { code: 'UNAUTHENTICATED' } }] });
    const g = body.variables.g;
    if (body.query.startsWith('mutation')) {
      const r = await store.send(g, userId, body.variables.t ?? 'bench message');
      if (!r) return reply(res, 200, { errors: [{ message: 'Not a member.', extensions: { code: 'FORBIDDEN' } }] });
      const message = { id: r.id, content: r.content, createdAt: r.created_at.toISOString(), sender: { id: r.sender_id, username: r.username, displayName: r.display_name } };
      await redis.publish(`bench.endpoint:g:${g}`, JSON.stringify({ topic: 'messageAdded', payload: { ...message, conversationKey: `g:${g}`, groupId: g } }));
      return reply(res, 200, { data: { sendMessage: message } });
    }
    const { rows } = await store.pool.query({ name: 'ep_page', text: PAGE_SQL, values: [`g:${g}`, g, userId] });
    if (!rows.length) return reply(res, 200, { errors: [{ message: 'Not a member.', extensions: { code: 'FORBIDDEN' } }] });
    const page = rows.slice(0, HISTORY_PAGE).reverse();
    const edges = page.map((r) => ({
      cursor: cursor(r.created_at, r.id),
      node: { id: r.id, content: r.content, createdAt: r.created_at.toISOString(), sender: { id: r.sender_id, username: r.sender_username, displayName: r.sender_display_name } },
    }));
    reply(res, 200, { data: { history: { edges, pageInfo: { hasPreviousPage: rows.length > HISTORY_PAGE, startCursor: edges[0]?.cursor ?? null } } } });
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((e: Error) => reply(res, 500, { errors: [{ message: e.message }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ready((server.address() as AddressInfo).port, async () => {
    await new Promise((r) => server.close(r));
    await store.end();
    redis.disconnect();
  });
}

/** The same JSON round trip with no GraphQL, no auth and no store: what Node's HTTP costs. */
async function runBare(): Promise<void> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const body = JSON.stringify({ data: { heartbeat: { status: 'ONLINE', lastSeenAt: new Date().toISOString() } } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ready((server.address() as AddressInfo).port, () => new Promise((r) => server.close(() => r())));
}

type Role = 'parley' | 'apollo' | 'bare' | 'endpoint';


// ================= load =================

async function gql(url: string, query: string, variables: Record<string, unknown> = {}, token?: string): Promise<any> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown[] };
  if (body.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(body.errors)}`);
  return body.data;
}

interface Run {
  key: string;
  name: string;
  perSecond: number;
  p99: number;
  /** Requests that failed, answered non-2xx, or answered errors / no data. */
  bad: number;
  /** CPU (µs per request) of the server's process and of PostgreSQL's backends of the database, from /proc; where measured. */
  cpu?: number;
  pgCpu?: number;
}

/**
 * C connections POSTing one operation for `seconds`; every answer must carry data and no errors.
 * With several variable sets the requests take them in turn (one group after another).
 */
async function load(o: Op, seconds: number, backends: () => Promise<number[]>): Promise<Run> {
  const bodies = (o.spread ?? [o.variables ?? {}]).map((variables) => JSON.stringify({ query: o.query, variables }));
  let next = 0;
  const pgPids = o.pid ? await backends() : [];
  const before = o.pid ? [procCpuMs([o.pid]), procCpuMs(pgPids)] : [];
  const r = await autocannon({
    url: o.url,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
        setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }),
      },
    ],
    verifyBody: (body) => {
      const text = String(body ?? '');
      return text.startsWith('{"data":') && !text.includes('"errors"');
    },
  });
  const n = Math.max(1, r.requests.total);
  const cpu = o.pid ? { cpu: (cpuSince(before[0]) * 1000) / n, pgCpu: (cpuSince(before[1], await backends()) * 1000) / n } : {};
  return { key: o.key, name: o.name, perSecond: r.requests.total / seconds, p99: r.latency.p99, bad: r.errors + r.timeouts + r.non2xx + r.mismatches, ...cpu };
}

/** Signs up `n` users with fresh names; their tokens and ids. */
async function users(url: string, n: number): Promise<{ id: string; token: string; username: string }[]> {
  const run = Date.now().toString(36);
  const made = [];
  for (let i = 0; i < n; i++) {
    const { signup } = await gql(url, 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { token user { id } } }', {
      u: `bench_http_${run}_${i}`,
      p: 'bench-http-password',
    });
    made.push({ id: signup.user.id, token: signup.token, username: `bench_http_${run}_${i}` });
  }
  return made;
}

interface Op {
  key: string;
  name: string;
  url: string;
  query: string;
  variables?: Record<string, unknown>;
  /** Variable sets taken in turn, instead of `variables`. */
  spread?: Record<string, unknown>[];
  token?: string;
  /** The server's process, for its CPU per request. */
  pid?: number;
}

const RATIOS = [
  ['typename', 'apollo', 0.9],
  ['heartbeat', 'bare', 0.6],
  ['send', 'typename', 0.5],
  ['history', 'typename', 0.5],
  ['spread', 'ep-spread', 0.7],
  ['send', 'ep-send', 1.0],
  ['history', 'ep-history', 0.8],
  // Issue 30: a reply at most 1.2× a plain send's cost (throughput ≥ 1 / 1.2), and a mention the same.
  ['reply-spread', 'spread', 0.83],
  ['mention-spread', 'spread', 0.83],
] as const;

/** A group of GROUP_SIZE made through the API by `members[0]`; its id. */
async function group(url: string, members: { token: string }[], name: string): Promise<string> {
  const g = (await gql(url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: name }, members[0].token)).createGroup.id;
  for (const m of members.slice(1)) await gql(url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, m.token);
  return g;
}

async function main(): Promise<void> {
  const DATABASE_URL = required('DATABASE_URL', 'a database whose name contains bench or test');
  const REDIS_URL = required('REDIS_URL', 'a Redis of its own');
  await ensureDatabase(DATABASE_URL, /bench|test/i, 'add users to');
  const production = { NODE_ENV: 'production', LOG_LEVEL: 'warn', LOG_PRETTY: 'false' };
  // All three up at once (an idle one costs nothing): each round measures every operation in turn,
  // so a busy neighbour weighs on the baselines and on Parley alike.
  const [bare, apollo, parley, endpoint] = await Promise.all([
    startChild(__filename, 'bare'),
    startChild(__filename, 'apollo', production),
    startChild(__filename, 'parley', {
      ...production,
      DATABASE_URL,
      REDIS_URL,
      PORT: '0',
      HOST: '127.0.0.1',
      RATE_LIMIT_SEND_MESSAGE: '100000000/10s',
      RATE_LIMIT_SIGNUP: '100000/1h',
      RATE_LIMIT_CREATE_GROUP: '100000/1h',
      RATE_LIMIT_GROUP_MEMBERSHIP: '100000/1h',
    }),
    startChild(__filename, 'endpoint', { DATABASE_URL, REDIS_URL }),
  ]);
  const db = new pg.Client({ connectionString: DATABASE_URL });
  await db.connect();
  const backends = async () => (await db.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()')).rows.map((r) => r.pid);
  const rounds: Run[][] = [];
  try {
    const members = await users(parley.url, GROUP_SIZE);
    const [owner] = members;
    const run = Date.now().toString(36);
    // Parley's group and the endpoint's own (history reads Parley's: the same rows), and each
    // one's SPREAD small groups, sent to in turn.
    const g = await group(parley.url, members, `bench-http-${run}`);
    const gh = await group(parley.url, members, `bench-http-${run}-history`);
    const ge = await group(parley.url, members, `bench-http-${run}-endpoint`);
    const spread: string[] = [];
    const spreadEp: string[] = [];
    for (let i = 0; i < SPREAD; i++) spread.push(await group(parley.url, members, `bench-http-${run}-${i}`));
    for (let i = 0; i < SPREAD; i++) spreadEp.push(await group(parley.url, members, `bench-http-${run}-endpoint-${i}`));
    // A thread root in each spread group, for the replies.
    const roots: string[] = [];
    for (const x of spread) roots.push((await gql(parley.url, SEND, { g: x }, owner.token)).sendMessage.id);
    const mention = `bench @${members[1].username} look`;
    // A reply and a mention in each before ANALYZE, so the planner knows those tables as a deployment's
    // would (analyzed empty, it counted a member's unread mentions through the wrong index: 3 ms, not 0.2).
    for (let i = 0; i < SPREAD; i++) {
      await gql(parley.url, REPLY, { g: spread[i], p: roots[i] }, owner.token);
      await gql(parley.url, MENTION, { g: spread[i], c: mention }, owner.token);
    }
    // History's conversation, whole before ANALYZE: more than a page, and nothing measured adds to it.
    for (let i = 0; i < HISTORY_MESSAGES; i++) await gql(parley.url, SEND, { g: gh }, members[i % GROUP_SIZE].token);
    const page = await gql(parley.url, HISTORY, { g: gh }, owner.token);
    if (page.history.edges.length !== HISTORY_PAGE) throw new Error(`history returned ${page.history.edges.length} edges, not ${HISTORY_PAGE}`);
    const theirs = await gql(endpoint.url, HISTORY, { g: gh }, owner.token);
    if (JSON.stringify(theirs) !== JSON.stringify(page)) throw new Error('the endpoint\'s history page differs from Parley\'s');
    // A deployment's messages table holds many conversations, history's a small part of them: on a
    // fresh database its 500 were 40% of the table, and the endpoint's page (its key visible to the
    // planner) was planned as a scan of them all, 300 µs of PostgreSQL a page against 130.
    const [{ n: stored }] = (await db.query<{ n: number }>('select count(*)::int as n from messages')).rows;
    if (stored < FILLER_MESSAGES) {
      await db.query(
        `insert into messages (id, conversation_key, sender_id, content, seq, created_at)
         select gen_random_uuid(), 'g:' || md5((i % 500)::text)::uuid, $1, 'elsewhere', 0, now() - i * interval '1 second' from generate_series(1, $2::int) i`,
        [owner.id, FILLER_MESSAGES - stored],
      );
    }
    // Statistics for the planner, as a deployment with autovacuum would have them (it is off here).
    await db.query('analyze');

    const ops = ([
      { key: 'bare', name: 'bare Node HTTP (floor for heartbeat)', url: bare.url, query: HEARTBEAT },
      { key: 'apollo', name: 'bare Apollo Server 5: { __typename }', url: apollo.url, query: TYPENAME },
      { key: 'typename', name: 'Parley: { __typename }', url: parley.url, query: TYPENAME, token: owner.token },
      { key: 'heartbeat', name: 'Parley: heartbeat', url: parley.url, query: HEARTBEAT, token: owner.token },
      { key: 'send', name: `Parley: sendMessage, all to one group of ${GROUP_SIZE}`, url: parley.url, query: SEND, variables: { g }, token: owner.token, pid: parley.pid },
      { key: 'ep-send', name: 'endpoint: sendMessage, all to one group', url: endpoint.url, query: SEND, variables: { g: ge }, token: owner.token, pid: endpoint.pid },
      { key: 'spread', name: `Parley: sendMessage, ${SPREAD} groups in turn`, url: parley.url, query: SEND, spread: spread.map((x) => ({ g: x })), token: owner.token, pid: parley.pid },
      { key: 'ep-spread', name: `endpoint: sendMessage, ${SPREAD} groups in turn`, url: endpoint.url, query: SEND, spread: spreadEp.map((x) => ({ g: x })), token: owner.token, pid: endpoint.pid },
      { key: 'reply-spread', name: `Parley: reply in a thread, ${SPREAD} groups in turn`, url: parley.url, query: REPLY, spread: spread.map((x, i) => ({ g: x, p: roots[i] })), token: owner.token, pid: parley.pid },
      { key: 'mention-spread', name: `Parley: send with a mention, ${SPREAD} groups`, url: parley.url, query: MENTION, spread: spread.map((x) => ({ g: x, c: mention })), token: owner.token, pid: parley.pid },
      { key: 'history', name: `Parley: history(last: ${HISTORY_PAGE}) with sender`, url: parley.url, query: HISTORY, variables: { g: gh }, token: owner.token, pid: parley.pid },
      { key: 'ep-history', name: `endpoint: history(last: ${HISTORY_PAGE}) with sender`, url: endpoint.url, query: HISTORY, variables: { g: gh }, token: owner.token, pid: endpoint.pid },
    ] as Op[]).filter((o) => runs(o.key));
    out(`${CONNECTIONS} connections; ${WARMUP} s warm-up per operation, then ${ROUNDS} rounds of ${SECONDS} s per operation, each round every operation in turn`);
    for (const o of ops) await load(o, WARMUP, backends);
    for (let r = 0; r < ROUNDS; r++) {
      const round: Run[] = [];
      for (const o of ops) round.push(await load(o, SECONDS, backends));
      rounds.push(round);
    }
  } finally {
    await db.end();
    await Promise.all([bare.stop(), apollo.stop(), parley.stop(), endpoint.stop()]);
  }

  const fmt = (n: number) => Math.round(n).toLocaleString('en');
  const range = (v: number[], f: (n: number) => string) => (Math.min(...v) === Math.max(...v) ? f(v[0]) : `${f(Math.min(...v))}-${f(Math.max(...v))}`);
  const find = (round: Run[], key: string) => round.find((r) => r.key === key);
  /** The ratio of `a` to `b` in each round where both ran. */
  const ratiosOf = (a: string, b: string) => rounds.flatMap((round) => {
    const [ra, rb] = [find(round, a), find(round, b)];
    return ra && rb ? [ra.perSecond / rb.perSecond] : [];
  });
  const nameOf = (key: string) => rounds[0].find((r) => r.key === key)!.name;
  out();
  out(`${'operation'.padEnd(44)}${'per second'.padStart(16)}${'p99 ms'.padStart(12)}${'bad'.padStart(6)}${'cpu µs/req'.padStart(14)}${'pg µs/req'.padStart(12)}   ratio in each round`);
  out('─'.repeat(140));
  for (const first of rounds[0]) {
    const all = rounds.map((round) => find(round, first.key)!);
    const text = RATIOS.filter(([a, b]) => a === first.key && rounds[0].some((r) => r.key === b))
      .map(([a, b]) => `${range(ratiosOf(a, b), (n) => n.toFixed(2))}× ${b === 'typename' ? "Parley's { __typename }" : nameOf(b).replace(/ \(.*/, '')}`)
      .join('; ');
    const cpu = (f: (r: Run) => number | undefined) => (first.cpu === undefined ? '' : range(all.map((r) => f(r)!), fmt));
    out(
      `${first.name.padEnd(44)}${range(all.map((r) => r.perSecond), fmt).padStart(16)}${range(all.map((r) => r.p99), (n) => n.toFixed(0)).padStart(12)}${String(all.reduce((n, r) => n + r.bad, 0)).padStart(6)}${cpu((r) => r.cpu).padStart(14)}${cpu((r) => r.pgCpu).padStart(12)}   ${text}`,
    );
  }
  out();
  for (const [a, b, target] of RATIOS) {
    const v = ratiosOf(a, b);
    if (!v.length) continue;
    const best = Math.max(...v);
    out(`${nameOf(a)}: ${range(v, (n) => n.toFixed(2))}× ${nameOf(b)} — target ≥ ${target}×: ${Math.min(...v) >= target ? 'met in every round' : best >= target ? 'met in some rounds' : 'MISSED'}`);
  }
  if (process.env.BENCH_PROFILE) {
    // For bench/cpuprofile.ts --per: the Parley child's measured requests, its profile's last seconds.
    const measured = rounds.flat().filter((r) => !r.key.startsWith('ep-') && r.key !== 'bare' && r.key !== 'apollo');
    out(`\nParley's measured requests: ${fmt(measured.reduce((n, r) => n + r.perSecond * SECONDS, 0))} in the profile's last ${ROUNDS * SECONDS * rounds[0].length} s or less`);
  }
  const bad = rounds.flat().reduce((n, r) => n + r.bad, 0);
  if (bad) out(`\n${bad} requests failed or came back wrong`);
  process.exit(bad ? 1 : 0);
}

const role = process.argv[2] as Role | undefined;
const entry = role === 'parley' ? runParley : role === 'apollo' ? runApollo : role === 'bare' ? runBare : role === 'endpoint' ? runEndpoint : main;
entry().catch((e) => {
  process.stderr.write(`bench:http${role ? ` (${role})` : ''}: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
