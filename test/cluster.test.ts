import { Cluster } from 'ioredis';
import { gql, ok, sleep, subscribe, wsClient } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { lobbyOf, signup } from './helpers/factories';
import { OwnRedisCluster } from './helpers/redis-cluster';
import { describeNeeding, tools } from './helpers/tools';

const SEND = 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }';

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
    for (const u of [alice, bob]) {
      const w = wsClient(a.wsUrl, u.token);
      await w.connected;
      subs.push(subscribe<any>(w, 'subscription { messageAdded { content } }'));
    }
    const groups = wsClient(a.wsUrl, alice.token);
    await groups.connected;
    const created = subscribe<any>(groups, 'subscription { groupEvent { kind group { name } } }');
    await sleep(300);
    await ok(gql(b.url, SEND, { g: lobby, t: 'across shards' }, bob.token));
    await ok(gql(b.url, 'mutation { createGroup(name: "Sharded") { id } }', {}, bob.token));
    for (const s of subs) expect(await s.nth(1)).toEqual({ messageAdded: { content: 'across shards' } });
    expect(await created.nth(1)).toEqual({ groupEvent: { kind: 'CREATED', group: { name: 'Sharded' } } });
    await sleep(200);
    for (const s of subs) expect(s.values).toHaveLength(1);

    // Twelve more groups with a member on A: their channels hash to slots across the shards.
    const spread: string[] = [];
    for (let i = 0; i < 12; i++) spread.push((await ok(gql(b.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: `spread ${i}` }, alice.token))).createGroup.id);
    const channels = [lobby, ...spread].map((g) => `parley.conv:g:${g}`);
    await sleep(300);
    const probe = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      await new Promise((r) => probe.once('ready', r));
      // Sharded channels, not classic ones: each conversation's channel has one subscriber (A's) on the shard owning its slot.
      const count = (kind: 'SHARDNUMSUB' | 'NUMSUB', channel: string) =>
        Promise.all(probe.nodes('master').map(async (n) => ((await n.call('PUBSUB', kind, channel)) as [string, number])[1]));
      const perShard = await Promise.all(channels.map((c) => count('SHARDNUMSUB', c)));
      for (const counts of perShard) expect(counts.reduce((x, y) => x + y)).toBe(1);
      expect(new Set(perShard.map((counts) => counts.indexOf(1))).size).toBeGreaterThan(1);
      for (const c of channels) expect(await count('NUMSUB', c)).toEqual([0, 0, 0]);
      expect(await count('SHARDNUMSUB', 'parley.message.added')).toEqual([0, 0, 0]);
    } finally {
      probe.disconnect();
    }
  }, 60_000);
});
