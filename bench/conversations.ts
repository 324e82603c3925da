/**
 * Conversations through the API, in one run on one machine.
 *
 *   npm run bench:conversations
 *
 * Parley runs in a child process (real startServer, PostgreSQL and Redis); this process is the load client.
 * 1. Sidebar: one user in C conversations (groups with a message each, seeded by SQL as the app stores
 *    them: groups, memberships, messages, their heads and the user's conversation rows). P `conversations(first: 20)`
 *    requests one after another, the first page and pages further down by cursor, selecting what a
 *    sidebar shows; and as the floor, in the same run, P `{ me { id } }`. Target: p99 < 10 ms.
 * 2. Typing: S sockets of members of one group R, each subscribed to its messageAdded and typing; M
 *    messages sent to R one after another (each as soon as the previous one is answered); a
 *    delivery's latency is from the send to the receipt on one socket. Once without typing, once with
 *    T typists calling setTyping over their own sockets every TYPING_EVERY ms, from a process of their own
 *    (their load is not this process's to queue behind, as it would not be a real client's): they sit in groups of
 *    ROOM (the first ROOM of them in R itself, so R's sockets get typing events too, the rest in
 *    groups of their own, as conversations spread over a server), each subscribed to typing in its
 *    conversation (as an open chat window is). Rounds alternate (BENCH_ROUNDS), each starting with the
 *    other than the last (without, with; with, without; ...), and the next round waits out the typists'
 *    lapse. One unmeasured pass of each comes first: the first pass ran 1.3-1.5 x slower than the last
 *    (the JIT of Parley and of this client warming), which compared the cold `without` with a warm `with`.
 *    The p99 of each side is taken over all its rounds' deliveries pooled: with the alternating order a
 *    drift weighs on both sides alike (the best round of each did not: the last slot was the warmest).
 *    Target: p99 with typing <= 1.2 x without. Each round also
 *    reports Parley's CPU over its measured interval, and each typing round its CPU over 2 s of typing
 *    alone (before the first message): what the typing load itself costs the server.
 * A missed target is reported, not an exit code (the machine is shared); a lost delivery, or a
 * setTyping answered with an error (the load would not be the one claimed), exits 1.
 *
 * Settings (environment):
 * - DATABASE_URL   postgres://… whose name contains 'bench' or 'test'; its tables are EMPTIED. Required.
 * - REDIS_URL      redis://… ; its keyspace is FLUSHED. Required.
 * - BENCH_CONVERSATIONS  C. @default 2000
 * - BENCH_PAGES          P. @default 500
 * - BENCH_SUBSCRIBERS    S. @default 200
 * - BENCH_TYPISTS        T. @default 1000
 * - BENCH_MESSAGES       M. @default 1000 (a round's p99 rests on its slowest 1% of messages: with 200, on two)
 * - BENCH_TYPING_EVERY   ms between one typist's setTyping calls. @default 2000
 * - BENCH_ROOM           typists per conversation. @default 10
 * - BENCH_ROUNDS         rounds of (without, with) typing. @default 4 (a side's p99 over two rounds rested on its
 *                        20 slowest messages of 2,000: one round's without ranged 10-16 ms between runs)
 */
import 'reflect-metadata';
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type WebSocket from 'ws';
import { agent, connect, inBatches, post, resetState, runParley, seedUsers, sleep, startChild, type Child, type Seeded } from './harness';
import { out, positive, query, required } from './util';

const DATABASE_URL = required('DATABASE_URL', 'a database whose name contains bench or test');
const REDIS_URL = required('REDIS_URL', 'a Redis of its own: it is flushed');
const C = positive('BENCH_CONVERSATIONS', 2000);
const P = positive('BENCH_PAGES', 500);
const S = positive('BENCH_SUBSCRIBERS', 200);
const T = positive('BENCH_TYPISTS', 1000);
const M = positive('BENCH_MESSAGES', 1000);
const EVERY = positive('BENCH_TYPING_EVERY', 2000);
const ROOM = positive('BENCH_ROOM', 10);
const ROUNDS = positive('BENCH_ROUNDS', 4);
const PASSWORD = 'bench-conversations-password';
/** The server's TYPING_TIMEOUT (its default, 6 s) and a margin. */
const LAPSE_MS = 7000;

const SIDEBAR = `query($after: String) { conversations(first: 20, after: $after) { totalCount pageInfo { endCursor hasNextPage }
  edges { cursor node { id kind title unreadCount lastReadMessageId updatedAt lastMessage { id content createdAt sender { id username } } } } } }`;
const ME = '{ me { id } }';
const SEND = 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }';
const MESSAGES = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { id content createdAt sender { id username } } }';
const TYPING = 'subscription($g: ID!) { typing(conversation: { groupId: $g }) { conversationId typing user { id username } } }';
const SET_TYPING = 'mutation($g: ID!) { setTyping(conversation: { groupId: $g }) }';

const fmt = (n: number, d = 0) => n.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d });
const pct = (sorted: Float64Array | number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : NaN);

// ================= seeding (not measured) =================

/** C private groups of user 0, each with one message, stored as sending and joining store them. */
async function seedSidebar(owner: string): Promise<void> {
  await query(
    DATABASE_URL,
    `with g as (
       insert into groups (id, name, owner_id, is_private, is_lobby, member_count, created_at)
       select gen_random_uuid(), 'bench group ' || n, $1, true, false, 1, date_trunc('milliseconds', now()) - make_interval(secs => n) from generate_series(1, $2::int) n
       returning id, created_at),
     gm as (insert into group_members (id, group_id, user_id, joined_at) select gen_random_uuid(), id, $1, created_at from g),
     m as (
       insert into messages (id, conversation_key, sender_id, content, group_id, seq, created_at)
       select gen_random_uuid(), 'g:' || id, $1, 'hello ' || id, id, 1, created_at from g returning id, conversation_key, group_id, created_at),
     h as (
       insert into conversation_heads (conversation_key, seq, last_message_id, activity_at, last_at, member_sort)
       select conversation_key, 1, id, created_at, created_at, true from m)
     insert into conversation_members (conversation_key, user_id, kind, group_id, joined_at, read_seq, last_read_message_id, last_read_at, sort_at)
     select m.conversation_key, $1, 'GROUP', m.group_id, m.created_at, 1, m.id, m.created_at, m.created_at from m`,
    [owner, C],
  );
  // Statistics for the planner, and a visibility map as a settled table would have.
  await query(DATABASE_URL, 'vacuum analyze');
}

/** One group of these users, their conversation rows too; its id. */
async function seedRoom(users: Seeded['users']): Promise<string> {
  const [{ id }] = await query<{ id: string }>(
    DATABASE_URL,
    `insert into groups (id, name, owner_id, is_private, is_lobby, member_count, created_at) values (gen_random_uuid(), 'bench room', $1, false, false, $2, now()) returning id`,
    [users[0].id, users.length],
  );
  const ids = users.map((u) => u.id);
  await query(DATABASE_URL, `insert into group_members (id, group_id, user_id, joined_at) select gen_random_uuid(), $2, u, now() from unnest($1::uuid[]) as u`, [ids, id]);
  await query(
    DATABASE_URL,
    `insert into conversation_members (conversation_key, user_id, kind, group_id, joined_at)
     select 'g:' || $2, u, 'GROUP', $2::uuid, now() from unnest($1::uuid[]) as u`,
    [ids, id],
  );
  return id;
}

// ================= 1. the sidebar =================

async function timed(n: number, fn: (i: number) => Promise<unknown>): Promise<Float64Array> {
  const times = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await fn(i);
    times[i] = performance.now() - started;
  }
  return times.sort();
}

async function sidebar(url: string, token: string): Promise<{ page: Float64Array; me: Float64Array; total: number; pages: number }> {
  // The cursors of the first pages, as a client scrolling down would send them.
  const cursors: (string | null)[] = [null];
  let total = 0;
  for (let after: string | null = null; cursors.length < 50; ) {
    const r: any = (await post(url, SIDEBAR, { after }, token)).conversations;
    total = r.totalCount;
    if (!r.pageInfo.hasNextPage) break;
    after = r.pageInfo.endCursor;
    cursors.push(after);
  }
  await timed(50, () => post(url, ME, {}, token)); // warm-up
  // Interleaved, so a noisy stretch of the shared machine hits the page and its floor alike.
  const page = new Float64Array(P);
  const me = new Float64Array(P);
  for (let i = 0; i < P; i++) {
    let started = performance.now();
    await post(url, SIDEBAR, { after: i % 2 ? cursors[i % cursors.length] : null }, token);
    page[i] = performance.now() - started;
    started = performance.now();
    await post(url, ME, {}, token);
    me[i] = performance.now() - started;
  }
  return { page: page.sort(), me: me.sort(), total, pages: cursors.length };
}

// ================= 2. typing =================

interface DeliveryResult {
  name: string;
  expected: number;
  missing: number;
  duplicates: number;
  p50: number;
  p99: number;
  /** Every delivery's latency, ms, sorted. */
  latencies: Float64Array;
  typingEvents: number;
  setTypingCalls: number;
  /** setTyping calls answered with an error: the load the round claims was not the load it made. */
  setTypingErrors: number;
  /** Parley's CPU time over the measured interval, % of one core. */
  serverCpu: number;
  /** Parley's CPU time while the typists type and nothing else happens (2 s before the messages), % of one core. */
  typingCpu: number;
}

interface Typist {
  token: string;
  room: string;
}

/** The parent's orders to the typists' process, and its answers. */
type ToTypists = { type: 'start'; wsUrl: string; typists: Typist[]; watchers: Typist[] } | { type: 'mark' } | { type: 'stop' };
type FromTypists = { type: 'typing' } | { type: 'stopped'; calls: number; events: number; errors: number; seconds: number };

/**
 * The typists, in a process of their own: the load they make (500 setTyping sends and thousands of
 * typing frames a second to parse) stays off the event loop that timestamps the deliveries, so what
 * the rounds compare is the server's delivery, not this client's queue.
 */
async function runTypists(): Promise<void> {
  let sockets: WebSocket[] = [];
  let timers: NodeJS.Timeout[] = [];
  let calls = 0;
  let events = 0;
  let errors = 0;
  let markedAt = performance.now();
  const onTyping = (text: string) => {
    if (text.startsWith('{"id":"1"')) events++;
    else if (text.includes('"errors"')) errors++;
  };
  process.on('message', async (m: ToTypists) => {
    if (m.type === 'start') {
      // Each watches typing in its open conversation, as a chat window does. Kept by index: socket i
      // is typist i's, whose room its setTyping names (connections complete in any order).
      sockets = new Array(m.typists.length);
      await inBatches(m.typists, 100, async (t, i) => void (sockets[i] = await connect(m.wsUrl, t.token, [{ id: '1', query: TYPING, variables: { g: t.room } }], onTyping)));
      // The measured group's members watch its typing too, on sockets of their own here (a device
      // shows its own indicator): the server writes them the same frames, and the parsing of those
      // frames stays out of the queue of the process that timestamps the deliveries.
      const watching = await Promise.all(m.watchers.map((w) => connect(m.wsUrl, w.token, [{ id: '1', query: TYPING, variables: { g: w.room } }], onTyping)));
      // setTyping every EVERY ms each, spread evenly over the interval.
      const typing = sockets.slice();
      sockets.push(...watching);
      typing.forEach((ws, i) => {
        let seq = 0;
        const call = () => {
          calls++;
          ws.send(JSON.stringify({ id: `t${seq++}`, type: 'subscribe', payload: { query: SET_TYPING, variables: { g: m.typists[i].room } } }));
        };
        timers.push(setTimeout(() => (call(), timers.push(setInterval(call, EVERY))), (i * EVERY) / m.typists.length));
      });
      await sleep(EVERY + 500); // the storm is on everywhere before the first message
      process.send!({ type: 'typing' } satisfies FromTypists);
    } else if (m.type === 'mark') {
      [calls, events, errors, markedAt] = [0, 0, 0, performance.now()];
    } else {
      const seconds = (performance.now() - markedAt) / 1000;
      for (const t of timers) clearTimeout(t);
      for (const ws of sockets) ws.terminate();
      [sockets, timers] = [[], []];
      process.send!({ type: 'stopped', calls, events, errors, seconds } satisfies FromTypists);
    }
  });
  process.send!({ type: 'typing' } satisfies FromTypists);
}

interface TypistsProcess {
  ask(m: ToTypists): Promise<FromTypists>;
  tell(m: ToTypists): void;
  stop(): void;
}

async function startTypists(): Promise<TypistsProcess> {
  const proc = fork(__filename, ['typists'], { execArgv: ['-r', '@swc-node/register'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = () => new Promise<FromTypists>((resolve, reject) => {
    const exited = (code: number | null) => reject(new Error(`typists exited with ${code}`));
    proc.once('exit', exited);
    proc.once('message', (r: FromTypists) => (proc.off('exit', exited), resolve(r)));
  });
  await next();
  return {
    ask: (m) => {
      const answer = next();
      proc.send(m);
      return answer;
    },
    tell: (m) => void proc.send(m),
    stop: () => void proc.kill(),
  };
}

/** CPU time the child has used so far, user and system together, ms. */
const cpuMs = async (child: Child): Promise<number> => {
  const { user, system } = await child.cpu();
  return user + system;
};

async function deliveries(name: string, child: Child, room: string, subscribers: Seeded['users'], typists: { list: Typist[]; proc: TypistsProcess } | null, tag: string): Promise<DeliveryResult> {
  const { wsUrl, url } = child;
  const n = subscribers.length;
  const seen = new Uint8Array(n * M);
  const latencies = new Float64Array(n * M);
  const sentAt = new Float64Array(M);
  const warmed = new Uint8Array(n);
  let round = 'w';
  let received = 0;
  let duplicates = 0;
  const marker = new RegExp(`"content":"${tag} ([wm])(\\d+)"`);
  const sockets: WebSocket[] = [];
  await inBatches(subscribers, 100, async (u, i) => {
    const ws = await connect(wsUrl, u.token, [{ id: '1', query: MESSAGES, variables: { g: room } }], (text) => {
      const now = performance.now();
      const m = marker.exec(text);
      if (!m) return;
      if (m[1] === 'w') return void (warmed[i] = 1);
      if (round !== 'm') return;
      const k = i * M + Number(m[2]);
      if (seen[k]) return void duplicates++;
      seen[k] = 1;
      latencies[k] = now - sentAt[Number(m[2])];
      received++;
    });
    sockets.push(ws);
  });
  const sender = subscribers[0];
  for (let w = 0; warmed.some((x) => !x); w++) {
    if (w > 100) throw new Error(`${name}: sockets never received a warm-up message`);
    await post(url, SEND, { g: room, t: `${tag} w${w}` }, sender.token);
    await sleep(w < 3 ? 200 : 500);
  }

  let typingCpu = 0;
  if (typists) {
    await typists.proc.ask({ type: 'start', wsUrl, typists: typists.list, watchers: subscribers.map((u) => ({ token: u.token, room })) });
    const cpu = await cpuMs(child);
    await sleep(2000);
    typingCpu = ((await cpuMs(child)) - cpu) / 20;
  }
  typists?.proc.tell({ type: 'mark' });
  round = 'm';
  const cpuBefore = await cpuMs(child);
  const started = performance.now();
  for (let seq = 0; seq < M; seq++) {
    sentAt[seq] = performance.now();
    await post(url, SEND, { g: room, t: `${tag} m${seq}` }, sender.token);
  }
  let before = -1;
  while (received < n * M && received !== before) {
    before = received;
    await sleep(1000);
  }
  const seconds = (performance.now() - started) / 1000;
  const serverCpu = (await cpuMs(child)) - cpuBefore;
  const typed = typists ? await typists.proc.ask({ type: 'stop' }) : undefined;
  const load = typed?.type === 'stopped' ? typed : { calls: 0, events: 0, errors: 0, seconds };
  for (const ws of sockets) ws.terminate();
  await sleep(500);
  const got = latencies.filter((_, k) => seen[k]).sort();
  return {
    name,
    expected: n * M,
    missing: n * M - received,
    duplicates,
    p50: pct(got, 0.5),
    p99: pct(got, 0.99),
    latencies: got,
    typingEvents: load.events / load.seconds,
    setTypingCalls: load.calls / load.seconds,
    setTypingErrors: load.errors,
    serverCpu: serverCpu / seconds / 10,
    typingCpu,
  };
}

async function main(): Promise<void> {
  out(`bench:conversations  C=${C} conversations, P=${P} pages; S=${S} subscribers, T=${T} typists every ${EVERY} ms, M=${M} messages; ${new Date().toISOString()}`);
  await resetState(DATABASE_URL, REDIS_URL);
  // The load goes faster than one user may: per-user limits are lifted for it.
  const lifted = '1000000/1s';
  const env = {
    DATABASE_URL,
    REDIS_URL,
    DB_POOL_MAX: '20',
    RATE_LIMIT_SEND_MESSAGE: lifted,
    RATE_LIMIT_TYPING: lifted,
    RATE_LIMIT_WS_MESSAGES: lifted,
    // One load client opens its sockets 100 at a time from one address.
    WS_MAX_PENDING_PER_IP: '1000',
  };
  const child = await startChild(__filename, 'parley', env);
  try {
    const seeded = await seedUsers(child.url, DATABASE_URL, 1 + S + T, PASSWORD);
    const owner = seeded.users[0];
    await seedSidebar(owner.id);
    out(`seeded ${fmt(seeded.users.length)} users and ${fmt(C)} conversations of one user`);

    const s = await sidebar(child.url, owner.token);
    out();
    out(`1. conversations(first: 20) for a user in ${fmt(s.total)} conversations (${s.pages} pages deep), ${fmt(P)} requests one after another`);
    out(`   ${'request'.padEnd(22)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}`);
    out(`   ${'{ me { id } } (floor)'.padEnd(22)}${fmt(pct(s.me, 0.5), 2).padStart(9)}${fmt(pct(s.me, 0.99), 2).padStart(9)}`);
    out(`   ${'conversations page'.padEnd(22)}${fmt(pct(s.page, 0.5), 2).padStart(9)}${fmt(pct(s.page, 0.99), 2).padStart(9)}`);

    const subscribers = seeded.users.slice(1, 1 + S);
    const typing = seeded.users.slice(1 + S);
    const room = await seedRoom([...subscribers, ...typing.slice(0, ROOM)]);
    const typists: Typist[] = [];
    for (let i = 0; i < typing.length; i += ROOM) {
      const members = typing.slice(i, i + ROOM);
      const id = i === 0 ? room : await seedRoom(members);
      for (const user of members) typists.push({ token: user.token, room: id });
    }
    const rounds: DeliveryResult[][] = [];
    const typistsProc = await startTypists();
    out();
    out(`2. message delivery to ${fmt(S)} sockets (messageAdded and typing of one group), without and with ${fmt(T)} typists (${ROOM} per conversation)`);
    out(`   ${'run'.padEnd(26)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'missing'.padStart(9)}${'dup'.padStart(6)}${'setTyping/s'.padStart(13)}${'typing frames/s'.padStart(17)}${'server CPU %'.padStart(13)}`);
    // Rounds in the order without, with; with, without; ... so neither always runs first (a drift of
    // the shared machine would favour one), after a pass of each to warm both processes' JIT.
    const row = (x: DeliveryResult, r: number) =>
      out(
        `   ${`${x.name} (${r || 'warm-up'})`.padEnd(26)}${fmt(x.p50, 1).padStart(9)}${fmt(x.p99, 1).padStart(9)}${fmt(x.missing).padStart(9)}${fmt(x.duplicates).padStart(6)}${fmt(x.setTypingCalls).padStart(13)}${fmt(x.typingEvents).padStart(17)}${fmt(x.serverCpu).padStart(13)}`,
      );
    const warmUp: DeliveryResult[] = [];
    for (const typed of [false, true]) {
      const x = typed
        ? await deliveries('with typing', child, room, subscribers, { list: typists, proc: typistsProc }, 'r0b')
        : await deliveries('without typing', child, room, subscribers, null, 'r0a');
      row(x, 0);
      warmUp.push(x);
      if (typed) await sleep(LAPSE_MS);
    }
    for (let r = 1; r <= ROUNDS; r++) {
      const results: DeliveryResult[] = [];
      for (const typed of r % 2 ? [false, true] : [true, false]) {
        const x = typed
          ? await deliveries('with typing', child, room, subscribers, { list: typists, proc: typistsProc }, `r${r}b`)
          : await deliveries('without typing', child, room, subscribers, null, `r${r}a`);
        row(x, r);
        results[typed ? 1 : 0] = x;
        // The typists' typing lapses TYPING_TIMEOUT after their last refresh (a thousand typing: false
        // events): that is the typing round's load, not the next round's.
        if (typed) await sleep(LAPSE_MS);
      }
      rounds.push(results);
    }
    const pooled = (k: number) => {
      const all = new Float64Array(rounds.reduce((n, r) => n + r[k].latencies.length, 0));
      let at = 0;
      for (const r of rounds) {
        all.set(r[k].latencies, at);
        at += r[k].latencies.length;
      }
      return pct(all.sort(), 0.99);
    };
    const [without, withTyping] = [pooled(0), pooled(1)];
    // The warm-up pass is not measured, but a delivery it lost is lost.
    const all = [...warmUp, ...rounds.flat()];
    const lost = all.reduce((n, x) => n + x.missing + x.duplicates, 0);
    const refused = all.reduce((n, x) => n + x.setTypingErrors, 0);
    const typingCpu = rounds.map((r) => r[1].typingCpu);
    out();
    out(`sidebar: p99 ${fmt(pct(s.page, 0.99), 2)} ms ${pct(s.page, 0.99) < 10 ? 'meets' : 'MISSES'} < 10 ms (${(pct(s.page, 0.99) / pct(s.me, 0.99)).toFixed(2)} x the floor)`);
    out(`typing alone: Parley at ${typingCpu.map((c) => fmt(c)).join(', ')} % of a core (${fmt(rounds[0][1].setTypingCalls)} setTyping/s)`);
    out(`typing: delivery p99 (rounds 1-${ROUNDS} pooled) ${fmt(withTyping, 1)} ms with, ${fmt(without, 1)} ms without = ${(withTyping / without).toFixed(2)} x, ${withTyping / without <= 1.2 ? 'meets' : 'MISSES'} <= 1.2 x; ${lost ? `${lost} deliveries MISSING or duplicated` : 'no delivery missing'}${refused ? `; ${refused} setTyping calls REFUSED` : ''}`);
    agent.destroy();
    typistsProc.stop();
    await child.stop();
    process.exit(lost || refused ? 1 : 0);
  } catch (e) {
    await child.stop();
    throw e;
  }
}

const role = process.argv[2];
if (role) process.on('disconnect', () => process.exit(0));
(role === 'parley' ? runParley : role === 'typists' ? runTypists : main)().catch((e) => {
  process.stderr.write(`bench:conversations${role ? ` (${role})` : ''}: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
