/**
 * Presence across a fleet: what each instance receives and writes, in each PRESENCE_VISIBILITY mode.
 *
 *   DATABASE_URL=postgres://…/h_presence_bench REDIS_URL=redis://127.0.0.1:MYPORT nice -n 10 npm run bench:fleet
 *
 * I instances (child processes, the real startServer) share one PostgreSQL and one Redis. S users
 * (one socket each, user i on instance i mod I) sit in groups of 5 to 50 members and have 10 friends
 * each (a ring: the 5 before and the 5 after in a shuffled order). Every socket connects first, then
 * subscribes to the argument-less `presenceChanged` (so the connect storm is not measured). Then the
 * churn: C users (the churners, spread over the instances) close their sockets (PRESENCE_GRACE=0:
 * OFFLINE at once), and once those transitions are through, connect again (ONLINE) without
 * subscribing. The other users are the watchers.
 *
 * Per instance, over the churn only: presence transitions received from Redis (Redis messages in:
 * the instance's own echoes included), transitions it published (Redis messages out), frames
 * written to its watchers' sockets (counted by this client), the presence channels it takes, and the
 * CPU time it spent over the churn window (/proc, user + system; idle time included).
 *
 * Checks (exit 1 when one fails):
 * - every mode: each watcher gets each transition it may see exactly once (everyone: all 2C; contacts:
 *   those of churners among its contacts), and none other;
 * - contacts: each instance receives at least the transitions one of its watchers may see, and at
 *   most those of users some socket on it may see (a churner's own instance included);
 * - everyone: each instance receives every transition.
 *
 * Settings (environment):
 * - DATABASE_URL     required; its name must contain 'bench'. Emptied, then filled.
 * - REDIS_URL        required; its keyspace is FLUSHED.
 * - BENCH_SOCKETS    S. @default 8000
 * - BENCH_INSTANCES  I. @default 4
 * - BENCH_CHURN      C. @default 100 (everyone mode writes 2 C S frames: 1.6 million at the defaults)
 * - BENCH_MODES      @default 'everyone,contacts'
 * - BENCH_REDIS_CLUSTER  '1': each mode runs on a fresh three-master Redis Cluster of its own
 *                  (redis-server and redis-cli on the PATH; sharded pub/sub) instead of REDIS_URL.
 */
import 'reflect-metadata';
import { fork, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { OwnRedisCluster } from '../test/helpers/redis-cluster';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import WebSocket from 'ws';
import type * as EnvModule from '../src/config/env';
import type * as ServerModule from '../src/server';
import { resetState, seedUsers, sleep } from './harness';
import { out, positive, procCpuMs } from './util';

type Mode = 'everyone' | 'contacts';
type Counters = { received: number; published: number; channels: number };
type ToMember = { type: 'counters' } | { type: 'stop' };
type FromMember = { type: 'ready'; port: number } | ({ type: 'counters' } & Counters);

const PRESENCE_TOPIC = 'parley.presence.changed';
const SUBSCRIPTION = 'subscription { presenceChanged { status user { id } } }';

/** One fleet member: a Parley instance that also tells its parent what it published and received. */
async function runMember(): Promise<void> {
  process.env.NODE_ENV = 'production';
  const { loadEnv } = require('../src/config/env') as typeof EnvModule;
  const { startServer } = require('../src/server') as typeof ServerModule;
  const env = loadEnv({ ...process.env, NODE_ENV: 'production', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error', LOG_PRETTY: 'false' });
  const server = await startServer({ env, jobs: false });
  const pubsub = server.services.pubsub;
  let published = 0;
  const publish = pubsub.publish.bind(pubsub);
  pubsub.publish = ((topic, payload) => {
    if (topic === PRESENCE_TOPIC) published++;
    return publish(topic, payload);
  }) as typeof pubsub.publish;
  process.on('message', async (m: ToMember) => {
    if (m.type === 'counters') {
      const channels = pubsub.takenChannels().filter((c) => c.includes(':pr:')).length;
      process.send!({ type: 'counters', received: pubsub.received[PRESENCE_TOPIC as keyof typeof pubsub.received] ?? 0, published, channels } satisfies FromMember);
    }
    if (m.type === 'stop') {
      await server.dispose();
      process.exit(0);
    }
  });
  process.send!({ type: 'ready', port: server.port } satisfies FromMember);
}

interface Member {
  pid: number;
  wsUrl: string;
  url: string;
  counters(): Promise<Counters>;
  stop(): Promise<void>;
}

function startMember(env: Record<string, string>): Promise<Member> {
  const proc: ChildProcess = fork(__filename, ['member'], { execArgv: ['-r', '@swc-node/register'], env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`fleet member exited with ${code} before it was ready`)));
    proc.once('message', (m: FromMember) => {
      if (m.type !== 'ready') return reject(new Error(`unexpected ${m.type}`));
      proc.removeAllListeners('exit');
      resolve({
        pid: proc.pid!,
        url: `http://127.0.0.1:${m.port}/graphql`,
        wsUrl: `ws://127.0.0.1:${m.port}/graphql`,
        counters: () =>
          new Promise((r) => {
            proc.once('message', (a: FromMember) => a.type === 'counters' && r({ received: a.received, published: a.published, channels: a.channels }));
            proc.send({ type: 'counters' } satisfies ToMember);
          }),
        stop: () =>
          new Promise<void>((r) => {
            const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
            proc.once('exit', () => (clearTimeout(timer), r()));
            proc.send({ type: 'stop' } satisfies ToMember);
          }),
      });
    });
  });
}

/** A deterministic shuffle (the same fleet in both modes). */
function shuffled<T>(items: T[], seed: number): T[] {
  const a = items.slice();
  let x = seed;
  const rand = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Groups of 5–50 and a ring of 10 friends, written by SQL; each user's contacts as the server should find them. */
async function seedSocialGraph(databaseUrl: string, ids: string[]): Promise<Map<string, Set<string>>> {
  const contacts = new Map(ids.map((id) => [id, new Set<string>()]));
  const link = (a: string, b: string) => (contacts.get(a)!.add(b), contacts.get(b)!.add(a));
  const order = shuffled(ids, 7);
  const groups: { id: string; members: string[] }[] = [];
  for (let i = 0, k = 0; i < order.length; k++) {
    const size = 5 + ((k * 37) % 46);
    const members = order.slice(i, i + size);
    i += size;
    groups.push({ id: '', members });
    for (const a of members) for (const b of members) if (a < b) link(a, b);
  }
  const ring = shuffled(ids, 11);
  const friendships: [string, string][] = [];
  for (let i = 0; i < ring.length; i++) {
    for (let d = 1; d <= 5; d++) {
      const [a, b] = [ring[i], ring[(i + d) % ring.length]];
      if (a === b) continue;
      friendships.push(a < b ? [a, b] : [b, a]);
      link(a, b);
    }
  }
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    for (const g of groups) {
      const { rows } = await db.query<{ id: string }>(
        `insert into groups (id, name, owner_id, is_private, member_count, created_at) values (gen_random_uuid(), $1, $2, false, $3, now()) returning id`,
        [`fleet ${groups.indexOf(g)}`, g.members[0], g.members.length],
      );
      g.id = rows[0].id;
    }
    await db.query(
      `insert into group_members (id, group_id, user_id, joined_at) select gen_random_uuid(), g, u, now() from unnest($1::uuid[], $2::uuid[]) as x(g, u)`,
      [groups.flatMap((g) => g.members.map(() => g.id)), groups.flatMap((g) => g.members)],
    );
    await db.query(`insert into friendships (id, user_a_id, user_b_id, created_at) select gen_random_uuid(), a, b, now() from unnest($1::uuid[], $2::uuid[]) as x(a, b) on conflict do nothing`, [
      friendships.map((f) => f[0]),
      friendships.map((f) => f[1]),
    ]);
    await db.query('analyze');
  } finally {
    await db.end();
  }
  return contacts;
}

interface Socket {
  ws: WebSocket;
  /** Frames about each user during the churn window. */
  seen: Map<string, number>;
  frames: number;
}

/** A socket, tried again a few times when refused (a busy instance's token or membership read timing out). */
async function open(wsUrl: string, token: string, counting: { on: boolean }): Promise<Socket> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openOnce(wsUrl, token, counting);
    } catch (e) {
      if (attempt >= 5) throw e;
      await sleep(500 * attempt);
    }
  }
}

function openOnce(wsUrl: string, token: string, counting: { on: boolean }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws', { perMessageDeflate: false });
    const s: Socket = { ws, seen: new Map(), frames: 0 };
    let acked = false;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } })));
    ws.on('message', (data) => {
      const text = String(data);
      if (!acked) {
        if (text.includes('"connection_ack"')) (acked = true), resolve(s);
        return;
      }
      if (!counting.on || !text.startsWith('{"id"')) return;
      s.frames++;
      const id = /"user":\{"id":"([^"]+)"/.exec(text)?.[1];
      if (id) s.seen.set(id, (s.seen.get(id) ?? 0) + 1);
    });
    ws.on('error', reject);
    ws.on('close', (code) => (acked ? undefined : reject(new Error(`closed ${code} before ack`))));
  });
}

async function inBatches<T>(items: T[], size: number, fn: (t: T, i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map((t, k) => fn(t, i + k)));
}

async function runMode(mode: Mode, o: { databaseUrl: string; redisUrl: string; sockets: number; instances: number; churn: number; cluster: boolean }): Promise<boolean> {
  // A fresh three-master Redis Cluster (no replicas) for each mode's run, as the cluster tests start one.
  const cluster = o.cluster ? new OwnRedisCluster() : undefined;
  await cluster?.start();
  await resetState(o.databaseUrl, cluster ? `redis://${cluster.nodes.split(',')[0]}` : o.redisUrl);
  const redisEnv: Record<string, string> = cluster ? { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes, REDIS_SHARDED_PUBSUB: 'true' } : { REDIS_URL: o.redisUrl };
  const env = {
    DATABASE_URL: o.databaseUrl,
    ...redisEnv,
    PRESENCE_VISIBILITY: mode,
    PRESENCE_GRACE: '0',
    PRESENCE_TIMEOUT: '1h',
    DB_POOL_MAX: '16',
    WS_MAX_PENDING_PER_IP: '100000',
    RATE_LIMIT_WS_MESSAGES: '1000000/1s',
    // This one client process reads every socket: when `everyone` mode buries it in frames, its late
    // pongs and full buffers must not make the servers close sockets (each close a transition more).
    WS_KEEPALIVE: '1h',
    // Pub/sub channels are shared by every database of a Redis server: other work on it must not count.
    REDIS_KEY_PREFIX: `fleet-${process.pid}:`,
    WS_MAX_BUFFERED_BYTES: String(256 * 1024 * 1024),
  };
  // The first runs the migrations alone.
  const members = [await startMember(env)];
  members.push(...(await Promise.all(Array.from({ length: o.instances - 1 }, () => startMember(env)))));
  try {
    const seeded = await seedUsers(members[0].url, o.databaseUrl, o.sockets, 'fleet-password-1');
    const ids = seeded.users.map((u) => u.id);
    const contacts = await seedSocialGraph(o.databaseUrl, ids);
    const instanceOf = (i: number) => i % o.instances;
    const counting = { on: false };
    const started = performance.now();
    const sockets: Socket[] = new Array(ids.length);
    await inBatches(seeded.users, 50, async (u, i) => (sockets[i] = await open(members[instanceOf(i)].wsUrl, u.token, counting)));
    const connectMs = performance.now() - started;
    // Churners: spread over the instances and the ring; everyone else watches.
    const step = Math.max(1, Math.floor(ids.length / o.churn));
    const churners = new Set(Array.from({ length: Math.min(o.churn, ids.length) }, (_, k) => (k * step + (k % o.instances)) % ids.length));
    const watchers = ids.map((_, i) => i).filter((i) => !churners.has(i));
    for (const i of watchers) sockets[i].ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: SUBSCRIPTION } }));
    // Every connect's ONLINE must be through before the churn is measured: each user's was published
    // once, and the instances' counters stand still for 2 s.
    let before = await Promise.all(members.map((m) => m.counters()));
    for (let still = 0, deadline = Date.now() + 180_000; still < 4 && Date.now() < deadline; ) {
      await sleep(500);
      const now = await Promise.all(members.map((m) => m.counters()));
      const moved = now.some((c, k) => c.received !== before[k].received || c.published !== before[k].published);
      still = moved || now.reduce((n, c) => n + c.published, 0) < ids.length - 1 ? 0 : still + 1;
      before = now;
    }
    const cpuBefore = procCpuMs(members.map((m) => m.pid));
    counting.on = true;
    const churnStarted = performance.now();
    for (const i of churners) sockets[i].ws.close();
    await sleep(2000);
    const back: Socket[] = [];
    await inBatches([...churners], 100, async (i) => back.push(await open(members[instanceOf(i)].wsUrl, seeded.users[i].token, { on: false })));
    // The window closes once no frame has come for 3 s (this one process reads every socket: in
    // everyone mode, millions of frames take it a while).
    const framesNow = () => sockets.reduce((n, s) => n + s.frames, 0);
    for (let last = -1, still = 0, deadline = Date.now() + 600_000; still < 3 && Date.now() < deadline; ) {
      await sleep(1000);
      const n = framesNow();
      still = n === last ? still + 1 : 0;
      last = n;
    }
    counting.on = false;
    const churnMs = performance.now() - churnStarted;
    const after = await Promise.all(members.map((m) => m.counters()));
    const cpuAfter = procCpuMs(members.map((m) => m.pid));

    // Each watcher gets each transition it may see exactly once, and nothing else.
    const churnerIds = [...churners].map((i) => ids[i]);
    const churnerSet = new Set(churnerIds);
    let wrong = 0;
    let expectedFrames = 0;
    for (const w of watchers) {
      const s = sockets[w];
      for (const c of churnerIds) {
        const visible = mode === 'everyone' || contacts.get(ids[w])!.has(c);
        const want = visible ? 2 : 0;
        expectedFrames += want;
        if ((s.seen.get(c) ?? 0) !== want) wrong++;
      }
      for (const id of s.seen.keys()) if (!churnerSet.has(id)) wrong++;
    }
    // Per instance: which churners' transitions a watcher here needs, and which some socket here may see.
    const rows: string[] = [];
    let instanceWrong = 0;
    for (let k = 0; k < o.instances; k++) {
      const local = ids.map((_, i) => i).filter((i) => instanceOf(i) === k);
      const needed = churnerIds.filter((c) => local.some((w) => !churners.has(w) && (mode === 'everyone' || contacts.get(ids[w])!.has(c)))).length * 2;
      const bound = churnerIds.filter((c) => local.some((w) => ids[w] === c || contacts.get(ids[w])!.has(c))).length * 2;
      const received = after[k].received - before[k].received;
      const published = after[k].published - before[k].published;
      const frames = local.reduce((n, i) => n + (churners.has(i) ? 0 : sockets[i].frames), 0);
      const okHere = mode === 'everyone' ? received === 2 * churners.size : received >= needed && received <= bound;
      if (!okHere) instanceWrong++;
      const cpu = (cpuAfter.get(members[k].pid) ?? 0) - (cpuBefore.get(members[k].pid) ?? 0);
      rows.push(
        `| ${mode} | ${k + 1} | ${local.length} | ${received} | ${mode === 'everyone' ? 2 * churners.size : `${needed}–${bound}`} | ${published} | ${frames} | ${after[k].channels} | ${cpu} | ${okHere ? 'ok' : 'WRONG'} |`,
      );
    }
    out(`\n### ${mode}${cluster ? ' (3-master Redis Cluster, sharded pub/sub)' : ''}: ${ids.length} sockets on ${o.instances} instances, ${churners.size} churners (${2 * churners.size} transitions)`);
    out(`connect ${(connectMs / 1000).toFixed(1)} s; churn window ${(churnMs / 1000).toFixed(1)} s; mean contacts per user ${(ids.reduce((n, id) => n + contacts.get(id)!.size, 0) / ids.length).toFixed(1)}`);
    out('| mode | instance | sockets | transitions received (Redis in) | expected | published (Redis out) | frames written | presence channels | CPU ms (churn) | check |');
    out('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) out(r);
    out(`frames: ${sockets.reduce((n, s) => n + s.frames, 0)} written, ${expectedFrames} expected; watcher/churner pairs wrong: ${wrong}`);
    for (const s of [...sockets, ...back]) s.ws.terminate();
    return wrong === 0 && instanceWrong === 0;
  } finally {
    await Promise.all(members.map((m) => m.stop()));
    await cluster?.stop();
  }
}

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (!databaseUrl || (!redisUrl && process.env.BENCH_REDIS_CLUSTER !== '1')) throw new Error('bench:fleet needs DATABASE_URL (a database whose name contains bench) and REDIS_URL (flushed)');
  if (!/bench/i.test(new URL(databaseUrl).pathname)) throw new Error('bench:fleet empties its database: its name must contain bench');
  const o = { databaseUrl, redisUrl: redisUrl ?? '', sockets: positive('BENCH_SOCKETS', 8000), instances: positive('BENCH_INSTANCES', 4), churn: positive('BENCH_CHURN', 100), cluster: process.env.BENCH_REDIS_CLUSTER === '1' };
  const modes = (process.env.BENCH_MODES ?? 'everyone,contacts').split(',').map((m) => m.trim()) as Mode[];
  let ok = true;
  for (const mode of modes) ok = (await runMode(mode, o)) && ok;
  out(ok ? '\nall checks passed' : '\nSOME CHECKS FAILED');
  process.exit(ok ? 0 : 1);
}

if (process.argv[2] === 'member') void runMember();
else
  main().catch((e) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
