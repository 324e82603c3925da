import { Cluster } from 'ioredis';
import { eventually, listen } from './helpers/graphql';
import { createTestServer, redisName } from './helpers/server';
import { lobbyOf, signup, sendMessage, buildGroup } from './helpers/factories';
import { OwnRedisCluster } from './helpers/redis-cluster';
import { describeNeeding, tools } from './helpers/tools';


// Needs redis-server and redis-cli (as CI has); fails rather than skips without them.
describeNeeding('redis-server and redis-cli', tools.redisCluster)('Redis Cluster', () => {
  const cluster = new OwnRedisCluster();
  beforeAll(() => cluster.start(), 30_000);
  afterAll(() => cluster.stop());

  it('should carry subscriptions between two instances over sharded pub/sub, each conversation on the shard owning its channel', async () => {
    // REDIS_URL emptied: the cluster seeds alone configure Redis.
    const env = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    expect(a.services.redis).toBeDefined();
    const [alice, bob] = [await signup(b.url), await signup(b.url)];
    const lobby = await lobbyOf(a.url, alice.token);
    const subs = [];
    for (const u of [alice, bob]) subs.push(await listen<any>(a, u, 'subscription { messageAdded { content } }'));
    const created = await listen<any>(a, alice, 'subscription { groupEvent { kind group { name } } }');
    await sendMessage(b.url, bob.token, { groupId: lobby, content: 'across shards' });
    await buildGroup(b.url, bob, { name: 'Sharded' });
    for (const s of subs) expect(await s.nth(1)).toEqual({ messageAdded: { content: 'across shards' } });
    expect(await created.nth(1)).toEqual({ groupEvent: { kind: 'CREATED', group: { name: 'Sharded' } } });
    // A second message as a barrier: once it arrives, a duplicate of the first would have.
    await sendMessage(b.url, bob.token, { groupId: lobby, content: 'then' });
    for (const s of subs) expect((await s.nth(2)) && s.values).toEqual([{ messageAdded: { content: 'across shards' } }, { messageAdded: { content: 'then' } }]);

    // Twelve more groups with a member on A: their channels hash to slots across the shards.
    const spread: string[] = [];
    for (let i = 0; i < 12; i++) spread.push((await buildGroup(b.url, alice, { name: `spread ${i}` })).id);
    const channels = [lobby, ...spread].map((g) => redisName(`parley.conv:g:${g}`));
    const probe = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      await new Promise((r) => probe.once('ready', r));
      // Sharded channels, not classic ones: each conversation's channel has one subscriber (A's) on the shard owning its slot.
      const count = (kind: 'SHARDNUMSUB' | 'NUMSUB', channel: string) =>
        Promise.all(probe.nodes('master').map(async (n) => ((await n.call('PUBSUB', kind, channel)) as [string, number])[1]));
      // A subscribes to each new group's channel once it learns of the membership.
      const perShard = await eventually(async () => {
        const counts = await Promise.all(channels.map((c) => count('SHARDNUMSUB', c)));
        for (const n of counts) expect(n.reduce((x, y) => x + y)).toBe(1);
        return counts;
      });
      expect(new Set(perShard.map((counts) => counts.indexOf(1))).size).toBeGreaterThan(1);
      for (const c of channels) expect(await count('NUMSUB', c)).toEqual([0, 0, 0]);
      expect(await count('SHARDNUMSUB', redisName('parley.message.added'))).toEqual([0, 0, 0]);
    } finally {
      probe.disconnect();
    }
  }, 60_000);
});
