import { Redis } from 'ioredis';
import pg from 'pg';
import { codeOf, eventually, gql, listen as listenOn, ok, sleep, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, redisName, type TestServer } from './helpers/server';
import { buildConnectedUser, signup, type TestUser, lobbyOf, attempt, login, sendMessage, request, groupWith } from './helpers/factories';
import { LoginDocument, SendMessageDocument, HistoryDocument } from '../generated/client/graphql';
import { OwnRedis } from './helpers/redis-server';
import { RedisPresenceStore } from '../src/modules/presence/presence.store';
import { randomUUID } from 'node:crypto';
import { sql } from './helpers/db';
import { describeNeeding, tools } from './helpers/tools';

const STATUS = 'query($id: ID!) { userStatus(userId: $id) { status } }';

async function listen(s: TestServer, u: TestUser, query: string, variables?: Record<string, unknown>) {
  const sub = await listenOn<any>(s, u, query, variables);
  return { w: sub.ws, sub };
}

describeRedis('two instances', () => {
  it('should deliver every subscription type caused on B to a subscriber on A exactly once', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob, carol] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const lobby = await lobbyOf(a.url, alice.token);
    const messages = await listen(a, alice, 'subscription { messageAdded { content } }');
    const messages2 = await listen(a, carol, 'subscription { messageAdded { content } }');
    const presence = await listen(a, alice, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', { ids: [bob.id] });
    const groups = await listen(a, alice, 'subscription { groupEvent { kind group { name } } }');
    const actions = await listen(a, alice, 'subscription { projectAction { kind projectId actor { id } } }');
    await ok(gql(b.url, 'mutation { logout }', {}, bob.token));
    // The revoked token is refused and sends nothing.
    expect(codeOf(await attempt(b.url, SendMessageDocument, { input: { groupId: lobby, content: 'revoked' } }, bob.token))).toBe('UNAUTHENTICATED');
    const bobToken = await login(b.url, bob);
    await sendMessage(b.url, bobToken, { groupId: lobby, content: 'from B' });
    await ok(gql(b.url, 'mutation { createGroup(name: "Made on B") { id } }', {}, bobToken));
    const project = (await ok(gql(b.url, 'mutation { createProject(title: "Built on B") { id } }', {}, bobToken))).createProject.id;
    await ok(gql(b.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: project, u: alice.id }, bobToken));
    await messages.sub.nth(1);
    await groups.sub.nth(1);
    await presence.sub.nth(2);
    await actions.sub.nth(1);
    // An event caused on A reaches A's subscribers once: dispatched locally, its echo from Redis skipped.
    await sendMessage(a.url, bobToken, { groupId: lobby, content: 'from A' });
    await messages.sub.nth(2);
    // One more of each from B as barriers: once they arrive (Redis keeps order), a duplicate of anything before would have.
    await sendMessage(b.url, bobToken, { groupId: lobby, content: 'last from B' });
    await ok(gql(b.url, 'mutation { createGroup(name: "Last on B") { id } }', {}, bobToken));
    const last = (await ok(gql(b.url, 'mutation { createProject(title: "Last on B") { id } }', {}, bobToken))).createProject.id;
    await ok(gql(b.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: last, u: alice.id }, bobToken));
    await ok(gql(b.url, 'mutation { logout }', {}, bobToken));
    await Promise.all([messages.sub.nth(3), messages2.sub.nth(3), groups.sub.nth(2), actions.sub.nth(2), presence.sub.nth(3)]);
    expect(actions.sub.values).toEqual([
      { projectAction: { kind: 'ADDED_TO_PROJECT', projectId: project, actor: { id: bob.id } } },
      { projectAction: { kind: 'ADDED_TO_PROJECT', projectId: last, actor: { id: bob.id } } },
    ]);
    for (const sub of [messages, messages2]) expect(sub.sub.values.map((v) => v.messageAdded.content)).toEqual(['from B', 'from A', 'last from B']);
    expect(groups.sub.values.map((v) => v.groupEvent.group.name)).toEqual(['Made on B', 'Last on B']);
    expect(presence.sub.values.map((v) => v.presenceChanged.status)).toEqual(['OFFLINE', 'ONLINE', 'OFFLINE']);
    // Messages travel per conversation: one Redis subscription to the lobby's channel on A, however
    // many local subscribers; B, with no socket, takes none; no instance takes the whole topic.
    const redis = new Redis(a.env.REDIS_URL!);
    try {
      const numsub = async (channel: string) => ((await redis.pubsub('NUMSUB', redisName(channel))) as [string, number])[1];
      expect(await numsub(`parley.conv:g:${lobby}`)).toBe(1);
      expect(await numsub('parley.message.added')).toBe(0);
      expect(b.services.pubsub.takenChannels()).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  it('should keep a user ONLINE when one instance shuts down and their socket lives on the other', async () => {
    const env = { PRESENCE_GRACE: '300ms' };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    const [u, watcher] = [await signup(a.url), await signup(b.url)];
    const ctl = await buildConnectedUser(a.url, [a, b]);
    const onA = wsClient(a.wsUrl, u.token);
    const onB = wsClient(b.wsUrl, u.token);
    await Promise.all([onA.connected, onB.connected]);
    const events = await listen(b, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', { ids: [u.id, ctl.user.id] });
    await a.dispose();
    expect((await onA.closed).code).toBe(1001);
    // The client reconnects to the other instance.
    const again = wsClient(b.wsUrl, u.token);
    await again.connected;
    // The control, with sockets on both too, closes its last one now: once its grace is over, B has settled the user's.
    await ctl.close();
    await events.sub.nth(1, 3000);
    expect((await ok(gql(b.url, STATUS, { id: u.id }, watcher.token))).userStatus.status).toBe('ONLINE');
    expect(events.sub.values).toEqual([{ presenceChanged: { status: 'OFFLINE', user: { id: ctl.user.id } } }]);
  });

  it('should finish a send still running when its instance stops: stored, and published to the other instance', async () => {
    const a = await createTestServer({}, { captureLogs: true });
    const b = await createTestServer({}, { clean: false });
    const [alice, bob] = [await signup(a.url), await signup(a.url)];
    const lobby = await lobbyOf(a.url, alice.token);
    const onB = await listen(b, bob, 'subscription { messageAdded { content } }');
    const sender = wsClient(a.wsUrl, alice.token);
    await sender.connected;
    // The send waits on a lock held here, so it is still running when A closes its sockets.
    const lock = new pg.Client({ connectionString: a.env.DATABASE_URL });
    await lock.connect();
    try {
      await lock.query('begin');
      await lock.query('lock table messages in exclusive mode');
      sender.client.subscribe({ query: 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "in flight" }) { id } }', variables: { g: lobby } }, { next() {}, error() {}, complete() {} });
      await eventually(async () => (await sql(a.env.DATABASE_URL!, "select count(*)::int as n from pg_locks where not granted and relation = 'messages'::regclass and database = (select oid from pg_database where datname = current_database())"))[0].n === 1);
      const stopping = a.dispose();
      // Its client is gone (a deploy's 1001: it would retry elsewhere, and the retry would publish nothing).
      expect((await sender.closed).code).toBe(1001);
      // Still running half a second into the stop: long past the rest of what stopping does.
      await sleep(500);
      await lock.query('commit');
      await stopping;
    } finally {
      await lock.end();
    }
    expect((await onB.sub.nth(1)).messageAdded.content).toBe('in flight');
    expect(await sql(b.env.DATABASE_URL!, "select count(*)::int as n from messages where content = 'in flight'")).toEqual([{ n: 1 }]);
    expect(a.logs.filter((l) => ['warn', 'error', 'fatal'].includes(l.json.level)).map((l) => l.json.msg)).toEqual([]);
  });
});

describeNeeding('redis-server', tools.redisServer)('Redis outage', () => {
  /** Two instances on a Redis of the test's own, which it may stop, start and flush; stopped after. */
  async function onOwnRedis(run: (a: TestServer, b: TestServer, redis: OwnRedis) => Promise<void>): Promise<void> {
    const redis = new OwnRedis();
    await redis.start();
    try {
      const env = { REDIS_URL: redis.url };
      const a = await createTestServer(env);
      const b = await createTestServer(env, { clean: false });
      await run(a, b, redis);
    } finally {
      await redis.stop();
    }
  }

  it('should keep queries and mutations working while Redis is down and resume subscriptions after', async () => {
    await onOwnRedis(async (a, b, redis) => {
      const [alice, bob] = [await signup(a.url), await signup(a.url)];
      const lobby = await lobbyOf(a.url, alice.token);
      const live = await listen(b, bob, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g: lobby });
      // A subscriber on the sending instance: its events never need Redis.
      const local = await listen(a, bob, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g: lobby });
      await sendMessage(a.url, alice.token, { groupId: lobby, content: 'before' });
      await live.sub.nth(1);
      await local.sub.nth(1);
      const cursor = (await request(b.url, HistoryDocument, { conversation: { groupId: lobby }, last: 1 }, bob.token)).history.pageInfo.endCursor;

      await redis.stop();
      const base = a.url.replace('/graphql', '');
      await eventually(async () => (await fetch(`${base}/readyz`)).status === 503, 5000);
      for (const t of ['during 1', 'during 2', 'during 3']) {
        const started = Date.now();
        await sendMessage(a.url, alice.token, { groupId: lobby, content: t });
        expect(Date.now() - started).toBeLessThan(2000);
      }
      expect((await request(a.url, HistoryDocument, { conversation: { groupId: lobby }, last: 3 }, alice.token)).history.edges.map((e: any) => e.node.content)).toEqual([
        'during 1',
        'during 2',
        'during 3',
      ]);
      expect(a.services.pubsub.publishFailures).toBeGreaterThanOrEqual(3);
      // Delivered live on the instance that sent them, once each, Redis or not.
      await local.sub.nth(4);
      expect(local.sub.values.map((v) => v.messageAdded.content)).toEqual(['before', 'during 1', 'during 2', 'during 3']);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);

      await redis.start();
      await eventually(async () => (await fetch(`${base}/readyz`)).status === 200, 10_000);
      // Subscriptions resume by themselves: a message sent now arrives live.
      // Polled: a message each 300 ms until one arrives.
      let n = 0;
      await eventually(async () => {
        if (live.sub.values.some((v) => v.messageAdded.content.startsWith('after'))) return true;
        await sendMessage(a.url, alice.token, { groupId: lobby, content: `after ${n++}` });
        return false;
      }, 10_000, 300);
      // And catching up from the last cursor finds everything sent meanwhile.
      const caught = (await request(b.url, HistoryDocument, { conversation: { groupId: lobby }, first: 100, after: cursor }, bob.token)).history.edges.map((e: any) => e.node.content);
      expect(caught.slice(0, 3)).toEqual(['during 1', 'during 2', 'during 3']);
      expect(caught.length).toBe(3 + n);
      // Logins keep working too (rate limits fall back to memory).
      expect(codeOf(await attempt(a.url, LoginDocument, { username: alice.username, password: alice.password }))).toBeUndefined();
    });
  }, 60_000);

  it('should stop delivering here, within seconds, to a member removed or a blocker blocking elsewhere while Redis is down', async () => {
    await onOwnRedis(async (a, b, redis) => {
      const [alice, bob, erin, frank] = [await signup(a.url), await signup(a.url), await signup(a.url), await signup(a.url)];
      const g = await groupWith(a.url, alice, 'Outage', [bob, erin, frank]);
      const bobs = await listen(b, bob, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g });
      const erins = await listen(b, erin, 'subscription { messageAdded { content } }');
      await redis.stop();
      // Made on A, told over Redis: B can't hear them.
      await ok(gql(a.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g, u: bob.id }, alice.token));
      await ok(gql(a.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: frank.id }, erin.token));
      // B reads them again meanwhile (before, not until Redis was back): what is sent through B
      // stops reaching bob, and frank's messages erin.
      let n = 0;
      await eventually(async () => {
        const content = `probe ${n++}`;
        await sendMessage(b.url, alice.token, { groupId: g, content });
        await eventually(() => erins.sub.values.some((v) => v.messageAdded.content === content), 5000);
        return !bobs.sub.values.some((v) => v.messageAdded.content === content);
      }, 15_000, 500);
      await sendMessage(b.url, frank.token, { groupId: g, content: 'from frank' });
      await sendMessage(b.url, alice.token, { groupId: g, content: 'sentinel' });
      await eventually(() => erins.sub.values.some((v) => v.messageAdded.content === 'sentinel'), 5000);
      expect(erins.sub.values.map((v) => v.messageAdded.content)).not.toContain('from frank');
    });
  }, 60_000);

  it('should keep a user active over HTTP only ONLINE when Redis is found emptied, or comes back empty', async () => {
    await onOwnRedis(async (a, b, redis) => {
      // Frank signed up through B and has no socket: his activity is all B knows of him.
      const [frank, eve] = [await signup(b.url), await signup(a.url)];
      const status = async (id: string) => (await ok(gql(a.url, STATUS, { id }, eve.token))).userStatus.status;
      expect(await status(frank.id)).toBe('ONLINE');
      await redis.flushall();
      // The first read finds the store emptied, and reads again once B told it Frank's activity again.
      expect(await status(frank.id)).toBe('ONLINE');
      // Emptied again a few seconds later, with someone new since: both told again.
      const gina = await signup(b.url);
      await sleep(3500);
      await redis.flushall();
      await status(frank.id);
      await eventually(async () => (await status(frank.id)) === 'ONLINE' && (await status(gina.id)) === 'ONLINE', 2500, 100);
      // And again a second later: another loss (another generation), told too.
      await sleep(1000);
      await redis.flushall();
      await status(frank.id);
      await eventually(async () => (await status(frank.id)) === 'ONLINE' && (await status(gina.id)) === 'ONLINE', 2500, 100);

      await redis.stop();
      await eventually(async () => (await fetch(a.url.replace('/graphql', '/readyz'))).status === 503, 5000);
      await redis.start();
      await eventually(async () => (await fetch(b.url.replace('/graphql', '/readyz'))).status === 200, 10_000);
      await eventually(async () => (await status(frank.id)) === 'ONLINE', 5000, 100);
    });
  }, 60_000);

  it('should announce OFFLINE once Redis is back empty for users whose last socket closed while it was away', async () => {
    await onOwnRedis(async (a, b, redis) => {
      // Xavier closes long before Redis is back (his grace ends while it is away), Yann just before
      // (his grace ends after); both were ONLINE to the watcher, who stays connected throughout.
      // Yann signed up through B, which tells the emptied store again of that activity.
      const [xavier, yann] = [await buildConnectedUser(a.url, [a]), await buildConnectedUser(b.url, [a])];
      const watcher = await signup(b.url);
      const ids = [xavier.user.id, yann.user.id];
      const events = await listen(b, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', { ids });
      const status = async (id: string) => (await ok(gql(b.url, STATUS, { id }, watcher.token))).userStatus.status;
      await eventually(async () => (await status(xavier.user.id)) === 'ONLINE' && (await status(yann.user.id)) === 'ONLINE');
      await redis.stop();
      await eventually(async () => (await fetch(a.url.replace('/graphql', '/readyz'))).status === 503, 5000);
      await xavier.close();
      await sleep(6000);
      await yann.close();
      await redis.start();
      // Each one's last word to the watcher is OFFLINE, and the store agrees.
      const heard = (id: string) => events.sub.values.filter((v) => v.presenceChanged.user.id === id).map((v) => v.presenceChanged.status);
      const last = (id: string) => heard(id).at(-1);
      await eventually(() => ids.every((id) => last(id) === 'OFFLINE'), 20_000, 200);
      expect([await status(xavier.user.id), await status(yann.user.id)]).toEqual(['OFFLINE', 'OFFLINE']);
      // Told to the emptied store as active at their close, they came back into it unannounced, and
      // B's ONLINE of Yann's signup waited for the store to be mended, older then than his OFFLINE:
      // the watcher heard OFFLINE only, not ONLINE first.
      expect(ids.map(heard)).toEqual(ids.map(() => ['OFFLINE']));
    });
  }, 60_000);

  it("should announce OFFLINE, and keep, a user who logged out on another instance than their socket's while Redis was away and came back empty", async () => {
    await onOwnRedis(async (a, b, redis) => {
      // Sockets on A, logouts through B: B can't settle them, A hears of them only once Redis is back.
      // Hal is active over HTTP only, through B: his logout is all there is to settle.
      const users = [await buildConnectedUser(a.url, [a]), await buildConnectedUser(a.url, [a]), await buildConnectedUser(a.url, [a])];
      const hal = await signup(b.url);
      const ids = [...users.map((u) => u.user.id), hal.id];
      const watcher = await signup(b.url);
      const events = await listen(b, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', { ids });
      const status = async (id: string) => (await ok(gql(b.url, STATUS, { id }, watcher.token))).userStatus.status;
      await eventually(async () => (await Promise.all(ids.map(status))).every((s) => s === 'ONLINE'));
      await redis.stop();
      await eventually(async () => (await fetch(b.url.replace('/graphql', '/readyz'))).status === 503, 5000);
      for (const token of [...users.map((u) => u.user.token), hal.token]) expect((await ok(gql(b.url, 'mutation { logout }', {}, token))).logout).toBe(true);
      await sleep(1000);
      await redis.start();
      const last = (id: string) => events.sub.values.filter((v) => v.presenceChanged.user.id === id).at(-1)?.presenceChanged.status;
      await eventually(() => ids.every((id) => last(id) === 'OFFLINE'), 20_000, 200);
      // And stays so: nothing told again to the emptied store brings them back.
      await sleep(8000);
      expect(ids.map(last)).toEqual(ids.map(() => 'OFFLINE'));
      // OFFLINE is all the watcher heard of them: Hal, known to B alone, came back into the emptied
      // store unannounced; A, which held the others' sockets and had not heard of their logouts yet,
      // announced them ONLINE only after the store was mended, older then than their OFFLINE.
      expect(ids.map((id) => events.sub.values.filter((v) => v.presenceChanged.user.id === id).map((v) => v.presenceChanged.status))).toEqual(ids.map(() => ['OFFLINE']));
      expect(await Promise.all(ids.map(status))).toEqual(ids.map(() => 'OFFLINE'));
      await Promise.all(users.map((u) => u.close()));
    });
  }, 60_000);

  /**
   * U with a socket on A and hal active over HTTP only, both ONLINE to a watcher on B: their status
   * read through B, and the last presence event the watcher heard of each.
   */
  async function leavers(a: TestServer, b: TestServer) {
    const [u, hal] = [await signup(a.url), await signup(a.url)];
    const socket = wsClient(a.wsUrl, u.token);
    await socket.connected;
    const watcher = await signup(b.url);
    const events = await listen(b, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', { ids: [u.id, hal.id] });
    const status = async (id: string) => (await ok(gql(b.url, STATUS, { id }, watcher.token))).userStatus.status;
    await eventually(async () => (await status(u.id)) === 'ONLINE' && (await status(hal.id)) === 'ONLINE');
    const heard = (id: string) => events.sub.values.filter((v) => v.presenceChanged.user.id === id).map((v) => v.presenceChanged.status);
    const last = (id: string) => heard(id).at(-1);
    return { u, hal, socket, status, last, heard };
  }

  it('should announce OFFLINE for users who logged out while Redis had lost its data unnoticed, once the loss is found', async () => {
    await onOwnRedis(async (a, b, redis) => {
      const { u, hal, socket, status, last, heard } = await leavers(a, b);
      // Emptied (an eviction, a FLUSHALL), and no read or activity has missed the mirror yet (each
      // logout's own activity is within the throttle): the logouts and the socket's close find no
      // record of their users, and the watcher last heard ONLINE.
      await redis.flushall();
      await ok(gql(a.url, 'mutation { logout }', {}, hal.token));
      await ok(gql(a.url, 'mutation { logout }', {}, u.token));
      expect((await socket.closed).code).toBe(4403);
      await sleep(300);
      // Found by a read: the close and the logouts are told to the store again and settled after it.
      await status(u.id);
      await eventually(() => last(u.id) === 'OFFLINE' && last(hal.id) === 'OFFLINE', 10_000, 200);
      expect([await status(u.id), await status(hal.id)]).toEqual(['OFFLINE', 'OFFLINE']);
      expect([heard(u.id), heard(hal.id)]).toEqual([['OFFLINE'], ['OFFLINE']]);
    });
  }, 60_000);

  it('should announce OFFLINE for users whose logout or close was being settled as the loss of Redis data was found', async () => {
    await onOwnRedis(async (a, b, redis) => {
      const { u, hal, socket, status, last, heard } = await leavers(a, b);
      // A's settles reach the store late (a slow Redis): the loss is found, and told, while they are on their way.
      type Store = { endSession: (...a: unknown[]) => Promise<unknown>; socketsGone: (...a: unknown[]) => Promise<unknown> };
      const store = (a.services.presence as unknown as { store: Store }).store;
      const slow = (name: keyof Store) => {
        const real = store[name].bind(store);
        return jest.spyOn(store, name).mockImplementation(async (...args) => (await sleep(600), real(...args)));
      };
      const spies = [slow('endSession'), slow('socketsGone')];
      try {
        await redis.flushall();
        const logouts = Promise.all([hal, u].map((x) => gql(a.url, 'mutation { logout }', {}, x.token)));
        expect((await socket.closed).code).toBe(4403);
        await sleep(200);
        // Found by a read while A's settles wait: A tells the store what it holds, which is not them.
        await status(u.id);
        for (const r of await logouts) expect(r.data?.logout).toBe(true);
        await eventually(() => last(u.id) === 'OFFLINE' && last(hal.id) === 'OFFLINE', 10_000, 200);
        expect([await status(u.id), await status(hal.id)]).toEqual(['OFFLINE', 'OFFLINE']);
        expect([heard(u.id), heard(hal.id)]).toEqual([['OFFLINE'], ['OFFLINE']]);
      } finally {
        spies.forEach((s) => s.mockRestore());
      }
    });
  }, 60_000);

  it('should announce OFFLINE once a stalled Redis answers again for a user whose last socket closed meanwhile', async () => {
    await onOwnRedis(async (a, b, redis) => {
      const xavier = await buildConnectedUser(a.url, [a]);
      const watcher = await signup(b.url);
      const events = await listen(b, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }', { ids: [xavier.user.id] });
      const status = async (id: string) => (await ok(gql(b.url, STATUS, { id }, watcher.token))).userStatus.status;
      await eventually(async () => (await status(xavier.user.id)) === 'ONLINE');
      // Stalled, not gone: no reconnection tells the instances it is back.
      redis.pause();
      try {
        await xavier.close();
        await sleep(8000);
      } finally {
        redis.resume();
      }
      await eventually(() => events.sub.values.at(-1)?.presenceChanged.status === 'OFFLINE', 15_000, 200);
      expect(await status(xavier.user.id)).toBe('OFFLINE');
      // Both stop promptly with the store back (a stall left nothing hanging).
      const started = Date.now();
      await Promise.all([a.dispose(), b.dispose()]);
      expect(Date.now() - started).toBeLessThan(10_000);
    });
  }, 60_000);

  /** A presence store on a Redis of its own, its HIDDEN mirror seeded (empty), with its connection. */
  async function onOwnStore(fn: (store: RedisPresenceStore, r: Redis) => Promise<void>): Promise<void> {
    const redis = new OwnRedis();
    await redis.start();
    const r = new Redis(redis.url);
    try {
      const store = new RedisPresenceStore(r, undefined, async () => []);
      await store.seedHidden([]);
      await fn(store, r);
    } finally {
      r.disconnect();
      await redis.stop();
    }
  }

  /** How instance i1 ends a session at `now` (no socket of the user's there, a minute's timeout and TTL). */
  const endingAt = (now: number) => ({ instanceId: 'i1', liveHere: false, cutoff: now - 60_000, now, sessionTtlMs: 60_000 });

  it("should tell a user taken OFFLINE since from one the store has no record of, for as long as the timeout, and that apart from a loss", async () => {
    await onOwnStore(async (store, r) => {
      const [u, never] = [randomUUID(), randomUUID()];
      const now = Date.now();
      // Each step logs a session of its own out: an ended session's activity is not taken again (see the next test).
      const ending = endingAt(now);
      await store.touch([{ userId: u, sessionId: 's1', now }], 60_000);
      expect(typeof (await store.endSession(u, 's1', ending))).toBe('number');
      // Settled OFFLINE already: a close or logout settled after it has nothing to settle.
      expect(await store.socketsGone(u, { instanceId: 'i1', closedAt: now, now })).toBe(false);
      expect(await store.endSession(u, 's2', ending)).toBe(false);
      expect(await store.endSession(never, 's1', ending)).toBe('absent');
      // Active again, then emptied: no record, and no knowledge of why.
      await store.touch([{ userId: u, sessionId: 's3', now }], 60_000);
      expect(typeof (await store.endSession(u, 's3', ending))).toBe('number');
      await store.touch([{ userId: u, sessionId: 's4', now }], 60_000);
      await r.flushall();
      await store.seedHidden([]);
      expect(await store.endSession(u, 's4', ending)).toBe('absent');
      // A sweep drops what is older than the timeout: here, taken OFFLINE 2 s before a sweep with a timeout of 1 s.
      await store.touch([{ userId: u, sessionId: 's5', now }], 60_000);
      expect(typeof (await store.endSession(u, 's5', ending))).toBe('number');
      await store.expire(Date.now() - 5000, Date.now());
      expect(await store.endSession(u, 's6', ending)).toBe(false);
      await sleep(2000);
      await store.expire(Date.now() - 1000, Date.now());
      expect(await store.endSession(u, 's7', ending)).toBe('absent');
    });
  });

  it("should not take an ended session's activity written after its end: no ONLINE again for a user logged out, nor for one deleted", async () => {
    await onOwnStore(async (store, r) => {
      const [u, v] = [randomUUID(), randomUUID()];
      const now = Date.now();
      const ending = endingAt(now);
      await store.touch([{ userId: u, sessionId: 'a', now }], 60_000);
      expect(typeof (await store.endSession(u, 'a', ending))).toBe('number');
      // A request of session a, answered on another instance just before the logout, written after it.
      expect(await store.touch([{ userId: u, sessionId: 'a', now: now + 1 }], 60_000)).toEqual([]);
      expect((await store.read([u])).active).toEqual([null]);
      // Another session of the user's still counts, and the ended one keeps nobody ONLINE.
      expect((await store.touch([{ userId: u, sessionId: 'b', now: now + 2 }], 60_000)).map((c) => c.userId)).toEqual([u]);
      expect(typeof (await store.endSession(u, 'b', ending))).toBe('number');
      // An account deleted: every session it had is ended.
      await store.touch([{ userId: v, sessionId: 'c', now }, { userId: v, sessionId: 'd', now }], 60_000);
      expect(typeof (await store.remove(v, 60_000))).toBe('number');
      expect(await store.touch([{ userId: v, sessionId: 'c', now: now + 1 }, { userId: v, sessionId: 'd', now: now + 1 }], 60_000)).toEqual([]);
      expect((await store.read([v])).active).toEqual([null]);
      // Marks last as long as the sessions' activity would (here 60 s), no longer.
      expect(await r.pttl(`{presence}:sessions:${u}`)).toBeGreaterThan(50_000);
    });
  });

  it("should tell a read, and the listeners, of a loss another instance found and seeded again a moment ago", async () => {
    await onOwnStore(async (one, r) => {
      const two = new RedisPresenceStore(r, undefined, async () => []);
      await two.seedHidden([]);
      const u = randomUUID();
      await one.touch([{ userId: u, sessionId: null, now: Date.now() }], 60_000);
      const heard: (string | null)[] = [];
      one.onDataLost((generation) => heard.push(generation));
      expect((await one.read([u])).lost).toBe(false);
      await r.flushall();
      // The other finds the loss first, by its activity, and seeds the store again.
      await two.touch([{ userId: randomUUID(), sessionId: null, now: Date.now() }], 0);
      const read = await one.read([u]);
      expect([read.active, read.lost]).toEqual([[null], true]);
      expect(heard).toEqual([await r.get('{presence}:hidden:seeded')]);
      // Once: the next read knows that generation.
      expect((await one.read([u])).lost).toBe(false);
      expect(heard).toHaveLength(1);
    });
  });

  it('should number transitions after a loss above those given before it, the loss within the same second as the counter began', async () => {
    await onOwnStore(async (store, r) => {
      const second = async () => Number((await r.time())[0]);
      // Just after a second begins, by Redis's clock: the counter starts then, and is lost within
      // that second (tried again should a slow machine cross into the next one).
      for (let attempt = 1; ; attempt++) {
        await r.flushall();
        await store.seedHidden([]);
        const micro = Number((await r.time())[1]);
        await sleep(1000 - micro / 1000 + 20);
        const began = await second();
        const before = await store.touch([0, 1, 2].map(() => ({ userId: randomUUID(), sessionId: null, now: Date.now() })), 0);
        await sleep(5);
        await r.flushall();
        await store.seedHidden([]);
        const [after] = await store.touch([{ userId: randomUUID(), sessionId: null, now: Date.now() }], 0);
        if ((await second()) !== began && attempt < 5) continue;
        // Below, its users' transitions were dropped as older than those delivered, for up to a minute.
        expect(after.v).toBeGreaterThan(Math.max(...before.map((c) => c.v)));
        return;
      }
    });
  });

  it('should tell an instance cut off while another found Redis emptied and seeded it again that the store lost its data', async () => {
    const redis = new OwnRedis();
    await redis.start();
    const [r1, r2] = [new Redis(redis.url), new Redis(redis.url)];
    try {
      const [one, two] = [new RedisPresenceStore(r1, undefined, async () => []), new RedisPresenceStore(r2, undefined, async () => [])];
      await one.seedHidden([]);
      await two.seedHidden([]);
      expect([await one.emptied(), await two.emptied()]).toEqual([false, false]);
      await r2.flushall();
      // The other instance finds the loss first (by its activity) and writes the mirror again; this
      // one, back later, must still learn of it (its PresenceStoreLost went out while it was cut off).
      await two.touch([{ userId: randomUUID(), sessionId: null, now: Date.now() }], 0);
      expect(await one.emptied()).toBe(true);
      // Once: the loss is mended, and the same generation read again is no loss.
      expect([await one.emptied(), await two.emptied()]).toEqual([false, false]);
    } finally {
      r1.disconnect();
      r2.disconnect();
      await redis.stop();
    }
  });

  it('should bring users with live sockets back ONLINE on every instance as soon as Redis is found emptied, and read one with a socket here ONLINE while Redis is away', async () => {
    await onOwnRedis(async (a, b, redis) => {
      const carol = await buildConnectedUser(a.url, [a]);
      const dave = await buildConnectedUser(a.url, [b]);
      const eve = await signup(a.url);
      const status = async (id: string) => (await ok(gql(a.url, STATUS, { id }, eve.token))).userStatus.status;
      await eventually(async () => (await status(carol.user.id)) === 'ONLINE' && (await status(dave.user.id)) === 'ONLINE');

      // Emptied while connected: no reconnect to tell. The first read finds it out, for both instances
      // (each tells its sockets again every 10 s by itself at the default PRESENCE_TIMEOUT).
      await redis.flushall();
      expect([await status(carol.user.id), await status(dave.user.id)]).toEqual(['ONLINE', 'ONLINE']);
      // Again, read through both instances at once: the reads that do not find the loss themselves,
      // made just after one did, wait for the instances to tell the store theirs too.
      await sleep(3500);
      await redis.flushall();
      const through = (s: TestServer, id: string) => ok(gql(s.url, STATUS, { id }, eve.token)).then((d) => d.userStatus.status);
      const reads = await Promise.all([a, b, a, b].map((s, i) => through(s, i < 2 ? carol.user.id : dave.user.id)));
      expect(reads).toEqual(['ONLINE', 'ONLINE', 'ONLINE', 'ONLINE']);

      await redis.stop();
      await eventually(async () => (await fetch(a.url.replace('/graphql', '/readyz'))).status === 503, 5000);
      // This instance holds carol's socket: she is ONLINE whatever the store. Dave's is elsewhere: unknown here.
      expect([await status(carol.user.id), await status(dave.user.id)]).toEqual(['ONLINE', 'OFFLINE']);
      await carol.close();
      await dave.close();
    });
  }, 60_000);
});
