/**
 * bench:fanout's phases of many small conversations (see the header of bench/fanout.ts): the
 * cost of a message must follow its recipients, not everyone connected.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Redis } from 'ioredis';
import type WebSocket from 'ws';
import { cpuSince, out, positive, procCpuMs, query } from './util';

const B = positive('BENCH_BYSTANDERS', 10_000);
const R = positive('BENCH_ROOMS', 1000);
const ROOM_SIZE = 5;
/** Messages per bystander run (two rooms, one in flight each) and events per many-rooms run. */
const BYSTANDER_MESSAGES = positive('BENCH_BYSTANDER_MESSAGES', 300);
const ROOM_EVENTS = positive('BENCH_ROOM_EVENTS', 4000);
/** Events of the same load sent, unmeasured, before the many-rooms measurement. */
const ROOM_WARMUP = positive('BENCH_ROOM_WARMUP', ROOM_EVENTS);
/** sendMessage requests per many-rooms sends run, how many in flight, and how many of the same load unmeasured before. */
const ROOM_SENDS = positive('BENCH_ROOM_SENDS', 2000);
const ROOM_IN_FLIGHT = positive('BENCH_ROOM_IN_FLIGHT', 8);
const ROOM_SEND_WARMUP = positive('BENCH_ROOM_SEND_WARMUP', ROOM_SENDS / 2);
const ALL_MINE = 'subscription { messageAdded { id content createdAt sender { id username } } }';
const SEND = 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }';

type User = { id: string; token: string };
interface Child {
  pid: number;
  url: string;
  wsUrl: string;
  cpu(): Promise<{ user: number; system: number }>;
  stop(): Promise<void>;
}

/** What bench/fanout.ts lends these phases. */
export interface RoomKit {
  databaseUrl: string;
  redisUrl: string;
  rounds: number;
  skip: Set<string>;
  /** Another checkout, measured as 'against' beside 'parley' (see BENCH_AGAINST in bench/fanout.ts). */
  against?: string;
  startChild(role: 'parley' | 'bare' | 'storing' | 'against'): Promise<Child>;
  connect(wsUrl: string, token: string, subs: { id: string; query: string }[], onNext: (text: string) => void, init?: Record<string, unknown>): Promise<WebSocket>;
  post(url: string, query: string, variables: Record<string, unknown>, token?: string): Promise<any>;
  inBatches<T>(items: T[], size: number, fn: (t: T, i: number) => Promise<void>): Promise<void>;
}

/** Users these phases need, beyond the one-room run's. */
export const roomUsersNeeded = (skip: Set<string>): number => Math.max(skip.has('bystanders') ? 0 : 2 * ROOM_SIZE + B, R * ROOM_SIZE);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, d = 0) => n.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d });
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};

/** Groups of ROOM_SIZE made by SQL (not measured): `members[i]` of room i. */
async function makeRooms(databaseUrl: string, members: User[][], name: string): Promise<string[]> {
  const ids = members.map(() => randomUUID());
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await db.query(
      `insert into groups (id, name, owner_id, is_private, is_lobby, member_count, created_at)
       select g.id, $2 || g.n, g.owner, true, false, $4, now() from unnest($1::uuid[], $3::uuid[], $5::int[]) as g(id, owner, n)`,
      [ids, name, members.map((m) => m[0].id), ROOM_SIZE, ids.map((_, i) => i)],
    );
    const rows = members.flatMap((m, i) => m.map((u) => [ids[i], u.id]));
    await db.query(
      `insert into group_members (id, group_id, user_id, joined_at) select gen_random_uuid(), r.g, r.u, now() from unnest($1::uuid[], $2::uuid[]) as r(g, u)`,
      [rows.map((r) => r[0]), rows.map((r) => r[1])],
    );
    // Their sidebar rows, as joining stores them: a send writes them, as in any real group.
    await db.query(
      `insert into conversation_members (conversation_key, user_id, kind, group_id, joined_at, read_seq)
       select 'g:' || r.g, r.u, 'GROUP', r.g, now(), 0 from unnest($1::uuid[], $2::uuid[]) as r(g, u)`,
      [rows.map((r) => r[0]), rows.map((r) => r[1])],
    );
    // Statistics for the planner (autovacuum is off on the local PostgreSQL).
    await db.query('analyze');
  } finally {
    await db.end();
  }
  return ids;
}

/**
 * Each run starts from a database that autovacuum would keep: the local PostgreSQL runs without it,
 * and a Parley run leaves every member's sidebar row and every head updated several times (dead
 * rows, index entries that point at them), so that whichever server ran second in a round found the
 * other's dead rows: two Parley builds in one round each came out 20-25% slower when second.
 */
const vacuum = (databaseUrl: string) => query(databaseUrl, 'vacuum analyze');

const chunk = <T>(xs: T[], n: number): T[][] => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

/** Sockets of every room member, each on messageAdded without argument; `receipts` is called per delivery. */
async function joinRooms(kit: RoomKit, rooms: { id: string; members: User[] }[], wsUrlOf: (room: number) => string, onReceipt: (room: number, member: number, seq: number, kind: string) => void) {
  const marker = /"content":"bench ([a-z])(\d+)"/;
  const sockets: WebSocket[] = [];
  const flat = rooms.flatMap((r, ri) => r.members.map((u, mi) => ({ u, ri, mi })));
  await kit.inBatches(flat, 100, async ({ u, ri, mi }) => {
    const ws = await kit.connect(
      wsUrlOf(ri),
      u.token,
      [{ id: '1', query: ALL_MINE }],
      (text) => {
        const m = marker.exec(text);
        if (m) onReceipt(ri, mi, Number(m[2]), m[1]);
      },
      { room: rooms[ri].id },
    );
    sockets.push(ws);
  });
  return sockets;
}

/**
 * What a many-rooms run records of `events` events to random rooms: each (event, member) once and
 * in the event's room, its latency; warm-up deliveries ('w' marks a socket ready, 'x' is counted).
 */
function receipts(events: number, roomCount: number) {
  const seen = new Uint8Array(events * ROOM_SIZE);
  const r = {
    sentAt: new Float64Array(events),
    latencies: [] as number[],
    roomOf: Int32Array.from({ length: events }, () => Math.floor(Math.random() * roomCount)),
    ready: new Uint8Array(roomCount * ROOM_SIZE),
    duplicates: 0,
    last: 0,
    warm: 0,
    on(ri: number, mi: number, seq: number, kind: string): void {
      const now = performance.now();
      if (kind === 'w') return void (r.ready[ri * ROOM_SIZE + mi] = 1);
      if (kind === 'x') return void r.warm++;
      if (r.roomOf[seq] !== ri) return void r.duplicates++; // a room's event reached another room
      const k = seq * ROOM_SIZE + mi;
      if (seen[k]) return void r.duplicates++;
      seen[k] = 1;
      r.latencies.push(now - r.sentAt[seq]);
      r.last = now;
    },
  };
  return r;
}

/** A many-rooms run's figures: its deliveries over `seconds`, and its servers' CPU (ms) per delivery. */
function outcome(name: string, rec: ReturnType<typeof receipts>, expected: number, seconds: number, userMs: number, systemMs: number): Run {
  const n = rec.latencies.length;
  return {
    name,
    perSecond: n / seconds,
    cpuPerDelivery: ((userMs + systemMs) * 1000) / Math.max(1, n),
    userPerDelivery: (userMs * 1000) / Math.max(1, n),
    deliveries: n,
    missing: expected - n,
    duplicates: rec.duplicates,
    p50: percentile(rec.latencies, 0.5),
    p99: percentile(rec.latencies, 0.99),
  };
}

/** Idle sockets on messageAdded without argument, members of none of the rooms. */
async function openBystanders(kit: RoomKit, wsUrl: string, users: User[]): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  await kit.inBatches(users, 100, async (u) => void sockets.push(await kit.connect(wsUrl, u.token, [{ id: '1', query: ALL_MINE }], () => undefined)));
  return sockets;
}

interface Run {
  name: string;
  perSecond: number;
  /** The servers' CPU time per delivery (µs), where measured, and its part in their own code (user; the rest is the kernel's, mostly socket writes). */
  cpuPerDelivery?: number;
  userPerDelivery?: number;
  /** The server's read and write system calls per send, where measured. */
  syscallsPerSend?: number;
  /** CPU per send (µs) of each process the run kept busy, where measured: the server, PostgreSQL's backends, Redis, this load client. */
  box?: { server: number; postgres: number; redis: number; client: number };
  deliveries: number;
  missing: number;
  duplicates: number;
  p50: number;
  p99: number;
}

/** Two rooms exchange messages through sendMessage, one in flight per room, each sent when all its room received the previous. */
async function exchange(kit: RoomKit, name: string, server: Child, rooms: { id: string; members: User[] }[]): Promise<Run> {
  const got = rooms.map(() => new Map<number, Set<number>>());
  const latencies: number[] = [];
  const sentAt = new Map<number, number>();
  const waiters = new Map<number, () => void>();
  let duplicates = 0;
  let warm = 0;
  const sockets = await joinRooms(kit, rooms, () => server.wsUrl, (ri, mi, seq, kind) => {
    if (kind === 'w') return void warm++;
    const seen = got[ri].get(seq) ?? new Set();
    got[ri].set(seq, seen);
    if (seen.has(mi)) return void duplicates++;
    seen.add(mi);
    latencies.push(performance.now() - sentAt.get(seq)!);
    if (seen.size === ROOM_SIZE) waiters.get(seq)?.();
  });
  for (let w = 0; warm < rooms.length * ROOM_SIZE; w++) {
    if (w > 50) throw new Error(`${name}: sockets never warmed up`);
    warm = 0;
    await Promise.all(rooms.map((r) => kit.post(server.url, SEND, { g: r.id, t: `bench w${w}` }, r.members[0].token)));
    await sleep(300);
  }
  const started = performance.now();
  await Promise.all(
    rooms.map(async (room, ri) => {
      for (let k = ri; k < BYSTANDER_MESSAGES; k += rooms.length) {
        const done = new Promise<void>((r) => waiters.set(k, r));
        const timeout = sleep(5000).then(() => undefined);
        sentAt.set(k, performance.now());
        await kit.post(server.url, SEND, { g: room.id, t: `bench m${k}` }, room.members[k % ROOM_SIZE].token);
        await Promise.race([done, timeout]);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const ws of sockets) ws.terminate();
  const deliveries = latencies.length;
  await sleep(300);
  return { name, perSecond: BYSTANDER_MESSAGES / seconds, deliveries, missing: BYSTANDER_MESSAGES * ROOM_SIZE - deliveries, duplicates, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) };
}

/**
 * Events published straight to Redis, to random rooms, as other instances' sendMessage would
 * publish them; every member of each room must receive each of its room's events once.
 */
async function inject(
  kit: RoomKit,
  name: string,
  servers: Child[],
  wsUrlOf: (room: number) => string,
  rooms: { id: string; members: User[] }[],
  warmed?: (roomOf: Int32Array) => Promise<void>,
): Promise<Run> {
  const rec = receipts(ROOM_EVENTS, rooms.length);
  const { sentAt, latencies, roomOf, ready } = rec;
  const sockets = await joinRooms(kit, rooms, wsUrlOf, rec.on);
  const redis = new Redis(kit.redisUrl);
  const sender = rooms[0].members[0];
  const publish = (room: number, text: string) => {
    const id = randomUUID();
    const g = rooms[room].id;
    const payload = {
      id,
      conversationKey: `g:${g}`,
      senderId: sender.id,
      sender: { id: sender.id, username: 'bench_sender', displayName: null, createdAt: new Date().toISOString() },
      content: text,
      attachment: null,
      groupId: g,
      projectId: null,
      recipientId: null,
      clientMessageId: null,
      createdAt: new Date().toISOString(),
    };
    return redis.publish(`parley.conv:g:${g}`, JSON.stringify({ parleyOrigin: 'bench', topic: 'parley.message.added', payload }));
  };
  for (let w = 0; ready.some((x) => !x); w++) {
    if (w > 30) throw new Error(`${name}: ${ready.filter((x) => !x).length} sockets never warmed up`);
    const cold = new Set<number>();
    ready.forEach((x, i) => !x && cold.add(Math.floor(i / ROOM_SIZE)));
    await Promise.all([...cold].map((r) => publish(r, `bench w${w}`)));
    await sleep(500);
  }
  // Open loop, in slices of 100 per turn of the event loop, so the client keeps reading sockets.
  const blast = async (marker: string, rooms: Int32Array, sent?: Float64Array) => {
    for (let k = 0; k < rooms.length; k += 100) {
      const batch: Promise<unknown>[] = [];
      for (let j = k; j < Math.min(rooms.length, k + 100); j++) {
        if (sent) sent[j] = performance.now();
        batch.push(publish(rooms[j], `bench ${marker}${j}`));
      }
      await Promise.all(batch);
      await new Promise(setImmediate);
    }
  };
  // The same load once unmeasured, so both servers are measured in their steady state: a fresh
  // process spends the first thousands of events optimizing its code (perf put 14% of Parley's
  // measured window in V8's compiler without this), which a server running for days pays once.
  const warmRooms = Int32Array.from({ length: ROOM_WARMUP }, () => Math.floor(Math.random() * rooms.length));
  await blast('x', warmRooms);
  await settle(() => rec.warm, ROOM_WARMUP * ROOM_SIZE);
  await warmed?.(roomOf);
  const cpu = async () => (await Promise.all(servers.map((s) => s.cpu()))).reduce((a, b) => ({ user: a.user + b.user, system: a.system + b.system }));
  const cpuBefore = await cpu();
  const started = performance.now();
  await blast('r', roomOf, sentAt);
  const expected = ROOM_EVENTS * ROOM_SIZE;
  await settle(() => latencies.length, expected);
  const cpuAfter = await cpu();
  const [userMs, systemMs] = [cpuAfter.user - cpuBefore.user, cpuAfter.system - cpuBefore.system];
  redis.disconnect();
  for (const ws of sockets) ws.terminate();
  await sleep(500);
  const seconds = (rec.last - started) / 1000;
  return outcome(name, rec, expected, seconds, userMs, systemMs);
}

/** Waits until `count` reaches `expected` or stops moving for a second. */
async function settle(count: () => number, expected: number): Promise<void> {
  let before = -1;
  while (count() < expected && count() !== before) {
    before = count();
    await sleep(1000);
  }
}

/**
 * sendMessage over HTTP to random rooms, ROOM_IN_FLIGHT at a time, each by a random member of
 * its room; every member of the room (the sender too: messageAdded without argument) must receive
 * it once. Latency: from the request's start to each delivery.
 */
async function sends(kit: RoomKit, name: string, server: Child, rooms: { id: string; members: User[] }[]): Promise<Run> {
  const rec = receipts(ROOM_SENDS, rooms.length);
  const { sentAt, latencies, roomOf, ready } = rec;
  const sockets = await joinRooms(kit, rooms, () => server.wsUrl, rec.on);
  /** Sends to `to[j]` for every j, ROOM_IN_FLIGHT at a time. */
  const blast = async (marker: string, to: ArrayLike<number>, sent?: Float64Array) => {
    let next = 0;
    const worker = async () => {
      for (let j = next++; j < to.length; j = next++) {
        const room = rooms[to[j]];
        if (sent) sent[j] = performance.now();
        await kit.post(server.url, SEND, { g: room.id, t: `bench ${marker}${j}` }, room.members[Math.floor(Math.random() * ROOM_SIZE)].token);
      }
    };
    await Promise.all(Array.from({ length: ROOM_IN_FLIGHT }, worker));
  };
  for (let w = 0; ready.some((x) => !x); w++) {
    if (w > 30) throw new Error(`${name}: ${ready.filter((x) => !x).length} sockets never warmed up`);
    const cold = new Set<number>();
    ready.forEach((x, i) => !x && cold.add(Math.floor(i / ROOM_SIZE)));
    await blast('w', [...cold]);
    await sleep(500);
  }
  // The same load once unmeasured (JIT warm-up, pools filled), then the measured one.
  await blast('x', Int32Array.from({ length: ROOM_SEND_WARMUP }, () => Math.floor(Math.random() * rooms.length)));
  await settle(() => rec.warm, ROOM_SEND_WARMUP * ROOM_SIZE);
  const others = await boxProcesses(kit);
  const othersBefore = others.map((pids) => procCpuMs(pids));
  const clientBefore = process.cpuUsage();
  const cpuBefore = await server.cpu();
  const callsBefore = syscalls(server.pid);
  const started = performance.now();
  await blast('r', roomOf, sentAt);
  const requestsDone = performance.now();
  const expected = ROOM_SENDS * ROOM_SIZE;
  await settle(() => latencies.length, expected);
  const cpuAfter = await server.cpu();
  const client = process.cpuUsage(clientBefore);
  const after = await boxProcesses(kit);
  const [pgMs, redisMs] = othersBefore.map((before, i) => cpuSince(before, after[i]));
  const calls = syscalls(server.pid) - callsBefore;
  for (const ws of sockets) ws.terminate();
  await sleep(500);
  const seconds = (Math.max(rec.last, requestsDone) - started) / 1000;
  const perSend = (ms: number) => (ms * 1000) / ROOM_SENDS;
  const box = {
    server: perSend(cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system),
    postgres: perSend(pgMs),
    redis: perSend(redisMs),
    client: (client.user + client.system) / ROOM_SENDS,
  };
  return { ...outcome(name, rec, expected, seconds, cpuAfter.user - cpuBefore.user, cpuAfter.system - cpuBefore.system), syscallsPerSend: calls / ROOM_SENDS, box };
}

/**
 * The processes beside the server on this machine whose CPU a run also spends: PostgreSQL's
 * backends of the bench database (every connection open now: the server's pool is) and Redis's
 * server (its process_id, when it runs here: /proc has it). The bench's rate is the machine's.
 */
async function boxProcesses(kit: RoomKit): Promise<[number[], number[]]> {
  const backends = (await query<{ pid: number }>(kit.databaseUrl, 'select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()')).map((r) => r.pid);
  const redis = new Redis(kit.redisUrl);
  try {
    const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1] ?? NaN);
    return [backends, Number.isFinite(redisPid) && procCpuMs([redisPid]).size ? [redisPid] : []];
  } finally {
    redis.disconnect();
  }
}

/** Read and write system calls a process has made so far (/proc/<pid>/io): on a VM each costs microseconds. */
function syscalls(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return field('syscr') + field('syscw');
}

/** Counters of one instance's /metrics. */
async function counters(s: Child): Promise<{ received: number; evaluations: number }> {
  const text = await (await fetch(s.url.replace('/graphql', '/metrics'))).text();
  const read = (prefix: string) => Number(text.split('\n').find((l) => l.startsWith(prefix))?.split(' ').pop() ?? 0);
  return { received: read('parley_pubsub_events_received_total{topic="parley.message.added"}'), evaluations: read('parley_fanout_evaluations_total') };
}

function table(rows: Run[], base: Run, unit: string): void {
  const cpu = base.cpuPerDelivery !== undefined;
  out(
    `${'run'.padEnd(22)}${'deliveries'.padStart(11)}${'missing'.padStart(9)}${'dup'.padStart(5)}${unit.padStart(12)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'x base/s'.padStart(10)}${'x base p99'.padStart(12)}${cpu ? `${'cpu µs/deliv'.padStart(14)}${'x base cpu'.padStart(12)}${'user µs'.padStart(9)}${'calls/send'.padStart(12)}` : ''}`,
  );
  for (const r of rows) {
    out(
      `${r.name.padEnd(22)}${fmt(r.deliveries).padStart(11)}${fmt(r.missing).padStart(9)}${fmt(r.duplicates).padStart(5)}${fmt(r.perSecond).padStart(12)}${fmt(r.p50, 1).padStart(9)}${fmt(r.p99, 1).padStart(9)}${(r.perSecond / base.perSecond).toFixed(2).padStart(10)}${(r.p99 / base.p99).toFixed(2).padStart(12)}${cpu ? `${fmt(r.cpuPerDelivery!, 1).padStart(14)}${(r.cpuPerDelivery! / base.cpuPerDelivery!).toFixed(2).padStart(12)}${fmt(r.userPerDelivery!, 1).padStart(9)}${(r.syscallsPerSend === undefined ? '' : fmt(r.syscallsPerSend, 1)).padStart(12)}` : ''}`,
    );
  }
}

const best = (runs: Run[]): Run => ({
  ...runs.reduce((x, y) => (y.perSecond > x.perSecond ? y : x)),
  cpuPerDelivery: runs[0].cpuPerDelivery === undefined ? undefined : Math.min(...runs.map((r) => r.cpuPerDelivery!)),
  userPerDelivery: runs[0].userPerDelivery === undefined ? undefined : Math.min(...runs.map((r) => r.userPerDelivery!)),
  p50: Math.min(...runs.map((r) => r.p50)),
  p99: Math.min(...runs.map((r) => r.p99)),
  missing: runs.reduce((n, r) => n + r.missing, 0),
  duplicates: runs.reduce((n, r) => n + r.duplicates, 0),
});

/** Runs both phases; false when a delivery was missing or duplicated. */
export async function roomPhases(kit: RoomKit, users: User[]): Promise<boolean> {
  let clean = true;
  const verdicts: string[] = [];

  // ---- bystanders ----
  if (!kit.skip.has('bystanders')) {
    const pair = chunk(users.slice(0, 2 * ROOM_SIZE), ROOM_SIZE);
    const pairIds = await makeRooms(kit.databaseUrl, pair, 'bench pair ');
    const pairRooms = pair.map((members, i) => ({ id: pairIds[i], members }));
    const a = await kit.startChild('parley');
    const without: Run[] = [];
    const withThem: Run[] = [];
    for (let round = 1; round <= kit.rounds; round++) {
      without.push(await exchange(kit, 'two rooms', a, pairRooms));
      const idle = await openBystanders(kit, a.wsUrl, users.slice(2 * ROOM_SIZE, 2 * ROOM_SIZE + B));
      await sleep(1000);
      withThem.push(await exchange(kit, `two rooms + ${fmt(B)} idle`, a, pairRooms));
      for (const ws of idle) ws.terminate();
      await sleep(1000);
    }
    await a.stop();
    out();
    out(`bystanders: two groups of ${ROOM_SIZE} exchange ${BYSTANDER_MESSAGES} messages (sendMessage), with and without ${fmt(B)} idle sockets on messageAdded without argument; best of ${kit.rounds}`);
    const [w0, w1] = [best(without), best(withThem)];
    table([w0, w1], w0, 'messages/s');
    verdicts.push(`bystanders: messages/s ${w1.perSecond / w0.perSecond >= 0.9 ? 'meets' : 'MISSES'} 0.9 x, p99 ${w1.p99 / w0.p99 <= 1.2 ? 'meets' : 'MISSES'} 1.2 x without them`);
    clean &&= !w0.missing && !w0.duplicates && !w1.missing && !w1.duplicates;
  }

  // ---- many rooms ----
  const members = chunk(users.slice(0, R * ROOM_SIZE), ROOM_SIZE);
  const ids = await makeRooms(kit.databaseUrl, members, 'bench room ');
  const rooms = members.map((m, i) => ({ id: ids[i], members: m }));

  if (!kit.skip.has('sends')) {
    // Messages sent and persisted, against a router that persists each before writing it.
    const runs: Record<string, Run[]> = { storing: [], parley: [], against: [] };
    for (let round = 1; round <= kit.rounds; round++) {
      await vacuum(kit.databaseUrl);
      const storing = await kit.startChild('storing');
      runs.storing.push(await sends(kit, 'storing router', storing, rooms));
      await storing.stop();
      // With another checkout, the two Parleys take turns going first.
      const order = kit.against ? (round % 2 ? (['parley', 'against'] as const) : (['against', 'parley'] as const)) : (['parley'] as const);
      for (const role of order) {
        await vacuum(kit.databaseUrl);
        const child = await kit.startChild(role);
        runs[role].push(await sends(kit, role === 'parley' ? 'parley x1' : 'against', child, rooms));
        await child.stop();
      }
    }
    out();
    out(`many rooms, sends: ${fmt(R)} groups of ${ROOM_SIZE}, every member on messageAdded without argument; ${fmt(ROOM_SENDS)} sendMessage over HTTP to random groups, ${ROOM_IN_FLIGHT} in flight, each stored before it is delivered`);
    for (let round = 0; round < kit.rounds; round++) {
      out(`round ${round + 1} of ${kit.rounds}`);
      const row = [runs.storing[round], runs.parley[round], ...(kit.against ? [runs.against[round]] : [])];
      table(row, runs.storing[round], 'deliv/s');
      for (const r of row) if (r.box) out(`  ${r.name}: CPU µs a send: server ${fmt(r.box.server)}, PostgreSQL ${fmt(r.box.postgres)}, Redis ${fmt(r.box.redis)}, load client ${fmt(r.box.client)}; in all ${fmt(r.box.server + r.box.postgres + r.box.redis + r.box.client)}`);
    }
    // One run's figure over another's, round by round.
    const ratio = (of: Run[], to: Run[], f: (r: Run) => number) => of.map((p, i) => f(p) / f(to[i]));
    const range = (v: number[]) => `${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)}`;
    const [rate, p99] = [ratio(runs.parley, runs.storing, (r) => r.perSecond), ratio(runs.parley, runs.storing, (r) => r.p99)];
    out(`parley / storing router per round: deliveries/s ${range(rate)}x, p99 ${range(p99)}x, CPU per delivery ${range(ratio(runs.parley, runs.storing, (r) => r.cpuPerDelivery!))}x`);
    if (kit.against) {
      const ab = (f: (r: Run) => number) => range(ratio(runs.parley, runs.against, f));
      out(`against ${kit.against} / storing router per round: deliveries/s ${range(ratio(runs.against, runs.storing, (r) => r.perSecond))}x`);
      out(`parley / against per round: deliveries/s ${ab((r) => r.perSecond)}x, p99 ${ab((r) => r.p99)}x, CPU per delivery ${ab((r) => r.cpuPerDelivery!)}x`);
    }
    verdicts.push(
      `many rooms, sends: deliveries/s ${range(rate)}x a storing router (target >= 0.8: ${Math.min(...rate) >= 0.8 ? 'met in every round' : Math.max(...rate) >= 0.8 ? 'met in some rounds' : 'MISSED'}), p99 ${range(p99)}x (target <= 1.5: ${Math.max(...p99) <= 1.5 ? 'met in every round' : Math.min(...p99) <= 1.5 ? 'met in some rounds' : 'MISSED'})`,
    );
    clean &&= [...runs.storing, ...runs.parley, ...runs.against].every((r) => !r.missing && !r.duplicates);
  }

  if (kit.skip.has('inject')) {
    out();
    for (const v of verdicts) out(v);
    return clean;
  }
  const runs: Record<string, Run[]> = { bare: [], x1: [] };
  for (let round = 1; round <= kit.rounds; round++) {
    const bare = await kit.startChild('bare');
    runs.bare.push(await inject(kit, 'bare, routed by room', [bare], () => bare.wsUrl, rooms));
    await bare.stop();
    const x1 = await kit.startChild('parley');
    runs.x1.push(await inject(kit, 'parley x1', [x1], () => x1.wsUrl, rooms));
    await x1.stop();
  }
  out();
  out(`many rooms: ${fmt(R)} groups of ${ROOM_SIZE}, every member on messageAdded without argument; ${fmt(ROOM_EVENTS)} events to random groups through Redis; best of ${kit.rounds}`);
  const [bare, x1] = [best(runs.bare), best(runs.x1)];
  table([bare, x1], bare, 'deliv/s');
  verdicts.push(`many rooms: deliveries/s ${x1.perSecond / bare.perSecond >= 0.8 ? 'meets' : 'MISSES'} 0.8 x a room-routed bare server`);
  clean &&= !bare.missing && !bare.duplicates && !x1.missing && !x1.duplicates;

  if (!kit.skip.has('x2')) {
    // Two instances, each room's members all on one of them: each takes only its rooms' events.
    const pairOf = [await kit.startChild('parley'), await kit.startChild('parley')];
    let before: { received: number; evaluations: number }[] = [];
    let theirs = [0, 0];
    const run = await inject(kit, 'parley x2, rooms split', pairOf, (ri) => pairOf[ri % 2].wsUrl, rooms, async (roomOf) => {
      before = await Promise.all(pairOf.map(counters));
      theirs = [0, 1].map((i) => roomOf.filter((r) => r % 2 === i).length);
    });
    const after = await Promise.all(pairOf.map(counters));
    await Promise.all(pairOf.map((p) => p.stop()));
    out();
    table([bare, run], bare, 'deliv/s');
    out('per instance: events sent to its rooms, events it took from Redis, subscriptions it examined');
    let exact = true;
    for (const i of [0, 1]) {
      const received = after[i].received - before[i].received;
      const evaluations = after[i].evaluations - before[i].evaluations;
      exact &&= received === theirs[i] && evaluations === theirs[i] * ROOM_SIZE;
      out(`  instance ${i + 1}: its rooms' events ${fmt(theirs[i])}, received ${fmt(received)}, examined ${fmt(evaluations)} = ${(evaluations / Math.max(1, received)).toFixed(2)} per event (its local recipients' subscriptions: ${ROOM_SIZE})`);
    }
    verdicts.push(`two instances: ${exact ? 'each received exactly its rooms\' events and examined only its local recipients\' subscriptions' : 'MISSES: an instance received or examined more than its rooms\' events'}`);
    clean &&= !run.missing && !run.duplicates;
  }
  out();
  for (const v of verdicts) out(v);
  return clean;
}
