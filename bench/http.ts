/**
 * The request path over HTTP, side by side in one run: the operations a chat client calls most
 * against Parley's own floor, and that floor against a bare Apollo Server and a bare Node server.
 *
 *   DATABASE_URL=postgres://…/my_bench_db REDIS_URL=redis://127.0.0.1:MYPORT npm run bench:http
 *
 * Three child processes, all up at once, loaded one at a time by autocannon from this process at C
 * keep-alive connections, in rounds (every operation once per round, so drift weighs on all alike):
 * - bare Node: http.createServer answering the same JSON round trip without GraphQL (the floor
 *   for `heartbeat`);
 * - bare Apollo: Apollo Server 5 (startStandaloneServer, production mode) over Parley's own SDL,
 *   so the schema is the same size; it answers `{ __typename }`;
 * - Parley: the real startServer in production mode with PostgreSQL and Redis, answering
 *   `{ __typename }`, `heartbeat`, `sendMessage` to a group of 5 members (persisted, then
 *   published) and `history(last: 50)` with sender fields.
 * Every response is checked (data, no errors); a request that fails or comes back wrong is counted,
 * and any such makes the exit code 1. The table gives each figure's range over the rounds, and each
 * ratio's range over the rounds (both sides measured in the same round). Targets (reported, not an
 * exit code):
 * `{ __typename }` >= 0.9x bare Apollo; history and sendMessage >= 0.5x Parley's `{ __typename }`;
 * heartbeat >= 0.6x bare Node.
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
 * - BENCH_ONLY     a comma-separated subset of bare, apollo, typename, heartbeat, send, history
 *                  (to profile one operation); ratios are printed where both sides ran.
 *
 * The sendMessage rate limit is raised for the Parley child (RATE_LIMIT_SEND_MESSAGE): the bench
 * measures the send path, not the abuse limiter (which still counts every send in Redis).
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import autocannon from 'autocannon';
import { loadEnv } from '../src/config/env';
import { startServer } from '../src/server';
import { startChild, type FromChild } from './harness';
import { ensureDatabase, out, positive } from './util';

const SECONDS = positive('BENCH_SECONDS', 2);
const ROUNDS = positive('BENCH_ROUNDS', 3);
const WARMUP = positive('BENCH_WARMUP', 1);
const CONNECTIONS = positive('BENCH_CONNECTIONS', 32);
const GROUP_SIZE = 5;
const HISTORY_PAGE = 50;
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const runs = (key: string) => !ONLY || ONLY.includes(key);

const TYPENAME = '{ __typename }';
const HEARTBEAT = 'mutation { heartbeat { status lastSeenAt } }';
const SEND = 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "bench message" }) { id content createdAt sender { id username displayName } } }';
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

type Role = 'parley' | 'apollo' | 'bare';


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
}

/** C connections POSTing one operation for `seconds`; every answer must carry data and no errors. */
async function load(key: string, name: string, url: string, query: string, variables: Record<string, unknown>, token: string | undefined, seconds: number): Promise<Run> {
  const r = await autocannon({
    url,
    method: 'POST',
    connections: CONNECTIONS,
    duration: seconds,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
    verifyBody: (body) => {
      const text = String(body ?? '');
      return text.startsWith('{"data":') && !text.includes('"errors"');
    },
  });
  return { key, name, perSecond: r.requests.total / seconds, p99: r.latency.p99, bad: r.errors + r.timeouts + r.non2xx + r.mismatches };
}

/** Signs up `n` users with fresh names; their tokens and ids. */
async function users(url: string, n: number): Promise<{ id: string; token: string }[]> {
  const run = Date.now().toString(36);
  const made = [];
  for (let i = 0; i < n; i++) {
    const { signup } = await gql(url, 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { token user { id } } }', {
      u: `bench_http_${run}_${i}`,
      p: 'bench-http-password',
    });
    made.push({ id: signup.user.id, token: signup.token });
  }
  return made;
}

interface Op {
  key: string;
  name: string;
  url: string;
  query: string;
  variables?: Record<string, unknown>;
  token?: string;
}

const RATIOS = [
  ['typename', 'apollo', 0.9],
  ['heartbeat', 'bare', 0.6],
  ['send', 'typename', 0.5],
  ['history', 'typename', 0.5],
] as const;

async function main(): Promise<void> {
  const DATABASE_URL = process.env.DATABASE_URL;
  const REDIS_URL = process.env.REDIS_URL;
  if (!DATABASE_URL || !REDIS_URL) throw new Error('set DATABASE_URL (a database named *bench* or *test*) and REDIS_URL');
  await ensureDatabase(DATABASE_URL, /bench|test/i, 'add users to');
  const production = { NODE_ENV: 'production', LOG_LEVEL: 'warn', LOG_PRETTY: 'false' };
  // All three up at once (an idle one costs nothing): each round measures every operation in turn,
  // so a busy neighbour weighs on the baselines and on Parley alike.
  const [bare, apollo, parley] = await Promise.all([
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
    }),
  ]);
  const rounds: Run[][] = [];
  try {
    const members = await users(parley.url, GROUP_SIZE);
    const [owner] = members;
    const g = (await gql(parley.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: `bench-http-${Date.now()}` }, owner.token)).createGroup.id;
    for (const m of members.slice(1)) await gql(parley.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, m.token);
    // A full page for history before the first measured request.
    for (let i = 0; i < HISTORY_PAGE + 10; i++) await gql(parley.url, SEND, { g }, members[i % GROUP_SIZE].token);
    const page = await gql(parley.url, HISTORY, { g }, owner.token);
    if (page.history.edges.length !== HISTORY_PAGE) throw new Error(`history returned ${page.history.edges.length} edges, not ${HISTORY_PAGE}`);

    const ops: Op[] = [
      { key: 'bare', name: 'bare Node HTTP (floor for heartbeat)', url: bare.url, query: HEARTBEAT },
      { key: 'apollo', name: 'bare Apollo Server 5: { __typename }', url: apollo.url, query: TYPENAME },
      { key: 'typename', name: 'Parley: { __typename }', url: parley.url, query: TYPENAME, token: owner.token },
      { key: 'heartbeat', name: 'Parley: heartbeat', url: parley.url, query: HEARTBEAT, token: owner.token },
      { key: 'send', name: `Parley: sendMessage to a group of ${GROUP_SIZE}`, url: parley.url, query: SEND, variables: { g }, token: owner.token },
      { key: 'history', name: `Parley: history(last: ${HISTORY_PAGE}) with sender`, url: parley.url, query: HISTORY, variables: { g }, token: owner.token },
    ].filter((o) => runs(o.key));
    out(`${CONNECTIONS} connections; ${WARMUP} s warm-up per operation, then ${ROUNDS} rounds of ${SECONDS} s per operation, each round every operation in turn`);
    for (const o of ops) await load(o.key, o.name, o.url, o.query, o.variables ?? {}, o.token, WARMUP);
    for (let r = 0; r < ROUNDS; r++) {
      const round: Run[] = [];
      for (const o of ops) round.push(await load(o.key, o.name, o.url, o.query, o.variables ?? {}, o.token, SECONDS));
      rounds.push(round);
    }
  } finally {
    await Promise.all([bare.stop(), apollo.stop(), parley.stop()]);
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
  out(`${'operation'.padEnd(44)}${'per second'.padStart(16)}${'p99 ms'.padStart(12)}${'bad'.padStart(6)}   ratio in each round`);
  out('─'.repeat(110));
  for (const first of rounds[0]) {
    const all = rounds.map((round) => find(round, first.key)!);
    const ratio = RATIOS.find(([a, b]) => a === first.key && rounds[0].some((r) => r.key === b));
    const text = ratio ? `${range(ratiosOf(ratio[0], ratio[1]), (n) => n.toFixed(2))}× ${ratio[1] === 'typename' ? "Parley's { __typename }" : nameOf(ratio[1]).split(':')[0].replace(/ \(.*/, '')}` : '';
    out(
      `${first.name.padEnd(44)}${range(all.map((r) => r.perSecond), fmt).padStart(16)}${range(all.map((r) => r.p99), (n) => n.toFixed(0)).padStart(12)}${String(all.reduce((n, r) => n + r.bad, 0)).padStart(6)}   ${text}`,
    );
  }
  out();
  for (const [a, b, target] of RATIOS) {
    const v = ratiosOf(a, b);
    if (!v.length) continue;
    const best = Math.max(...v);
    out(`${nameOf(a)}: ${range(v, (n) => n.toFixed(2))}× ${nameOf(b)} — target ≥ ${target}×: ${Math.min(...v) >= target ? 'met in every round' : best >= target ? 'met in some rounds' : 'MISSED'}`);
  }
  const bad = rounds.flat().reduce((n, r) => n + r.bad, 0);
  if (bad) out(`\n${bad} requests failed or came back wrong`);
  process.exit(bad ? 1 : 0);
}

const role = process.argv[2] as Role | undefined;
const entry = role === 'parley' ? runParley : role === 'apollo' ? runApollo : role === 'bare' ? runBare : main;
entry().catch((e) => {
  process.stderr.write(`bench:http${role ? ` (${role})` : ''}: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
