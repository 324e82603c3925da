import { Redis } from 'ioredis';
import { eventually, gql, listen, ok, sleep, wsClient } from './helpers/graphql';
import { Topic } from '../src/shared/pubsub/topics';
import { createTestServer, describeRedis, ownChannel, redisName } from './helpers/server';
import { lobbyOf, sendMessage, signup } from './helpers/factories';

const STATUS = 'query($id: ID!) { userStatus(userId: $id) { status } }';
const onlineUsers = async (url: string) => Number(/^parley_online_users (\d+)/m.exec(await (await fetch(new URL('/metrics', url))).text())?.[1]);

describeRedis('REDIS_KEY_PREFIX', () => {
  // Under this jest worker's own prefix (test/setup/workers.ts), so that two workers' deployments differ too.
  const [depA, depB] = [redisName('depA:'), redisName('depB:')];
  it('should keep two deployments on one Redis apart: presence, messages and typing of one never reach the other', async () => {
    // Deployment A has two instances (they must still see each other); B shares the Redis (and here the database too).
    const a1 = await createTestServer({ REDIS_KEY_PREFIX: depA, PRESENCE_GRACE: '0' });
    const a2 = await createTestServer({ REDIS_KEY_PREFIX: depA, PRESENCE_GRACE: '0' }, { clean: false });
    const b = await createTestServer({ REDIS_KEY_PREFIX: depB, PRESENCE_GRACE: '0' }, { clean: false });
    const [alice, bob, carol] = [await signup(a1.url), await signup(a1.url), await signup(a1.url)];
    const lobby = await lobbyOf(a1.url, alice.token);
    const onA2 = await listen<any>(a2, bob, 'subscription { messageAdded { content } }');
    const onB = await listen<any>(b, carol, 'subscription { messageAdded { content } }');
    const typingA2 = await listen<any>(a2, bob, 'subscription($c: ConversationInput!) { typing(conversation: $c) { typing user { id } } }', { c: { groupId: lobby } });
    const typingB = await listen<any>(b, carol, 'subscription($c: ConversationInput!) { typing(conversation: $c) { typing user { id } } }', { c: { groupId: lobby } });

    // Alice comes online on A: A's instances see her, B does not (its own presence store is empty of her).
    const socket = wsClient(a1.wsUrl, alice.token);
    await socket.connected;
    expect((await ok(gql(a2.url, STATUS, { id: alice.id }, bob.token))).userStatus.status).toBe('ONLINE');
    expect((await ok(gql(b.url, STATUS, { id: alice.id }, carol.token))).userStatus.status).toBe('OFFLINE');
    expect(await onlineUsers(a2.url)).toBeGreaterThanOrEqual(1);
    const onlineOnB = await onlineUsers(b.url);

    const heardOnB = b.services.pubsub.received[Topic.MessageAdded] ?? 0;
    await ok(gql(a1.url, 'mutation($c: ConversationInput!) { setTyping(conversation: $c, typing: true) }', { c: { groupId: lobby } }, alice.token));
    await sendMessage(a1.url, alice.token, { groupId: lobby, content: 'only for A' });
    await onA2.nth(1);
    await typingA2.nth(1);
    // B heard nothing of it through Redis: its own barrier's echo is all that came.
    await sendMessage(b.url, carol.token, { groupId: lobby, content: 'B barrier' });
    await eventually(() => onB.values.some((v) => v.messageAdded.content === 'B barrier'));
    await sleep(200);
    expect((b.services.pubsub.received[Topic.MessageAdded] ?? 0) - heardOnB).toBe(1);
    // The database is shared here (not the point of the test): B's line, opening, may read A's message
    // from it as one sent before its first (see InOrder.openFrom); never through Redis.
    const onBContents = onB.values.map((v) => v.messageAdded.content);
    expect(onBContents).toEqual(b.services.pubsub.order.filled ? ['only for A', 'B barrier'] : ['B barrier']);
    expect(typingB.values).toEqual([]);
    expect(onA2.values.map((v) => v.messageAdded.content)).toEqual(['only for A']);
    expect(await onlineUsers(b.url)).toBe(onlineOnB);

    // Everything Parley put in Redis carries its deployment's prefix: keys and channels alike.
    const redis = new Redis(a1.env.REDIS_URL!);
    try {
      const keys = await redis.keys('*');
      const channels = ((await redis.pubsub('CHANNELS', '*')) as string[]).filter(ownChannel);
      expect(keys.filter((k) => k.startsWith(depA)).length).toBeGreaterThan(0);
      expect(keys.filter((k) => k.startsWith(depB)).length).toBeGreaterThan(0);
      expect(keys.filter((k) => !k.startsWith(depA) && !k.startsWith(depB))).toEqual([]);
      expect(channels.filter((c) => c.startsWith(depA)).length).toBeGreaterThan(0);
      expect(channels.filter((c) => c.startsWith(depB)).length).toBeGreaterThan(0);
      expect(channels.filter((c) => !c.startsWith(depA) && !c.startsWith(depB))).toEqual([]);
    } finally {
      redis.disconnect();
    }

    // Going offline on A is announced on A only; the sweep's script names its own keys under the prefix too.
    await socket.dispose();
    await ok(gql(a1.url, 'mutation { logout }', {}, alice.token));
    const gone = await ok(gql(a2.url, STATUS, { id: alice.id }, bob.token));
    expect(gone.userStatus.status).toBe('OFFLINE');
  });

  it('should refuse a prefix that a channel name could begin with', async () => {
    await expect(createTestServer({ REDIS_KEY_PREFIX: 'parley' })).rejects.toThrow(/REDIS_KEY_PREFIX/);
  });
});
