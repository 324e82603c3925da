import { Redis } from 'ioredis';
import { codeOf, eventually, gql, ok, sleep, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { signup, type TestUser, lobbyOf } from './helpers/factories';
import { OwnRedis } from './helpers/redis-server';
import { describeNeeding, tools } from './helpers/tools';

const SEND = 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }';
const HISTORY = 'query($g: ID!, $first: Int, $after: String, $last: Int) { history(conversation: { groupId: $g }, first: $first, after: $after, last: $last) { pageInfo { endCursor hasNextPage } edges { node { content } } } }';
const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }';
const STATUS = 'query($id: ID!) { userStatus(userId: $id) { status } }';

async function listen(s: TestServer, u: TestUser, query: string, variables?: Record<string, unknown>) {
  const w = wsClient(s.wsUrl, u.token);
  await w.connected;
  const sub = subscribe<any>(w, query, variables);
  await sleep(150);
  return { w, sub };
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
    expect(codeOf(await gql(b.url, SEND, { g: lobby, t: 'revoked' }, bob.token))).toBe('UNAUTHENTICATED');
    const bobToken = (await ok(gql(b.url, LOGIN, { u: bob.username, p: bob.password }))).login.token;
    await ok(gql(b.url, SEND, { g: lobby, t: 'from B' }, bobToken));
    await ok(gql(b.url, 'mutation { createGroup(name: "Made on B") { id } }', {}, bobToken));
    const project = (await ok(gql(b.url, 'mutation { createProject(title: "Built on B") { id } }', {}, bobToken))).createProject.id;
    await ok(gql(b.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: project, u: alice.id }, bobToken));
    await messages.sub.nth(1);
    await groups.sub.nth(1);
    await presence.sub.nth(2);
    await actions.sub.nth(1);
    await sleep(300);
    expect(actions.sub.values).toEqual([{ projectAction: { kind: 'ADDED_TO_PROJECT', projectId: project, actor: { id: bob.id } } }]);
    expect(messages.sub.values).toEqual([{ messageAdded: { content: 'from B' } }]);
    expect(messages2.sub.values).toEqual([{ messageAdded: { content: 'from B' } }]);
    // An event caused on A reaches A's subscribers once: dispatched locally, its echo from Redis skipped.
    await ok(gql(a.url, SEND, { g: lobby, t: 'from A' }, bobToken));
    await messages.sub.nth(2);
    await sleep(300);
    expect(messages.sub.values.map((v) => v.messageAdded.content)).toEqual(['from B', 'from A']);
    expect(groups.sub.values).toEqual([{ groupEvent: { kind: 'CREATED', group: { name: 'Made on B' } } }]);
    expect(presence.sub.values.map((v) => v.presenceChanged.status)).toEqual(['OFFLINE', 'ONLINE']);
    // Messages travel per conversation: one Redis subscription to the lobby's channel on A, however
    // many local subscribers; B, with no socket, takes none; no instance takes the whole topic.
    const redis = new Redis(a.env.REDIS_URL!);
    try {
      const numsub = async (channel: string) => ((await redis.pubsub('NUMSUB', channel)) as [string, number])[1];
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
    const onA = wsClient(a.wsUrl, u.token);
    const onB = wsClient(b.wsUrl, u.token);
    await Promise.all([onA.connected, onB.connected]);
    const events = await listen(b, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status } }', { ids: [u.id] });
    await a.dispose();
    expect((await onA.closed).code).toBe(1001);
    // The client reconnects to the other instance.
    const again = wsClient(b.wsUrl, u.token);
    await again.connected;
    await sleep(800);
    expect((await ok(gql(b.url, STATUS, { id: u.id }, watcher.token))).userStatus.status).toBe('ONLINE');
    expect(events.sub.values).toEqual([]);
  });
});

describeNeeding('redis-server', tools.redisServer)('Redis outage', () => {
  it('should keep queries and mutations working while Redis is down and resume subscriptions after', async () => {
    const redis = new OwnRedis();
    await redis.start();
    try {
      const env = { REDIS_URL: redis.url };
      const a = await createTestServer(env);
      const b = await createTestServer(env, { clean: false });
      const [alice, bob] = [await signup(a.url), await signup(a.url)];
      const lobby = await lobbyOf(a.url, alice.token);
      const live = await listen(b, bob, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g: lobby });
      // A subscriber on the sending instance: its events never need Redis.
      const local = await listen(a, bob, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g: lobby });
      await ok(gql(a.url, SEND, { g: lobby, t: 'before' }, alice.token));
      await live.sub.nth(1);
      await local.sub.nth(1);
      const cursor = (await ok(gql(b.url, HISTORY, { g: lobby, last: 1 }, bob.token))).history.pageInfo.endCursor;

      await redis.stop();
      const base = a.url.replace('/graphql', '');
      await eventually(async () => (await fetch(`${base}/readyz`)).status === 503, 5000);
      for (const t of ['during 1', 'during 2', 'during 3']) {
        const started = Date.now();
        await ok(gql(a.url, SEND, { g: lobby, t }, alice.token));
        expect(Date.now() - started).toBeLessThan(2000);
      }
      expect((await ok(gql(a.url, HISTORY, { g: lobby, last: 3 }, alice.token))).history.edges.map((e: any) => e.node.content)).toEqual([
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
      let n = 0;
      await eventually(async () => {
        await ok(gql(a.url, SEND, { g: lobby, t: `after ${n++}` }, alice.token));
        await sleep(300);
        return live.sub.values.some((v) => v.messageAdded.content.startsWith('after'));
      }, 10_000, 0);
      // And catching up from the last cursor finds everything sent meanwhile.
      const caught = (await ok(gql(b.url, HISTORY, { g: lobby, first: 100, after: cursor }, bob.token))).history.edges.map((e: any) => e.node.content);
      expect(caught.slice(0, 3)).toEqual(['during 1', 'during 2', 'during 3']);
      expect(caught.length).toBe(3 + n);
      // Logins keep working too (rate limits fall back to memory).
      expect(codeOf(await gql(a.url, LOGIN, { u: alice.username, p: alice.password }))).toBeUndefined();
    } finally {
      await redis.stop();
    }
  }, 60_000);
});
