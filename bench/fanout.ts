/**
 * Subscription fan-out against a bare WebSocket server, in one run on one machine.
 *
 *   npm run bench:fanout
 *
 * One load client (this process, plain `ws` speaking graphql-transport-ws) opens S sockets, each
 * subscribed to messageAdded of one group, then sends M sendMessage mutations one after another
 * (each as soon as the previous one is answered) and records when every socket receives every
 * message. The same client and load run against:
 * - bare:       a plain ws server (child process) that JSON-serializes each message once and sends
 *               the same text to every socket; the floor any fan-out can reach here;
 * - parley x1:  one Parley instance (child process, real startServer, PostgreSQL and Redis);
 * - parley x2:  two Parley instances through Redis, half the sockets on each, mutations to the first.
 * Then the phases of many small conversations (bench/rooms.ts; BENCH_SKIP=rooms to skip them;
 * `npm run bench:rooms` runs only the first many-rooms phase, sends):
 * - bystanders: two groups of five exchange messages (sendMessage) with and without B idle
 *               sockets elsewhere on messageAdded without argument; target >= 0.9 x messages/s
 *               and p99 <= 1.2 x of the same run without them;
 * - many rooms, sends: R groups of five, every member on messageAdded without argument;
 *               BENCH_ROOM_SENDS sendMessage over HTTP to random groups, BENCH_ROOM_IN_FLIGHT at a
 *               time, against a storing room router (ws + Node http + pg: token check, one insert
 *               with its own commit, then the room's sockets; see runStoring), in rounds; prints
 *               each round and Parley's ratios to it per round, and each run's CPU a send in
 *               every process it kept busy (server, PostgreSQL, Redis, this load client). Targets (issue 29): >= 0.8 x its
 *               deliveries/s, p99 <= 1.5 x its p99;
 * - many rooms: R groups of five, every member on messageAdded without argument, events entering
 *               through Redis (as other instances publish them) to random groups, against a bare
 *               ws server that routes by room from the same channels; target >= 0.8 x deliveries/s.
 *               Each server first takes the same load unmeasured (its steady state is measured, not
 *               its JIT warm-up), and reports its CPU time per delivery (all, and in its own code)
 *               beside the rate (the rate is the whole box's: load client, Redis and server share
 *               the cores);
 *               then two instances with the rooms split between them: each takes only its rooms'
 *               events from Redis, and examines one subscription per local recipient.
 * Then memory: RSS growth of the server process per idle authenticated connection with three
 * subscriptions (messageAdded, presenceChanged, groupEvent), at C connections, against bare
 * connections. Servers run in child processes started with --expose-gc, so RSS is theirs alone.
 *
 * Targets: deliveries/s >= 0.8 x bare, p99 <= 1.5 x bare, memory per connection <= 1.5 x bare,
 * and no delivery missing. Exits 1 when a delivery is missing or duplicated; a missed target is
 * reported, not an exit code (the machine is shared and numbers move between runs).
 *
 * Settings (environment):
 * - DATABASE_URL   postgres://… whose name contains 'bench' or 'test'; its tables are EMPTIED. Required.
 * - REDIS_URL      redis://… ; its keyspace is FLUSHED. Required.
 * - BENCH_SUBSCRIBERS  S. @default 2000
 * - BENCH_MESSAGES     M. @default 200
 * - BENCH_CONNECTIONS  C, for the memory measurement. @default 5000
 * - BENCH_CONCURRENCY  mutations in flight at once. @default 1 (each sent when the previous is answered)
 * - BENCH_ROUNDS       rounds of (bare, x1, x2), alternated; each run reports its best deliveries/s and its
 *                      best p50 and p99 across rounds. @default 2
 * - BENCH_BYSTANDERS   B. @default 10000
 * - BENCH_ROOMS        R. @default 1000
 * - BENCH_ROOM_EVENTS  events per many-rooms run. @default 4000
 * - BENCH_ROOM_WARMUP  events of the unmeasured pass before it. @default BENCH_ROOM_EVENTS
 * - BENCH_ROOM_SENDS   sendMessage requests per many-rooms sends run. @default 2000
 * - BENCH_ROOM_IN_FLIGHT  of them at once. @default 8
 * - BENCH_ROOM_SEND_WARMUP  requests of the same load, unmeasured, before. @default BENCH_ROOM_SENDS / 2
 * - BENCH_AGAINST      a path to another checkout of Parley (a git worktree, its node_modules linked):
 *                      the many-rooms sends' rounds measure it too, after this one, and print this
 *                      one's ratio to it (an A/B within one run; the machine moves ±20% between runs).
 * - BENCH_AGAINST_ENV  settings for that other one only, `NAME=value,...` (BENCH_AGAINST=. A/Bs a setting).
 * - BENCH_SKIP         comma list of phases to skip: one-room, x2, memory, rooms, bystanders, sends,
 *                      inject (the many-rooms phases through Redis, x2's too).
 *                      bench:rooms: one-room,memory,x2,bystanders,inject unless set.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import WebSocket, { WebSocketServer } from 'ws';
import { agent, answer, connect, inBatches, post, resetState as wipe, runParley, seedUsers, sleep, startChild as fork, type Child, type FromChild, type Seeded, type ToChild } from './harness';
import { handwritten } from './handwritten';
import { roomPhases, roomUsersNeeded } from './rooms';
import { out, positive, required } from './util';

const DATABASE_URL = required('DATABASE_URL', 'a database whose name contains bench or test');
const REDIS_URL = required('REDIS_URL', 'a Redis of its own: it is flushed');
const S = positive('BENCH_SUBSCRIBERS', 2000);
const M = positive('BENCH_MESSAGES', 200);
const C = positive('BENCH_CONNECTIONS', 5000);
const CONCURRENCY = positive('BENCH_CONCURRENCY', 1);
const ROUNDS = positive('BENCH_ROUNDS', 2);
const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').map((s) => s.trim()).filter(Boolean));
/** Another checkout of Parley (a worktree with node_modules), measured beside this one in the many-rooms sends' rounds: an A/B in one run. */
const AGAINST = process.env.BENCH_AGAINST || undefined;
/** Settings of that other one only (`NAME=value,NAME=value`): with BENCH_AGAINST=. it A/Bs a setting. */
const AGAINST_ENV = Object.fromEntries((process.env.BENCH_AGAINST_ENV ?? '').split(',').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const PASSWORD = 'bench-fanout-password';
const MESSAGE_SUB = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { id content createdAt sender { id username } } }';
const SEND = 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }';

// ================= child processes: the servers under test =================

/**
 * The baselines' graphql-transport-ws side: connection_init is acknowledged, once `join` is done
 * for a socket whose payload names a `room`.
 */
function acceptRooms(server: http.Server, join: (room: string, socket: WebSocket) => Promise<void>): WebSocketServer {
  const wss = new WebSocketServer({ server, path: '/graphql' });
  wss.on('connection', (socket) => {
    socket.on('message', (data) => {
      const text = String(data);
      if (!text.includes('"connection_init"')) return;
      const room = (JSON.parse(text) as { payload?: { room?: string } }).payload?.room;
      if (!room) return socket.send('{"type":"connection_ack"}');
      void join(room, socket).then(() => socket.send('{"type":"connection_ack"}'));
    });
  });
  return wss;
}

/**
 * The baseline: a plain ws server. It acknowledges connection_init and, for every POST, builds the
 * message as Parley would send it, serializes it once and sends the same text to every socket.
 * A socket whose connection_init names a `room` is routed by room instead: the server subscribes
 * to that room's Redis channel (as Parley names it) and sends each event there to the room's
 * sockets only, serialized once: a room-routed server at its floor.
 */
async function runBare(): Promise<void> {
  const sender = { id: randomUUID(), username: 'bench_sender' };
  const rooms = new Map<string, Set<WebSocket>>();
  // Only ever in subscriber mode: a reconnect's ready check (INFO) would be refused there.
  const redis = new Redis(REDIS_URL, { enableReadyCheck: false });
  redis.on('error', (e: Error) => process.stderr.write(`bare server's Redis: ${e.message}\n`));
  redis.on('message', (channel: string, raw: string) => {
    const room = rooms.get(channel.slice(channel.lastIndexOf(':') + 1));
    if (!room) return;
    const p = (JSON.parse(raw) as { payload: { id: string; content: string; createdAt: string; sender: { id: string; username: string } } }).payload;
    const text = JSON.stringify({ id: '1', type: 'next', payload: { data: { messageAdded: { id: p.id, content: p.content, createdAt: p.createdAt, sender: { id: p.sender.id, username: p.sender.username } } } } });
    for (const socket of room) if (socket.readyState === WebSocket.OPEN) socket.send(text);
  });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { variables: { t: string } };
      const message = { id: randomUUID(), content: body.variables.t, createdAt: new Date().toISOString(), sender };
      const text = JSON.stringify({ id: '1', type: 'next', payload: { data: { messageAdded: message } } });
      for (const socket of wss.clients) if (socket.readyState === WebSocket.OPEN) socket.send(text);
      const answer = JSON.stringify({ data: { sendMessage: { id: message.id } } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
      res.end(answer);
    });
  });
  const wss = acceptRooms(server, (room, socket) => {
    let members = rooms.get(room);
    const subscribed = members ? Promise.resolve() : redis.subscribe(`parley.conv:g:${room}`).then(() => undefined);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(socket);
    socket.on('close', () => {
      members!.delete(socket);
      if (members!.size) return;
      rooms.delete(room);
      void redis.unsubscribe(`parley.conv:g:${room}`);
    });
    return subscribed;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.on('message', async (m: ToChild) => {
    await answer(m);
    if (m.type === 'stop') process.exit(0);
  });
  process.send!({ type: 'ready', port: (server.address() as AddressInfo).port } satisfies FromChild);
}

/**
 * The many-rooms baseline that stores: a room router (ws + Node http + pg, no Redis: one instance)
 * whose sendMessage checks the token, stores the message durably (one insert with the membership
 * check, its own commit: bench/handwritten.ts) and then writes it, serialized once, to the sockets
 * of its room (named by connection_init's `room`, as the bare router takes it). Answers as Parley.
 */
async function runStoring(): Promise<void> {
  const store = handwritten(DATABASE_URL, Number(process.env.DB_POOL_MAX ?? 10));
  const rooms = new Map<string, Set<WebSocket>>();
  const reply = (res: http.ServerResponse, value: unknown) => {
    const body = JSON.stringify(value);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const send = async (req: http.IncomingMessage, res: http.ServerResponse, raw: string) => {
    const { variables } = JSON.parse(raw) as { variables: { g: string; t: string } };
    const userId = await store.viewer(req.headers.authorization);
    if (!userId) return reply(res, { errors: [{ message: 'Not authenticated.', extensions: { code: 'UNAUTHENTICATED' } }] });
    const m = await store.send(variables.g, userId, variables.t);
    if (!m) return reply(res, { errors: [{ message: 'Not a member.', extensions: { code: 'FORBIDDEN' } }] });
    const message = { id: m.id, content: m.content, createdAt: m.created_at.toISOString(), sender: { id: m.sender_id, username: m.username } };
    const text = JSON.stringify({ id: '1', type: 'next', payload: { data: { messageAdded: message } } });
    for (const socket of rooms.get(variables.g) ?? []) if (socket.readyState === WebSocket.OPEN) socket.send(text);
    reply(res, { data: { sendMessage: { id: m.id } } });
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void send(req, res, Buffer.concat(chunks).toString('utf8')).catch((e: Error) => reply(res, { errors: [{ message: e.message }] })));
  });
  acceptRooms(server, (room, socket) => {
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(socket);
    socket.on('close', () => members!.delete(socket));
    return Promise.resolve();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.on('message', async (m: ToChild) => {
    await answer(m);
    if (m.type === 'stop') process.exit(0);
  });
  process.send!({ type: 'ready', port: (server.address() as AddressInfo).port } satisfies FromChild);
}

// ================= seeding (not measured) =================

const startChild = (role: 'parley' | 'bare' | 'storing' | 'against', env: Record<string, string> = {}): Promise<Child> =>
  // 'against': Parley as another checkout has it (BENCH_AGAINST), its own bench/fanout.ts and src/.
  role === 'against' ? fork(path.resolve(AGAINST!, 'bench/fanout.ts'), 'parley', { ...env, ...AGAINST_ENV }) : fork(__filename, role, env);
const resetState = () => wipe(DATABASE_URL, REDIS_URL);
const seed = (url: string, n: number): Promise<Seeded> => seedUsers(url, DATABASE_URL, n, PASSWORD);


// ================= the load client =================

interface FanoutResult {
  name: string;
  deliveries: number;
  expected: number;
  missing: number;
  duplicates: number;
  seconds: number;
  perSecond: number;
  p50: number;
  p99: number;
}

/**
 * S sockets (spread over `targets`), each subscribed to the group's messages; M messages sent to
 * `sendTo`, one after another. A message's latency is from the moment its mutation is sent to the
 * moment one socket receives it; throughput counts every delivery from the first send to the last receipt.
 */
async function fanout(name: string, targets: string[], sendTo: string, seeded: Seeded): Promise<FanoutResult> {
  const subscribers = seeded.users.slice(0, S);
  const sender = seeded.users[0];
  let round = 'w'; // the warm-up round's marker, then 'm' for measured messages
  const seen = new Uint8Array(S * M);
  const latencies = new Float64Array(S * M);
  const warmed = new Uint8Array(S);
  const sentAt = new Float64Array(M);
  let received = 0;
  let duplicates = 0;
  let last = 0;
  const marker = /"content":"bench ([wm])(\d+)"/;
  const sockets: WebSocket[] = [];
  await inBatches(subscribers, 100, async (u, i) => {
    const ws = await connect(targets[i % targets.length], u.token, [{ id: '1', query: MESSAGE_SUB, variables: { g: seeded.lobby } }], (text) => {
      const now = performance.now();
      const m = marker.exec(text);
      if (!m) return;
      if (m[1] === 'w') return void (warmed[i] = 1);
      if (round !== 'm') return;
      const seq = Number(m[2]);
      const k = i * M + seq;
      if (seen[k]) return void duplicates++;
      seen[k] = 1;
      latencies[k] = now - sentAt[seq];
      received++;
      last = now;
    });
    sockets.push(ws);
  });
  // Subscriptions start asynchronously: warm up until every socket has received something.
  for (let w = 0; warmed.some((x) => !x); w++) {
    if (w > 100) throw new Error(`${name}: ${warmed.filter((x) => !x).length} sockets never received a warm-up message`);
    await post(sendTo, SEND, { g: seeded.lobby, t: `bench w${w}` }, sender.token);
    await sleep(w < 3 ? 200 : 500);
  }
  await sleep(300);
  round = 'm';
  const expected = S * M;
  const started = performance.now();
  let next = 0;
  const sendAll = async () => {
    while (next < M) {
      const seq = next++;
      sentAt[seq] = performance.now();
      await post(sendTo, SEND, { g: seeded.lobby, t: `bench m${seq}` }, sender.token);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, sendAll));
  // Wait for the rest, as long as deliveries keep coming.
  let before = -1;
  while (received < expected && received !== before) {
    before = received;
    await sleep(2000);
  }
  const got = latencies.filter((_, k) => seen[k]).sort();
  const pct = (p: number) => (got.length ? got[Math.min(got.length - 1, Math.floor(p * got.length))] : NaN);
  for (const ws of sockets) ws.terminate();
  await sleep(500);
  const seconds = (last - started) / 1000;
  return { name, deliveries: received, expected, missing: expected - received, duplicates, seconds, perSecond: received / seconds, p50: pct(0.5), p99: pct(0.99) };
}

/** Server RSS growth per connection: C sockets opened (each with `subs`), measured after GC. */
async function memory(child: Child, seeded: Seeded, subs: (u: { id: string }) => { id: string; query: string; variables?: Record<string, unknown> }[]): Promise<{ before: number; after: number; perConnection: number }> {
  const users = seeded.users.slice(0, C);
  // Warm the code paths first, so the measurement is connections, not JIT and caches.
  const warm: WebSocket[] = [];
  await inBatches(users.slice(0, 100), 50, async (u) => void warm.push(await connect(child.wsUrl, u.token, subs(u), () => undefined)));
  await sleep(500);
  for (const ws of warm) ws.close();
  await sleep(1500);
  const before = await child.rss();
  const sockets: WebSocket[] = [];
  await inBatches(users, 100, async (u) => void sockets.push(await connect(child.wsUrl, u.token, subs(u), () => undefined)));
  await sleep(3000);
  const after = await child.rss();
  for (const ws of sockets) ws.terminate();
  return { before, after, perConnection: (after - before) / users.length };
}

// ================= report =================

const fmt = (n: number, d = 0) => n.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d });

function table(rows: FanoutResult[], base: FanoutResult): void {
  out(`${'run'.padEnd(12)}${'deliveries'.padStart(12)}${'missing'.padStart(9)}${'dup'.padStart(6)}${'seconds'.padStart(9)}${'deliv/s'.padStart(11)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'x bare/s'.padStart(10)}${'x bare p99'.padStart(12)}`);
  for (const r of rows) {
    out(
      `${r.name.padEnd(12)}${fmt(r.deliveries).padStart(12)}${fmt(r.missing).padStart(9)}${fmt(r.duplicates).padStart(6)}${fmt(r.seconds, 2).padStart(9)}${fmt(r.perSecond).padStart(11)}${fmt(r.p50, 1).padStart(9)}${fmt(r.p99, 1).padStart(9)}${(r.perSecond / base.perSecond).toFixed(2).padStart(10)}${(r.p99 / base.p99).toFixed(2).padStart(12)}`,
    );
  }
}

async function main(): Promise<void> {
  out(`bench:fanout  S=${S} subscribers, M=${M} messages (${CONCURRENCY} in flight), C=${C} idle connections; ${new Date().toISOString()}`);
  await resetState();
  // The bench sends faster than one user may, and connects its users 100 at a time from one
  // address: the per-user send limit and the per-address cap on sockets awaiting connection_init are lifted.
  const env = { DATABASE_URL, REDIS_URL, DB_POOL_MAX: '20', RATE_LIMIT_SEND_MESSAGE: '1000000/1s', WS_MAX_PENDING_PER_IP: '1000' };
  let a = await startChild('parley', env);
  const seeded = await seed(a.url, Math.max(S, C, SKIP.has('rooms') ? 0 : roomUsersNeeded(SKIP)));
  out(`seeded ${fmt(seeded.users.length)} users in the lobby`);

  const bare = await startChild('bare');
  const b = SKIP.has('x2') ? undefined : await startChild('parley', env);
  // Rounds alternate the runs, so a noisy stretch of the shared machine hits each of them
  // alike; each run's figures are its best across rounds (the baseline's too).
  const rounds: FanoutResult[][] = [];
  for (let round = 1; round <= (SKIP.has('one-room') ? 0 : ROUNDS); round++) {
    const results = [await fanout('bare', [bare.wsUrl], bare.url, seeded), await fanout('parley x1', [a.wsUrl], a.url, seeded)];
    if (b) results.push(await fanout('parley x2', [a.wsUrl, b.wsUrl], a.url, seeded));
    out();
    out(`round ${round} of ${ROUNDS}`);
    table(results, results[0]);
    rounds.push(results);
  }
  await b?.stop();
  // Best throughput and best latency are taken separately (the two need not come from one round).
  const results = (rounds[0] ?? []).map((_, k) => {
    const runs = rounds.map((r) => r[k]);
    const fastest = runs.reduce((x, y) => (y.perSecond > x.perSecond ? y : x));
    return { ...fastest, p50: Math.min(...runs.map((r) => r.p50)), p99: Math.min(...runs.map((r) => r.p99)) };
  });
  const missing = rounds.flat().filter((r) => r.missing || r.duplicates);
  out();
  if (results.length) {
    out(ROUNDS > 1 ? `best of ${ROUNDS} rounds` : 'result');
    table(results, results[0]);
  }

  let mem: { bare: number; parley: number } | undefined;
  if (!SKIP.has('memory')) {
    // Fresh processes, so the fan-out runs above leave nothing behind in the numbers.
    await bare.stop();
    await a.stop();
    const bareChild = await startChild('bare');
    const bareMem = await memory(bareChild, seeded, () => [{ id: '1', query: MESSAGE_SUB, variables: { g: seeded.lobby } }]);
    await bareChild.stop();
    a = await startChild('parley', env);
    const watched = seeded.users[0].id;
    const parleyMem = await memory(a, seeded, () => [
      { id: '1', query: MESSAGE_SUB, variables: { g: seeded.lobby } },
      { id: '2', query: 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', variables: { ids: [watched] } },
      { id: '3', query: 'subscription { groupEvent { kind group { id name } } }' },
    ]);
    mem = { bare: bareMem.perConnection, parley: parleyMem.perConnection };
    out();
    out(`memory at ${fmt(C)} idle connections (server RSS after GC):`);
    out(`  bare       ${fmt(bareMem.before / 1048576, 1)} MB -> ${fmt(bareMem.after / 1048576, 1)} MB, ${fmt(bareMem.perConnection / 1024, 1)} KB per connection`);
    out(`  parley     ${fmt(parleyMem.before / 1048576, 1)} MB -> ${fmt(parleyMem.after / 1048576, 1)} MB, ${fmt(parleyMem.perConnection / 1024, 1)} KB per connection (3 subscriptions), ${(parleyMem.perConnection / bareMem.perConnection).toFixed(2)} x bare`);
  } else {
    await bare.stop();
  }
  await a.stop();

  let roomsClean = true;
  if (!SKIP.has('rooms')) {
    roomsClean = await roomPhases(
      { databaseUrl: DATABASE_URL, redisUrl: REDIS_URL, rounds: ROUNDS, skip: SKIP, against: AGAINST, startChild: (role) => startChild(role, role === 'bare' ? {} : env), connect, post, inBatches },
      seeded.users,
    );
  }

  out();
  const base = results[0];
  for (const r of results.slice(1)) {
    const t = r.perSecond / base.perSecond >= 0.8;
    const l = r.p99 / base.p99 <= 1.5;
    const lost = rounds.flat().filter((x) => x.name === r.name);
    const gone = lost.reduce((n, x) => n + x.missing, 0);
    const dup = lost.reduce((n, x) => n + x.duplicates, 0);
    out(`${r.name}: deliveries/s ${t ? 'meets' : 'MISSES'} 0.8 x bare, p99 ${l ? 'meets' : 'MISSES'} 1.5 x bare, ${gone || dup ? `${gone} MISSING, ${dup} duplicated` : 'no delivery missing in any round'}`);
  }
  const failed = missing.length > 0 || !roomsClean;
  if (mem) out(`memory: ${mem.parley / mem.bare <= 1.5 ? 'meets' : 'MISSES'} 1.5 x bare per connection`);
  agent.destroy();
  process.exit(failed ? 1 : 0);
}

const role = process.argv[2];
// A server whose parent is gone (killed, crashed) stops too.
if (role) process.on('disconnect', () => process.exit(0));
const run = role === 'parley' ? runParley : role === 'bare' ? runBare : role === 'storing' ? runStoring : main;
run().catch((e) => {
  process.stderr.write(`bench:fanout${role ? ` (${role})` : ''}: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
