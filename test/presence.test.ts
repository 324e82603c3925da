import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { codeOf, eventually, gql, listen, ok, running, sleep, subscribe, wsClient, type Subscription } from './helpers/graphql';
import { createTestServer, describeRedis, hasRedis, type Overrides, type TestServer } from './helpers/server';
import { buildConnectedUser as control, lobbyOf, sendMessage, signup, type TestUser, login } from './helpers/factories';
import { sql } from './helpers/db';
import { OwnRedisCluster } from './helpers/redis-cluster';
import { runParley } from './helpers/process';
import { userRepository } from '../src/modules/user/user.repository';
import { describeNeeding, tools } from './helpers/tools';
import { monitorRedis } from './helpers/redis-monitor';
import { TcpProxy } from './helpers/tcp-proxy';
import { holdNextPublishOf } from './helpers/publish';
import { Topic } from '../src/shared/pubsub/topics';

const STATUS = 'query($id: ID!) { userStatus(userId: $id) { status lastSeenAt user { id } } }';
const HEARTBEAT = 'mutation { heartbeat { status lastSeenAt user { id } } }';
const ONLINE_USERS = 'query($first: Int, $after: String) { onlineUsers(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id status } } } }';
const PRESENCE = 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status lastSeenAt user { id } } }';

type Event = { presenceChanged: { status: string; lastSeenAt: string | null; user: { id: string } } };

/** What a page reload takes between closing its socket and opening the next (well within the grace periods below). */
const RELOAD_MS = 200;
/** Heartbeats a quarter of PRESENCE_TIMEOUT apart (1 s in that test) keep a user ONLINE. */
const HEARTBEAT_MS = 250;

/** A watcher's presenceChanged subscription (optionally narrowed), ready once it returns. */
function watch(s: TestServer, watcher: TestUser, ids?: string[]): Promise<Subscription<Event>> {
  return listen<Event>(s, watcher, PRESENCE, ids ? { ids } : {});
}

/** Resolves once `n` more presence sweeps have run on `servers` together: one started after this call at least, with n = 2. */
async function sweepsRun(servers: TestServer[], n = 2): Promise<void> {
  const ran = () => servers.reduce((k, x) => k + x.services.presence.sweeps.length, 0);
  const start = ran();
  await eventually(() => ran() >= start + n, 10_000);
}

/** "<userId> <STATUS>" for each event, in order. */
const seen = (sub: Subscription<Event>) => sub.values.map((v) => `${v.presenceChanged.user.id} ${v.presenceChanged.status}`);

async function statusOf(s: TestServer, viewer: TestUser, id: string): Promise<{ status: string; lastSeenAt: string | null }> {
  return (await ok(gql(s.url, STATUS, { id }, viewer.token))).userStatus;
}

async function lastSeenInDb(s: TestServer, id: string): Promise<Date | null> {
  const [row] = await sql(s.env.DATABASE_URL!, 'select last_seen_at from users where id = $1', [id]);
  return row.last_seen_at;
}

/**
 * A fingerprint of every row version in every application table: any insert, update or
 * delete changes some row's xmin or ctid, or the set of rows.
 */
async function rowVersions(databaseUrl: string): Promise<Record<string, string>> {
  const tables = await sql<{ tablename: string }>(databaseUrl, "select tablename from pg_tables where schemaname = 'public' order by 1");
  const out: Record<string, string> = {};
  for (const { tablename } of tables) {
    const [r] = await sql(databaseUrl, `select count(*)::int as n, md5(coalesce(string_agg(xmin::text || ctid::text, ',' order by ctid), '')) as h from "${tablename}"`);
    out[tablename] = `${r.n}:${r.h}`;
  }
  return out;
}

/** The sweep's summary line (a Redis warning logged while it disconnects may come after it). */
const summaryOf = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => 'expired' in l).pop();

/** `npm run presence:sweep`, as an operator runs it. */
async function runCli(env: Overrides): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = runParley({ NODE_ENV: 'test', ...env }, { entry: 'src/jobs/presence-sweep.cli.ts' });
  const code = await p.exited;
  return { code, ...p.output() };
}

// The same rules hold with Redis (shared by instances) and in memory (one instance, no REDIS_URL).
describe.each(hasRedis ? [['redis', {}] as const, ['memory', { REDIS_URL: '' }] as const] : [['memory', { REDIS_URL: '' }] as const])(
  'presence (%s store)',
  (_kind, store) => {
    it('should go ONLINE on login and OFFLINE on logout, publishing each transition once with lastSeenAt persisted', async () => {
      const s = await createTestServer({ ...store });
      const [u, watcher, other] = [await signup(s.url), await signup(s.url), await signup(s.url)];
      expect(await statusOf(s, watcher, u.id)).toMatchObject({ status: 'ONLINE' });
      const events = await watch(s, watcher);
      const before = Date.now();
      expect((await ok(gql(s.url, 'mutation { logout }', {}, u.token))).logout).toBe(true);
      await events.nth(1);
      const offline = await statusOf(s, watcher, u.id);
      expect(offline.status).toBe('OFFLINE');
      expect(new Date(offline.lastSeenAt!).getTime()).toBeGreaterThanOrEqual(before - 5);
      expect((await lastSeenInDb(s, u.id))!.toISOString()).toBe(offline.lastSeenAt);
      const token = await login(s.url, u);
      await events.nth(2);
      // Activity of an ONLINE user changes nothing.
      await ok(gql(s.url, HEARTBEAT, {}, token));
      await ok(gql(s.url, '{ me { id } }', {}, token));
      // Another user's logout as a barrier: once its OFFLINE arrives, an event for that activity would have.
      await ok(gql(s.url, 'mutation { logout }', {}, other.token));
      await events.nth(3);
      expect(seen(events)).toEqual([`${u.id} OFFLINE`, `${u.id} ONLINE`, `${other.id} OFFLINE`]);
      expect(events.values[0].presenceChanged.lastSeenAt).toBe(offline.lastSeenAt);
      expect(await statusOf(s, watcher, u.id)).toMatchObject({ status: 'ONLINE' });
    });

    it('should answer a heartbeat once it is recorded: a contact asking right after reads ONLINE', async () => {
      const s = await createTestServer({ ...store, PRESENCE_GRACE: '100ms' });
      const [u, watcher] = [await signup(s.url), await signup(s.url)];
      for (let i = 0; i < 5; i++) {
        // OFFLINE: the user's socket closed and the grace passed.
        const socket = wsClient(s.wsUrl, u.token);
        await socket.connected;
        await socket.dispose();
        await eventually(async () => (await statusOf(s, watcher, u.id)).status === 'OFFLINE');
        expect((await ok(gql(s.url, HEARTBEAT, {}, u.token))).heartbeat.status).toBe('ONLINE');
        expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
      }
      // OFFLINE again: the user's own first request shows them ONLINE to themselves (it is activity), whatever the store has yet.
      const socket = wsClient(s.wsUrl, u.token);
      await socket.connected;
      await socket.dispose();
      await eventually(async () => (await statusOf(s, watcher, u.id)).status === 'OFFLINE');
      expect((await ok(gql(s.url, '{ me { status } }', {}, u.token))).me.status).toBe('ONLINE');
    });

    it("should answer a heartbeat the throttle skipped with the activity the store holds, as others read it, not with now", async () => {
      const s = await createTestServer(store);
      const [u, watcher] = [await signup(s.url), await signup(s.url)];
      const first = (await ok(gql(s.url, HEARTBEAT, {}, u.token))).heartbeat.lastSeenAt;
      await sleep(300);
      // Within the session's throttle (5 s here): nothing recorded, and the answer says so.
      const second = (await ok(gql(s.url, HEARTBEAT, {}, u.token))).heartbeat.lastSeenAt;
      expect(second).toBe(first);
      expect((await statusOf(s, watcher, u.id)).lastSeenAt).toBe(first);
    });

    it('should stay ONLINE on logout while another session of the user is live, then go OFFLINE with the last one', async () => {
      const s = await createTestServer({ ...store, PRESENCE_GRACE: '300ms' });
      const [u, watcher, other] = [await signup(s.url), await signup(s.url), await signup(s.url)];
      const phone = await login(s.url, u);
      const ctl = await control(s.url, [s]);
      const events = await watch(s, watcher, [u.id, other.id, ctl.user.id]);
      // Another token used recently keeps the user ONLINE (a logout decides at once).
      await ok(gql(s.url, 'mutation { logout }', {}, u.token));
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
      // So does a live socket of another session, even once that session's token is gone.
      const laptop = await login(s.url, u);
      // graphql-ws reports the coming 4403 with console.error, taken when the client is created.
      const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
      const socket = wsClient(s.wsUrl, laptop);
      await socket.connected;
      await ok(gql(s.url, 'mutation { logout }', {}, phone));
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
      // Another user's logout as a barrier: once its OFFLINE arrives, one for the user would have.
      await ok(gql(s.url, 'mutation { logout }', {}, other.token));
      await events.nth(1);
      expect(seen(events)).toEqual([`${other.id} OFFLINE`]);
      // The last session's logout closes its socket and takes the user OFFLINE, once: the socket's
      // grace period after it publishes nothing more (the control's, started after it, ends after it).
      await ok(gql(s.url, 'mutation { logout }', {}, laptop));
      expect((await socket.closed).code).toBe(4403);
      await ctl.close();
      await events.nth(3, 3000);
      quiet.mockRestore();
      expect(seen(events)).toEqual([`${other.id} OFFLINE`, `${u.id} OFFLINE`, `${ctl.user.id} OFFLINE`]);
    });

    it("should stay ONLINE when a logged-out session's socket closes while another session was active", async () => {
      const s = await createTestServer({ ...store, PRESENCE_GRACE: '300ms' });
      const [u, watcher, other] = [await signup(s.url), await signup(s.url), await signup(s.url)];
      const phone = await login(s.url, u);
      const events = await watch(s, watcher, [u.id, other.id]);
      const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
      const socket = wsClient(s.wsUrl, u.token);
      await socket.connected;
      await ok(gql(s.url, 'mutation { heartbeat { status } }', {}, phone));
      // The laptop logs out: its socket closes (4403); the phone, active a moment ago, keeps the user ONLINE.
      await ok(gql(s.url, 'mutation { logout }', {}, u.token));
      expect((await socket.closed).code).toBe(4403);
      quiet.mockRestore();
      await sleep(500);
      // Another user's logout as a barrier: once its OFFLINE arrives, one for the user would have.
      await ok(gql(s.url, 'mutation { logout }', {}, other.token));
      await events.nth(1);
      expect(seen(events)).toEqual([`${other.id} OFFLINE`]);
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
    });

    it("should not bring back ONLINE a user who logs out while the sockets' refresh is on its way to the store", async () => {
      const s = await createTestServer({ ...store });
      const [u, watcher] = [await signup(s.url), await signup(s.url)];
      const socket = wsClient(s.wsUrl, u.token);
      await socket.connected;
      const events = await watch(s, watcher, [u.id]);
      // The refresh lists the sockets, then touches their users (activity naming no session): held between the two.
      const presence = s.services.presence as unknown as { refreshSockets(): Promise<void>; store: { touch: (a: { sessionId: string | null }[], ttl: number) => Promise<unknown> } };
      const touch = presence.store.touch.bind(presence.store);
      let held!: () => void;
      const holding = new Promise<void>((resolve) => (held = resolve));
      const slow = jest.spyOn(presence.store, 'touch').mockImplementation(async (activity, ttl) => {
        if (activity.every((a) => a.sessionId === null)) {
          held();
          await sleep(300);
        }
        return touch(activity, ttl);
      });
      const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
      try {
        const refresh = presence.refreshSockets();
        await holding;
        await ok(gql(s.url, 'mutation { logout }', {}, u.token));
        expect((await socket.closed).code).toBe(4403);
        await refresh;
        await events.nth(1, 3000);
        // Touched after the logout's OFFLINE, the user came back ONLINE until the sweep.
        expect(await events.settle(800)).toHaveLength(1);
        expect(seen(events)).toEqual([`${u.id} OFFLINE`]);
        expect((await statusOf(s, watcher, u.id)).status).toBe('OFFLINE');
      } finally {
        slow.mockRestore();
        quiet.mockRestore();
      }
    });

    it("should go OFFLINE a grace period after the user's last socket closes, and not before", async () => {
      const s = await createTestServer({ ...store, PRESENCE_GRACE: '600ms' });
      const [u, watcher] = [await signup(s.url), await signup(s.url)];
      const [first, second] = [await control(s.url, [s]), await control(s.url, [s])];
      const events = await watch(s, watcher, [u.id, first.user.id, second.user.id]);
      const [tab1, tab2] = [wsClient(s.wsUrl, u.token), wsClient(s.wsUrl, u.token)];
      await Promise.all([tab1.connected, tab2.connected]);
      // One tab of two closes, with the first control's only socket: past its grace, the user is still ONLINE.
      await Promise.all([tab1.dispose(), first.close()]);
      await events.nth(1, 3000);
      expect(seen(events)).toEqual([`${first.user.id} OFFLINE`]);
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
      const closedAt = Date.now();
      await Promise.all([tab2.dispose(), second.close()]);
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
      await eventually(() => seen(events).includes(`${u.id} OFFLINE`), 3000);
      expect(Date.now() - closedAt).toBeGreaterThanOrEqual(550);
      // Once the second control's grace (started with the user's) is over too, nothing more came for the user.
      await events.nth(3, 3000);
      expect(seen(events).sort()).toEqual([`${first.user.id} OFFLINE`, `${u.id} OFFLINE`, `${second.user.id} OFFLINE`].sort());
      expect((await statusOf(s, watcher, u.id)).status).toBe('OFFLINE');
    });

    it('should not go OFFLINE when the socket comes back within the grace period (a page reload)', async () => {
      const s = await createTestServer({ ...store, PRESENCE_GRACE: '800ms' });
      const [u, watcher] = [await signup(s.url), await signup(s.url)];
      const ctl = await control(s.url, [s]);
      const events = await watch(s, watcher, [u.id, ctl.user.id]);
      const before = wsClient(s.wsUrl, u.token);
      await before.connected;
      await Promise.all([before.dispose(), ctl.close()]);
      // The reload: a new socket a moment later, well within the grace period.
      await sleep(RELOAD_MS);
      const after = wsClient(s.wsUrl, u.token);
      await after.connected;
      // Once the control (closed with the first socket) is OFFLINE, the user's grace is over too.
      await events.nth(1, 3000);
      expect(seen(events)).toEqual([`${ctl.user.id} OFFLINE`]);
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
    });

    it('should keep a user ONLINE with heartbeats and return their presence, and sweep them after PRESENCE_TIMEOUT without one', async () => {
      const s = await createTestServer({ ...store, PRESENCE_TIMEOUT: '1s', PRESENCE_SWEEP_CRON: '* * * * * *' }, { jobs: true });
      const [u, idle, watcher] = [await signup(s.url), await signup(s.url), await signup(s.url)];
      const events = await watch(s, watcher, [u.id, idle.id]);
      // Heartbeats every quarter of the timeout until the sweep takes the idle user, who was last
      // active when the other was: past the timeout, the same sweep saw both.
      for (let i = 0; events.values.length === 0; i++) {
        if (i === 20) throw new Error('the idle user was never swept');
        const hb = (await ok(gql(s.url, HEARTBEAT, {}, u.token))).heartbeat;
        expect(hb).toMatchObject({ status: 'ONLINE', user: { id: u.id } });
        expect(Math.abs(new Date(hb.lastSeenAt).getTime() - Date.now())).toBeLessThan(1000);
        await sleep(HEARTBEAT_MS);
      }
      // The idle user is gone, the one sending heartbeats is not; the watcher's socket kept them ONLINE.
      expect(seen(events)).toEqual([`${idle.id} OFFLINE`]);
      expect((await statusOf(s, watcher, u.id)).status).toBe('ONLINE');
      expect((await statusOf(s, watcher, watcher.id)).status).toBe('ONLINE');
      // lastSeenAt of a swept user is their last activity, persisted. With Redis the store publishes
      // the OFFLINE as it removes the user and lastSeenAt is written right after (see sweep): a read
      // at once may come between the two (a loaded CI run read null).
      let idleStatus = await statusOf(s, watcher, idle.id);
      await eventually(async () => (idleStatus = await statusOf(s, watcher, idle.id)).lastSeenAt !== null, 5000);
      expect(idleStatus.status).toBe('OFFLINE');
      expect((await lastSeenInDb(s, idle.id))!.toISOString()).toBe(idleStatus.lastSeenAt);
      // A heartbeat brings the swept user back.
      expect((await ok(gql(s.url, HEARTBEAT, {}, idle.token))).heartbeat.status).toBe('ONLINE');
      await events.nth(2);
      expect(seen(events)).toEqual([`${idle.id} OFFLINE`, `${idle.id} ONLINE`]);
    });
  },
);

describe("the sweep's lastSeenAt", () => {
  it('should tell in OFFLINE the lastSeenAt every read gives after it, though the flush wrote a later request than the store took', async () => {
    // touchEveryMs is a tenth of the timeout (2 s): a second request within it is no store write, but the flush writes it.
    const s = await createTestServer({ PRESENCE_TIMEOUT: '20', PRESENCE_PERSIST_INTERVAL: '1s', PRESENCE_VISIBILITY: 'everyone' });
    const [idle, watcher] = [await signup(s.url), await signup(s.url)];
    const events = await listen(s, watcher, 'subscription($u: [ID!]) { presenceChanged(userIds: $u) { status lastSeenAt } }', { u: [idle.id] });
    await sleep(300);
    // Its activity is taken as the request comes: from before it was sent (after it answered, a loaded
    // CI run's slow request left the activity more than 50 ms before, and this waited for good).
    const later = Date.now();
    await ok(gql(s.url, '{ me { id } }', {}, idle.token));
    await eventually(async () => ((await lastSeenInDb(s, idle.id))?.getTime() ?? 0) >= later, 5000);
    await s.services.presence.sweep({ now: Date.now() + 30_000 });
    const offline = (await events.nth(1)).presenceChanged;
    expect(offline.status).toBe('OFFLINE');
    await eventually(async () => (await lastSeenInDb(s, idle.id))!.toISOString() === offline.lastSeenAt, 5000);
    expect((await ok(gql(s.url, STATUS, { id: idle.id }, watcher.token))).userStatus).toMatchObject({ status: 'OFFLINE', lastSeenAt: offline.lastSeenAt });
  });
});

describe('presence queries', () => {
  it('should page onlineUsers by cursor with totalCount the number online', async () => {
    const s = await createTestServer();
    const users = [];
    for (let i = 0; i < 5; i++) users.push(await signup(s.url));
    const offline = await signup(s.url);
    await ok(gql(s.url, 'mutation { logout }', {}, offline.token));
    const viewer = users[0];
    const ids: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 3; page++) {
      const r: any = (await ok(gql(s.url, ONLINE_USERS, { first: 2, after }, viewer.token))).onlineUsers;
      expect(r.totalCount).toBe(5);
      expect(r.edges.length).toBe(page < 2 ? 2 : 1);
      expect(r.pageInfo.hasNextPage).toBe(page < 2);
      for (const e of r.edges) expect(e.node.status).toBe('ONLINE');
      ids.push(...r.edges.map((e: any) => e.node.id));
      after = r.pageInfo.endCursor;
    }
    expect(ids).toEqual(users.map((u) => u.id).sort());
    // The default page holds everyone.
    expect((await ok(gql(s.url, '{ onlineUsers { totalCount edges { node { id } } } }', {}, viewer.token))).onlineUsers.edges).toHaveLength(5);
    // Bad arguments are refused, and nothing changes.
    expect(codeOf(await gql(s.url, ONLINE_USERS, { first: -1 }, viewer.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, ONLINE_USERS, { first: 2, after: 'not-a-cursor' }, viewer.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, ONLINE_USERS, { first: 2 }))).toBe('UNAUTHENTICATED');
    expect((await ok(gql(s.url, ONLINE_USERS, { first: 0 }, viewer.token))).onlineUsers.totalCount).toBe(5);
  });

  it('should answer userStatus for any user and NOT_FOUND for an unknown one', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    expect(await statusOf(s, a, b.id)).toMatchObject({ status: 'ONLINE', user: { id: b.id } });
    await ok(gql(s.url, 'mutation { logout }', {}, b.token));
    const st = await statusOf(s, a, b.id);
    expect(st.status).toBe('OFFLINE');
    expect(st.lastSeenAt).not.toBeNull();
    for (const id of ['00000000-0000-4000-8000-000000000000', 'nope', "'; drop table users; --", '']) {
      expect(codeOf(await gql(s.url, STATUS, { id }, a.token))).toBe('NOT_FOUND');
    }
    expect(codeOf(await gql(s.url, STATUS, { id: b.id }))).toBe('UNAUTHENTICATED');
  });

  it('should narrow presenceChanged to userIds, and give everyone without them (or with null), no one with an empty list', async () => {
    const s = await createTestServer();
    const [a, b, watcher] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const onlyA = await watch(s, watcher, [a.id]);
    const all = await watch(s, watcher);
    const withNull = await listen<Event>(s, watcher, PRESENCE, { ids: null });
    const none = await listen<Event>(s, watcher, PRESENCE, { ids: [] });
    await ok(gql(s.url, 'mutation { logout }', {}, b.token));
    await ok(gql(s.url, 'mutation { logout }', {}, a.token));
    await all.nth(2);
    await withNull.nth(2);
    // a's logout came last: the narrowed subscription's first event, with nothing before it.
    await onlyA.nth(1);
    expect(seen(onlyA)).toEqual([`${a.id} OFFLINE`]);
    expect(seen(all)).toEqual([`${b.id} OFFLINE`, `${a.id} OFFLINE`]);
    expect(seen(withNull)).toEqual(seen(all));
    expect(none.values).toEqual([]);
  });

  it('should write nothing to PostgreSQL for heartbeats, authenticated requests and WebSocket operations', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const socket = wsClient(s.wsUrl, u.token);
    await socket.connected;
    await ok(gql(s.url, '{ me { id } }', {}, u.token));
    const before = await rowVersions(s.env.DATABASE_URL!);
    const lastSeen = await lastSeenInDb(s, u.id);
    for (let i = 0; i < 100; i++) {
      await ok(gql(s.url, HEARTBEAT, {}, u.token));
      await ok(gql(s.url, '{ me { id status lastSeenAt } friends { id } }', {}, u.token));
    }
    const sub = subscribe(socket, 'subscription { presenceChanged { status } }');
    await running(s, 'presenceChanged', 1);
    sub.stop();
    await running(s, 'presenceChanged', 0);
    expect(await rowVersions(s.env.DATABASE_URL!)).toEqual(before);
    expect(await lastSeenInDb(s, u.id)).toEqual(lastSeen);
  });

  it('should persist lastSeenAt of active users at PRESENCE_PERSIST_INTERVAL, in one write for all', async () => {
    const s = await createTestServer({ PRESENCE_PERSIST_INTERVAL: '1s' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const t0 = Date.now();
    await ok(gql(s.url, HEARTBEAT, {}, a.token));
    await ok(gql(s.url, HEARTBEAT, {}, b.token));
    await eventually(async () => {
      const [x, y] = [await lastSeenInDb(s, a.id), await lastSeenInDb(s, b.id)];
      return x && y && x.getTime() >= t0 - 5 && y.getTime() >= t0 - 5;
    }, 3000);
  });

  it("should write lastSeenAt past a user's row another transaction holds, and that one at a later flush (waiting for it deadlocked with a friend request)", async () => {
    const s = await createTestServer({ PRESENCE_PERSIST_INTERVAL: '1s' });
    const [held, free] = [await signup(s.url), await signup(s.url)];
    await sql(s.env.DATABASE_URL!, 'update users set last_seen_at = null where id = any($1)', [[held.id, free.id]]);
    const seen = async (id: string) => (await sql(s.env.DATABASE_URL!, 'select last_seen_at from users where id = $1', [id]))[0].last_seen_at;
    // A friend request holds its two users' rows (FOR SHARE) while it runs.
    const other = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('select 1 from users where id = $1 for share', [held.id]);
      await Promise.all([s.services.presence.touch(held.id), s.services.presence.touch(free.id)]);
      await eventually(async () => (await seen(free.id)) !== null, 5000);
      expect(await seen(held.id)).toBeNull();
      await other.query('commit');
      await eventually(async () => (await seen(held.id)) !== null, 5000);
    } finally {
      await other.end();
    }
  });

  it("should write at a stop the lastSeenAt of a user whose row another transaction held at the stop's flush", async () => {
    const s = await createTestServer({ PRESENCE_PERSIST_INTERVAL: '1h' });
    const held = await signup(s.url);
    await sql(s.env.DATABASE_URL!, 'update users set last_seen_at = null where id = $1', [held.id]);
    const other = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('select 1 from users where id = $1 for share', [held.id]);
      await s.services.presence.touch(held.id);
      const writes = jest.spyOn(userRepository, 'recordLastSeen');
      const stopped = s.dispose();
      // The stop's flush passed the held row over; the transaction ends while the stop goes on.
      await eventually(() => writes.mock.calls.length > 0, 5000);
      expect(await writes.mock.results[0].value).toEqual([held.id]);
      writes.mockRestore();
      await other.query('commit');
      await stopped;
    } finally {
      await other.end();
    }
    const [row] = await sql(s.env.DATABASE_URL!, 'select last_seen_at from users where id = $1', [held.id]);
    expect(row.last_seen_at).not.toBeNull();
  });

  it('should write a large flush in paced chunks, so that no statement holds the database long', async () => {
    const s = await createTestServer({ PRESENCE_PERSIST_INTERVAL: '1s' });
    // 600 users made by SQL, active as far as this instance knows.
    const ids: string[] = (
      await sql(s.env.DATABASE_URL!, "insert into users (id, username, password_hash, created_at) select gen_random_uuid(), 'flush_' || g, 'x', now() from generate_series(1, 600) g returning id")
    ).map((r: { id: string }) => r.id);
    const writes = jest.spyOn(userRepository, 'recordLastSeen');
    try {
      // At once, as requests of 600 users come: activity goes to the store in batches.
      await Promise.all(ids.map((id) => s.services.presence.touch(id)));
      await eventually(async () => (await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from users where id = any($1) and last_seen_at is not null', [ids]))[0].n === 600, 5000);
      // 250 at most a statement. A slow machine's interval may fire during the touches and split
      // them otherwise (250, 91, 250, 9 was seen), so the sizes are checked, not their sequence.
      const sizes = writes.mock.calls.map(([, entries]) => entries.length);
      expect(Math.max(...sizes)).toBe(250);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(600);
      expect(sizes.length).toBeGreaterThanOrEqual(3);
    } finally {
      writes.mockRestore();
    }
  });
});

describeRedis('presence across instances', () => {
  const FAST = { PRESENCE_TIMEOUT: '2s', PRESENCE_GRACE: '500ms', PRESENCE_SWEEP_CRON: '* * * * * *' };
  // Socket lists refreshed only every 10 s: what an instance learns about another's sockets within a test comes from the moment they open and close.
  const SLOW_REFRESH = { PRESENCE_TIMEOUT: '40s', PRESENCE_GRACE: '500ms' };

  it('should record, in one batch, the sessions of the activities that name one and none for those that do not', async () => {
    const s = await createTestServer();
    const [a, b, c, d] = Array.from({ length: 4 }, () => randomUUID());
    const keyCounts: number[] = [];
    const monitor = await monitorRedis(s.env.REDIS_URL!, ({ source, args }) => {
      if (source !== 'lua' && /^eval(sha)?$/i.test(args[0]) && args.includes(a)) keyCounts.push(Number(args[2]));
    });
    try {
      // Within one batch's 10 ms: two without a session (as the sockets' refresh), two with.
      await Promise.all([s.services.presence.touch(a), s.services.presence.touch(b, 'sb'), s.services.presence.touch(c), s.services.presence.touch(d, 'sd')]);
      const redis = s.services.redis!.client;
      for (const id of [a, b, c, d]) expect(await redis.zscore('{presence}:active', id)).not.toBeNull();
      expect(await Promise.all([a, b, c, d].map((id) => redis.zrange(`{presence}:sessions:${id}`, 0, -1)))).toEqual([[], ['sb'], [], ['sd']]);
      // One script: the four presence keys and the two sessions' keys, none for the others.
      await eventually(() => keyCounts.length > 0);
      expect(keyCounts).toEqual([6]);
    } finally {
      monitor.close();
    }
  });

  it("should take a user OFFLINE at once when they log out on one instance and their session's only socket is on another", async () => {
    // A long grace: a reload's, which a revoked session's socket does not get.
    const a = await createTestServer({ PRESENCE_GRACE: '20s' });
    const b = await createTestServer({ PRESENCE_GRACE: '20s' }, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const events = await watch(a, watcher, [u.id]);
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const socket = wsClient(b.wsUrl, u.token);
    await socket.connected;
    await ok(gql(a.url, 'mutation { logout }', {}, u.token));
    expect((await socket.closed).code).toBe(4403);
    await events.nth(1, 3000);
    quiet.mockRestore();
    expect(seen(events)).toEqual([`${u.id} OFFLINE`]);
    expect((await statusOf(a, watcher, u.id)).status).toBe('OFFLINE');
  });

  it("should leave watchers with a user's latest transition when an earlier one's publish, from another instance, comes after it", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(b.url)];
    const events = await watch(b, watcher, [u.id]);
    // u is ONLINE (signed up through A). A's publish of u's logout is held (a slow instance) while u logs in again through B.
    const hold = holdNextPublishOf(a.services.pubsub, Topic.PresenceChanged);
    const loggingOut = gql(a.url, 'mutation { logout }', {}, u.token);
    await eventually(() => hold.held());
    await login(b.url, u);
    await events.nth(1, 3000);
    hold.release();
    await ok(loggingOut);
    hold.restore();
    // The OFFLINE, decided first, arrives last: a watcher that applied it would show u OFFLINE while they are ONLINE.
    await events.settle(500);
    expect(seen(events)).toEqual([`${u.id} ONLINE`]);
    expect((await statusOf(b, watcher, u.id)).status).toBe('ONLINE');
  });

  it('should announce one OFFLINE when a logout whose activity is written late comes to an instance the session never used', async () => {
    const a = await createTestServer({ PRESENCE_GRACE: '20s' });
    const b = await createTestServer({ PRESENCE_GRACE: '20s' }, { clean: false });
    const [u, watcher] = [await signup(b.url), await signup(a.url)];
    // The session lives on B: signed up there, its only socket there.
    const token = u.token;
    const socket = wsClient(b.wsUrl, token);
    await socket.connected;
    const events = await watch(a, watcher, [u.id]);
    // A's activity reaches the store late (a slow Redis), after B has settled the revoked socket.
    const store = (a.services.presence as unknown as { store: { touch: (...args: unknown[]) => Promise<string[]> } }).store;
    const touch = store.touch.bind(store);
    const slow = jest.spyOn(store, 'touch').mockImplementation(async (...args) => {
      await sleep(300);
      return touch(...args);
    });
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      await ok(gql(a.url, 'mutation { logout }', {}, token));
      expect((await socket.closed).code).toBe(4403);
      await events.nth(1, 3000);
      // Written after B's OFFLINE, the logout's own activity brought the user back ONLINE, then OFFLINE again.
      expect(await events.settle(800)).toHaveLength(1);
      expect(seen(events)).toEqual([`${u.id} OFFLINE`]);
      expect((await statusOf(a, watcher, u.id)).status).toBe('OFFLINE');
    } finally {
      slow.mockRestore();
      quiet.mockRestore();
    }
  });

  it('should not bring back ONLINE a user whose request through one instance, answered just before their logout through another, is written after it', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const events = await watch(a, watcher, [u.id]);
    // B writes its activity late (its batch on its way to a slow Redis) while A logs the session out.
    const store = (b.services.presence as unknown as { store: { touch: (...args: unknown[]) => Promise<unknown> } }).store;
    const touch = store.touch.bind(store);
    const slow = jest.spyOn(store, 'touch').mockImplementation(async (...args) => {
      await sleep(300);
      return touch(...args);
    });
    try {
      await ok(gql(b.url, '{ me { id } }', {}, u.token));
      await ok(gql(a.url, 'mutation { logout }', {}, u.token));
      await events.nth(1, 3000);
      // Written after the logout's OFFLINE, the request's activity took the user ONLINE until the sweep.
      await sleep(800);
      expect(seen(events)).toEqual([`${u.id} OFFLINE`]);
      expect((await statusOf(a, watcher, u.id)).status).toBe('OFFLINE');
      expect((await statusOf(b, watcher, u.id)).status).toBe('OFFLINE');
    } finally {
      slow.mockRestore();
    }
  });

  it('should not bring back ONLINE, once an instance is on Redis again, a user who logged out elsewhere while it was cut off', async () => {
    const redisUrl = new URL(process.env.REDIS_URL!);
    const proxy = new TcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
    await proxy.start();
    try {
      const a = await createTestServer({ REDIS_URL: `redis://127.0.0.1:${proxy.port}${redisUrl.pathname}` });
      const b = await createTestServer({}, { clean: false });
      const [u, watcher] = [await signup(b.url), await signup(b.url)];
      // A request of u's through A: A wrote that activity, and would tell it again to a store that lost it.
      await ok(gql(a.url, '{ me { id } }', {}, u.token));
      const events = await watch(b, watcher, [u.id]);
      const back = new Promise<void>((resolve) => {
        const off = a.services.pubsub.onReconnect(() => (off(), resolve()));
      });
      await proxy.cut();
      await ok(gql(b.url, 'mutation { logout }', {}, u.token));
      await events.nth(1);
      await proxy.restore();
      await back;
      // The store kept its data (and the logout): nothing of A's is told again.
      await sleep(1000);
      expect(seen(events)).toEqual([`${u.id} OFFLINE`]);
      expect((await statusOf(b, watcher, u.id)).status).toBe('OFFLINE');
    } finally {
      await proxy.cut();
    }
  }, 30_000);

  it('should announce nothing when a user OFFLINE deletes their account: no ONLINE, then OFFLINE', async () => {
    const s = await createTestServer({ PRESENCE_GRACE: '100ms' });
    const [u, watcher] = [await signup(s.url), await signup(s.url)];
    const events = await watch(s, watcher, [u.id]);
    const socket = wsClient(s.wsUrl, u.token);
    await socket.connected;
    socket.client.dispose();
    // The watcher hears the user go OFFLINE once their socket closed.
    await eventually(() => seen(events).at(-1) === `${u.id} OFFLINE`, 5000);
    const before = seen(events);
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: u.password }, u.token));
    // The request's activity, written during the password's check, announced the user ONLINE, then OFFLINE deleted.
    await sleep(800);
    expect(seen(events)).toEqual(before);
  });

  it("should keep no lastSeenAt of a deleted account: its OFFLINE and its placeholder, as a sender, tell no time", async () => {
    const s = await createTestServer({ PRESENCE_PERSIST_INTERVAL: '1s', PRESENCE_GRACE: '100ms' });
    const [u, watcher] = [await signup(s.url), await signup(s.url)];
    const events = await watch(s, watcher, [u.id]);
    await ok(gql(s.url, HEARTBEAT, {}, u.token));
    // A socket of theirs, closed by the deletion's revocation: its OFFLINE may come before the deletion's own.
    const socket = wsClient(s.wsUrl, u.token);
    await socket.connected;
    const lobby = await lobbyOf(s.url, u.token);
    await sendMessage(s.url, u.token, { groupId: lobby, content: 'before I go' });
    // Written to the users' table while online, as any active user's is.
    await eventually(async () => (await lastSeenInDb(s, u.id)) !== null, 5000);
    const told = events.values.length;
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: u.password }, u.token));
    await eventually(() => events.values.some((v) => v.presenceChanged.status === 'OFFLINE'), 5000);
    await sleep(1500);
    // An outside probe: the placeholder read, and its OFFLINE told, when its account was last active. Told once.
    expect(events.values.slice(told).map((v) => v.presenceChanged)).toEqual([{ status: 'OFFLINE', lastSeenAt: null, user: { id: u.id } }]);
    expect(await lastSeenInDb(s, u.id)).toBeNull();
    expect(codeOf(await gql(s.url, STATUS, { id: u.id }, watcher.token))).toBe('NOT_FOUND');
    const page = await ok(gql(s.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 1) { edges { node { sender { id username status lastSeenAt } } } } }', { g: lobby }, watcher.token));
    expect(page.history.edges[0].node.sender).toEqual({ id: u.id, username: `deleted-${u.id.replace(/-/g, '')}`, status: 'OFFLINE', lastSeenAt: null });
  });

  it('should record the activity of many users\' requests together, each session\'s, and a logout after it', async () => {
    // A 2 s timeout: a user's activity is written at most every 200 ms.
    const s = await createTestServer({ PRESENCE_TIMEOUT: '2s' });
    const users = await Promise.all(Array.from({ length: 8 }, () => signup(s.url)));
    const scripts: number[] = [];
    const monitor = await monitorRedis(s.env.REDIS_URL!, ({ source, args }) => {
      if (source !== 'lua' && /^eval(sha)?$/i.test(args[0]) && users.some((u) => args.includes(u.id))) scripts.push(Number(args[2]) - 4);
    });
    try {
      await sleep(250);
      const before = Date.now();
      await Promise.all(users.map((u) => ok(gql(s.url, HEARTBEAT, {}, u.token))));
      // Every heartbeat's activity, written by fewer scripts than requests, each with its session.
      // MONITOR tells on a socket of its own: it may come after the answers.
      await eventually(() => scripts.reduce((n, k) => n + k, 0) === users.length);
      expect(scripts.length).toBeLessThan(users.length);
      const redis = s.services.redis!.client;
      for (const u of users) {
        expect(Number(await redis.zscore('{presence}:active', u.id))).toBeGreaterThanOrEqual(before);
        expect(await redis.zcard(`{presence}:sessions:${u.id}`)).toBe(1);
      }
      // A logout right after a request: that request's activity does not bring its user back.
      const [out, watcher] = [users[0], users[1]];
      const events = await listen(s, watcher, PRESENCE, { ids: [out.id] });
      await sleep(250);
      await ok(gql(s.url, 'mutation { logout }', {}, out.token));
      expect((await events.nth(1)).presenceChanged.status).toBe('OFFLINE');
      expect(await events.settle(200)).toHaveLength(1);
      expect(await redis.zscore('{presence}:active', out.id)).toBeNull();
    } finally {
      monitor.close();
    }
  });

  it('should keep a user with sockets on two instances ONLINE until the last one closes, then publish OFFLINE once', async () => {
    const a = await createTestServer(SLOW_REFRESH);
    const b = await createTestServer(SLOW_REFRESH, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const [onAControl, onBControl] = [await control(a.url, [a]), await control(a.url, [b])];
    const ids = [u.id, onAControl.user.id, onBControl.user.id];
    const onA = await watch(a, watcher, ids);
    const onB = await watch(b, watcher, ids);
    const sa = wsClient(a.wsUrl, u.token);
    await sa.connected;
    // Opened just before the other closes: B must be seen at once, not at its next refresh.
    const sb = wsClient(b.wsUrl, u.token);
    await sb.connected;
    // Closed with a control's socket on A: once that one is OFFLINE, A's grace for the user is over too.
    await Promise.all([sa.dispose(), onAControl.close()]);
    await onA.nth(1, 3000);
    expect(seen(onA)).toEqual([`${onAControl.user.id} OFFLINE`]);
    expect((await statusOf(a, watcher, u.id)).status).toBe('ONLINE');
    // Then B's, with a control's socket on B: once both are OFFLINE, nothing more came for the user.
    await Promise.all([sb.dispose(), onBControl.close()]);
    await onA.nth(3, 3000);
    await onB.nth(3, 3000);
    for (const sub of [onA, onB]) {
      expect(seen(sub)[0]).toBe(`${onAControl.user.id} OFFLINE`);
      expect(seen(sub).slice(1).sort()).toEqual([`${u.id} OFFLINE`, `${onBControl.user.id} OFFLINE`].sort());
    }
  });

  it('should keep ONLINE, past the grace, a user active on one instance just after their last socket on another closed', async () => {
    const a = await createTestServer(SLOW_REFRESH);
    const b = await createTestServer(SLOW_REFRESH, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const ctl = await control(a.url, [b]);
    const onA = await watch(a, watcher, [u.id, ctl.user.id]);
    // Active on A: A records her next requests only a few seconds on (its throttle).
    await ok(gql(a.url, '{ me { id } }', {}, u.token));
    const sb = wsClient(b.wsUrl, u.token);
    await sb.connected;
    // Her socket on B closes (a tab gone, the app on HTTP now), with a control's: once that one is OFFLINE, B's grace for her is over too.
    await Promise.all([sb.dispose(), ctl.close()]);
    await eventually(() => !b.services.presence.hasSocket(u.id));
    await ok(gql(a.url, 'mutation { heartbeat { status } }', {}, u.token));
    await onA.nth(1, 3000);
    await sleep(300);
    expect(seen(onA)).toEqual([`${ctl.user.id} OFFLINE`]);
    expect((await statusOf(a, watcher, u.id)).status).toBe('ONLINE');
    expect((await statusOf(b, watcher, u.id)).status).toBe('ONLINE');
  });

  it("should settle, on another instance, the users whose last socket a stopping instance closed: OFFLINE once after the grace, or ONLINE still if they came back", async () => {
    const a = await createTestServer(SLOW_REFRESH);
    const b = await createTestServer(SLOW_REFRESH, { clean: false });
    const [gone, back, watcher] = [await signup(b.url), await signup(b.url), await signup(b.url)];
    const events = await watch(b, watcher, [gone.id, back.id]);
    // Closed by the server's stop: not an error to print.
    const quiet = { onNonLazyError: () => undefined };
    const [sg, sk] = [wsClient(a.wsUrl, gone.token, undefined, quiet), wsClient(a.wsUrl, back.token, undefined, quiet)];
    await Promise.all([sg.connected, sk.connected]);
    // A deploy stops A: its sockets close with 1001; one user reconnects to B within the grace, the other doesn't.
    await a.dispose();
    const again = wsClient(b.wsUrl, back.token);
    await again.connected;
    // Settled by B after the grace, not left to the sweep (PRESENCE_TIMEOUT is 40 s here).
    await events.nth(1, 5000);
    expect(await events.settle(1000)).toHaveLength(1);
    expect(seen(events)).toEqual([`${gone.id} OFFLINE`]);
    expect((await statusOf(b, watcher, gone.id)).status).toBe('OFFLINE');
    expect((await statusOf(b, watcher, back.id)).status).toBe('ONLINE');
    again.dispose();
  });

  it('should pass on the users a stopping instance took from another, unsettled, to one still running', async () => {
    // A rollout: A stops, B takes its user in the grace period and stops too before the grace ends; C settles them.
    const env = { ...SLOW_REFRESH, PRESENCE_GRACE: '6s' };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    const gone = await signup(a.url);
    const socket = wsClient(a.wsUrl, gone.token, undefined, { onNonLazyError: () => undefined });
    await socket.connected;
    await a.dispose();
    const taken = () => (b.services.presence as unknown as { handoffs: Map<unknown, unknown> }).handoffs.size;
    await eventually(() => taken() === 1);
    const c = await createTestServer(env, { clean: false });
    const watcher = await signup(c.url);
    const events = await watch(c, watcher, [gone.id]);
    await b.dispose();
    // Within what is left of the grace (6 s from A's stop), not after PRESENCE_TIMEOUT (40 s).
    await events.nth(1, 9000);
    expect(seen(events)).toEqual([`${gone.id} OFFLINE`]);
  });

  it('should publish one OFFLINE when the last sockets on two instances close at the same moment', async () => {
    const a = await createTestServer(SLOW_REFRESH);
    const b = await createTestServer(SLOW_REFRESH, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const ctl = await control(a.url, [a, b]);
    const events = await watch(a, watcher, [u.id, ctl.user.id]);
    const [sa, sb] = [wsClient(a.wsUrl, u.token), wsClient(b.wsUrl, u.token)];
    await Promise.all([sa.connected, sb.connected]);
    // With the control's sockets on both: once both are OFFLINE, both instances have decided for each.
    await Promise.all([sa.dispose(), sb.dispose(), ctl.close()]);
    await events.nth(2, 3000);
    expect(seen(events).sort()).toEqual([`${u.id} OFFLINE`, `${ctl.user.id} OFFLINE`].sort());
  });

  it('should sweep once per tick when two instances run the job, publishing one set of events', async () => {
    const a = await createTestServer(FAST, { jobs: true });
    const b = await createTestServer(FAST, { clean: false, jobs: true });
    const [u1, u2, watcher] = [await signup(a.url), await signup(b.url), await signup(a.url)];
    const onA = await watch(a, watcher);
    const onB = await watch(b, watcher);
    await Promise.all([onA.nth(2, 8000), onB.nth(2, 8000)]);
    // Two more sweeps, so that a tick after the one that took them would have published again.
    await sweepsRun([a, b]);
    for (const sub of [onA, onB]) expect(seen(sub).sort()).toEqual([`${u1.id} OFFLINE`, `${u2.id} OFFLINE`].sort());
    // Each tick ran on exactly one of them.
    const slots = [...a.services.presence.sweeps, ...b.services.presence.sweeps].map((r) => r.slot);
    expect(slots.length).toBeGreaterThanOrEqual(3);
    expect(new Set(slots).size).toBe(slots.length);
    // The watcher, idle but with live sockets, stayed ONLINE through every sweep.
    expect((await statusOf(a, watcher, watcher.id)).status).toBe('ONLINE');
  });

  it('should forget sessions expired for a day, on a sweep tick, and keep the others', async () => {
    const a = await createTestServer(FAST, { jobs: true });
    const [old, recent, live] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const db = a.env.DATABASE_URL!;
    await sql(db, "update sessions set expires_at = now() - interval '2 days' where user_id = $1", [old.id]);
    await sql(db, "update sessions set expires_at = now() - interval '1 hour' where user_id = $1", [recent.id]);
    await sweepsRun([a]);
    const left = await sql(db, 'select user_id from sessions order by user_id');
    expect(left.map((r: { user_id: string }) => r.user_id)).toEqual([recent.id, live.id].sort());
  });

  it("should not leave a killed instance's users ONLINE: its socket bookkeeping expires and the sweep takes them OFFLINE once", async () => {
    const a = await createTestServer(FAST, { jobs: true });
    // In a child process, so that it can be killed without a goodbye.
    const child = await createTestServer(FAST, { clean: false, spawn: true });
    const [u, watcher, idle] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const events = await watch(a, watcher, [u.id, idle.id]);
    // The client's socket will die with the instance (1006), which graphql-ws reports with console.error.
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const socket = wsClient(child.wsUrl, u.token);
    try {
      await socket.connected;
      // Alive, the instance keeps its user ONLINE past the timeout: the sweep that takes the idle user
      // (last active after the user's socket opened) saw the user as well.
      await ok(gql(a.url, HEARTBEAT, {}, idle.token));
      await events.nth(1, 8000);
      expect(seen(events)).toEqual([`${idle.id} OFFLINE`]);
      expect((await statusOf(a, watcher, u.id)).status).toBe('ONLINE');
      await child.kill();
      expect((await socket.closed).code).toBe(1006);
      await events.nth(2, 8000);
      await sweepsRun([a]);
      expect(seen(events)).toEqual([`${idle.id} OFFLINE`, `${u.id} OFFLINE`]);
      expect((await statusOf(a, watcher, u.id)).status).toBe('OFFLINE');
    } finally {
      quiet.mockRestore();
    }
  });

  it("should take a user OFFLINE once the grace of their socket closed on one instance ends, when their last session logged out on another meanwhile", async () => {
    // No sweep within the test: only the closing instance's settling can take the user OFFLINE.
    const SLOW_SWEEP = { PRESENCE_TIMEOUT: '60s', PRESENCE_GRACE: '1s' };
    const a = await createTestServer(SLOW_SWEEP);
    const b = await createTestServer(SLOW_SWEEP, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const events = await watch(a, watcher, [u.id]);
    const phone = await login(a.url, u);
    const onB = wsClient(b.wsUrl, phone);
    await onB.connected;
    // The phone's app closes (a grace starts on b); the web session is active after it, ends the
    // phone's session and logs out, on a, within the grace.
    await onB.dispose();
    await ok(gql(a.url, '{ me { id } }', {}, u.token));
    await sleep(200);
    await ok(gql(a.url, 'mutation($p: String!) { logoutOtherSessions(password: $p) }', { p: u.password }, u.token));
    await ok(gql(a.url, 'mutation { logout }', {}, u.token));
    // OFFLINE a grace after the close, not at the sweep a minute later.
    const offline = await events.nth(1, 5000);
    expect(offline.presenceChanged).toMatchObject({ status: 'OFFLINE', user: { id: u.id } });
  });

  it("should settle a closed socket's user a grace after the last socket elsewhere lapses when its instance was killed, not at the sweep", async () => {
    // Socket lists refreshed every 2 s and kept 6 s; no sweep runs here, so only the closing instance can settle the user.
    const QUICK = { PRESENCE_TIMEOUT: '8s', PRESENCE_GRACE: '500ms' };
    const a = await createTestServer(QUICK);
    const child = await createTestServer(QUICK, { clean: false, spawn: true });
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const events = await watch(a, watcher, [u.id]);
    const quiet = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const onA = wsClient(a.wsUrl, u.token);
    const onChild = wsClient(child.wsUrl, u.token);
    try {
      await Promise.all([onA.connected, onChild.connected]);
      await child.kill();
      expect((await onChild.closed).code).toBe(1006);
      const closedAt = Date.now();
      await onA.dispose();
      // Held by the killed instance's last listing (at most 6 s), then OFFLINE, once (no sweep runs here).
      await events.nth(1, 15_000);
      expect(Date.now() - closedAt).toBeLessThan(14_000);
      expect(seen(events)).toEqual([`${u.id} OFFLINE`]);
      expect(await events.settle(500)).toHaveLength(1);
    } finally {
      quiet.mockRestore();
    }
  });

  it('should sweep from the command line: npm run presence:sweep publishes each transition once', async () => {
    const s = await createTestServer({ PRESENCE_TIMEOUT: '1s' });
    const [u, watcher] = [await signup(s.url), await signup(s.url)];
    const idleSince = Date.now();
    const events = await watch(s, watcher);
    // What is under test: the user's PRESENCE_TIMEOUT (1 s) passing without activity.
    await sleep(idleSince + 1000 + 100 - Date.now());
    const env = { DATABASE_URL: s.env.DATABASE_URL, REDIS_URL: s.env.REDIS_URL, PRESENCE_TIMEOUT: '1s' };
    const first = await runCli(env);
    expect(first.code).toBe(0);
    // The watcher holds a socket: only the idle user goes.
    expect(summaryOf(first.stdout)).toMatchObject({ expired: 1 });
    await events.nth(1);
    const second = await runCli(env);
    expect(second.code).toBe(0);
    expect(summaryOf(second.stdout)).toMatchObject({ expired: 0 });
    const other = await signup(s.url);
    // Another user's logout as a barrier: once its OFFLINE arrives, one the second run published would have.
    await ok(gql(s.url, 'mutation { logout }', {}, other.token));
    await events.nth(3);
    expect(seen(events)).toEqual([`${u.id} OFFLINE`, `${other.id} ONLINE`, `${other.id} OFFLINE`]);
    const st = await statusOf(s, watcher, u.id);
    expect(st.status).toBe('OFFLINE');
    expect((await lastSeenInDb(s, u.id))!.toISOString()).toBe(st.lastSeenAt);
    // Misconfigured: one clear line and exit 1.
    const bad = await runCli({ ...env, REDIS_URL: '' });
    expect(bad.code).toBe(1);
    expect(bad.stdout + bad.stderr).toMatch(/REDIS_URL/);
  });
});

describeNeeding('redis-server and redis-cli', tools.redisCluster)('presence on a Redis Cluster', () => {
  const cluster = new OwnRedisCluster();
  beforeAll(() => cluster.start(), 30_000);
  afterAll(() => cluster.stop());

  // Sharded: the service publishes (SPUBLISH). Classic: the store's Lua step publishes (PUBLISH reaches every node).
  it.each([['sharded', 'true'], ['classic', 'false']])(
    'should run the presence scripts in one slot and deliver the sweep and logout transitions once over %s pub/sub',
    async (_kind, sharded) => {
      const env = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes, REDIS_SHARDED_PUBSUB: sharded, PRESENCE_TIMEOUT: '1s', PRESENCE_GRACE: '300ms', PRESENCE_SWEEP_CRON: '* * * * * *' };
      const a = await createTestServer(env, { jobs: true });
      const b = await createTestServer(env, { clean: false, jobs: true });
      const [idle, leaving, watcher] = [await signup(a.url), await signup(b.url), await signup(a.url)];
      const onA = await watch(a, watcher, [idle.id, leaving.id]);
      const onB = await watch(b, watcher, [idle.id, leaving.id]);
      await ok(gql(b.url, 'mutation { logout }', {}, leaving.token));
      // Classic pub/sub crosses the cluster bus: the signups' ONLINE events may land after the watch began.
      const offline = (sub: Subscription<Event>) => seen(sub).filter((e) => e.endsWith('OFFLINE'));
      await eventually(() => [onA, onB].every((sub) => offline(sub).length >= 2), 8000);
      // Two more sweeps, so that a tick after the one that took the idle user would have published again.
      await sweepsRun([a, b]);
      for (const sub of [onA, onB]) expect(offline(sub).sort()).toEqual([`${idle.id} OFFLINE`, `${leaving.id} OFFLINE`].sort());
      expect((await statusOf(a, watcher, watcher.id)).status).toBe('ONLINE');
      const st = await statusOf(a, watcher, idle.id);
      expect(st.status).toBe('OFFLINE');
      expect(onA.values.find((v) => v.presenceChanged.user.id === idle.id)!.presenceChanged.lastSeenAt).toBe(st.lastSeenAt);
    },
    60_000,
  );
});
