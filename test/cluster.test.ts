import { Cluster } from 'ioredis';
import { eventually, listen, sleep } from './helpers/graphql';
import { createTestServer, redisName } from './helpers/server';
import { onReconnect } from '../src/shared/redis';
import { lobbyOf, signup, sendMessage, buildGroup } from './helpers/factories';
import { OwnRedisCluster } from './helpers/redis-cluster';
import { typingBegunBeforeTheChannel } from './helpers/typing';
import { describeNeeding, tools } from './helpers/tools';


// Needs redis-server and redis-cli (as CI has); fails rather than skips without them.
describeNeeding('redis-server and redis-cli', tools.redisCluster)('Redis Cluster', () => {
  const cluster = new OwnRedisCluster();
  beforeAll(() => cluster.start(), 30_000);
  // A test that moved a slot leaves nodes that have not yet heard where it went.
  beforeEach(() => cluster.settled(), 15_000);
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

  it('should subscribe a conversation again on the shard its slot moved to (a reshard), read back what was published meanwhile, and answer /readyz 503 while the cluster is down', async () => {
    const env = { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    const [alice, bob] = [await signup(b.url), await signup(b.url)];
    const group = (await buildGroup(b.url, bob, { name: 'Moving', members: [alice] })).id;
    const sub = await listen<any>(a, alice, 'subscription($g: ID) { messageAdded(conversation: { groupId: $g }) { content } }', { g: group });
    const channel = redisName(`parley.conv:g:${group}`);
    const probe = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
    try {
      await new Promise((r) => probe.once('ready', r));
      const masters = probe.nodes('master');
      const ids = await Promise.all(masters.map(async (n) => String(await n.call('CLUSTER', 'MYID'))));
      const slot = Number(await masters[0].call('CLUSTER', 'KEYSLOT', channel));
      const subscribers = () => Promise.all(masters.map(async (n) => ((await n.call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number])[1]));
      // Which master holds A's subscription (1 + its index, as `eventually` waits for a truthy answer).
      const from = (await eventually(async () => (await subscribers()).indexOf(1) + 1, 10_000)) - 1;
      await sendMessage(b.url, bob.token, { groupId: group, content: 'before' });
      expect(await sub.nth(1)).toEqual({ messageAdded: { content: 'before' } });

      // The slot moves to another master as redis-cli --cluster reshard moves it, with the keys the
      // instances keep there (any of theirs may hash to it: a session's, a typist's).
      const to = (from + 1) % masters.length;
      const kept = `{${channel}}:kept`;
      await probe.set(kept, 'moved along');
      await masters[to].call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', ids[from]);
      await masters[from].call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', ids[to]);
      for (let keys: string[]; (keys = (await masters[from].call('CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[]).length; ) {
        await masters[from].call('MIGRATE', '127.0.0.1', masters[to].options.port!, '', 0, 5000, 'KEYS', ...keys);
      }
      for (const n of masters) await n.call('CLUSTER', 'SETSLOT', slot, 'NODE', ids[to]);
      expect(await probe.get(kept)).toBe('moved along');
      await probe.del(kept);
      // Redis dropped A's subscription with the slot; sent now, it reaches no subscriber at once.
      await sendMessage(b.url, bob.token, { groupId: group, content: 'moved, unheard' });
      // A takes the channel again on its new shard, and the message it missed comes, read back.
      await eventually(async () => {
        const counts = await subscribers();
        expect(counts[to]).toBe(1);
        return true;
      }, 15_000);
      expect(await sub.nth(2)).toEqual({ messageAdded: { content: 'moved, unheard' } });
      await sendMessage(b.url, bob.token, { groupId: group, content: 'after' });
      expect(await sub.nth(3)).toEqual({ messageAdded: { content: 'after' } });
      expect(sub.values.map((v) => v.messageAdded.content)).toEqual(['before', 'moved, unheard', 'after']);

      // A slot with no master: the cluster is down (CLUSTERDOWN), though every node still answers PING.
      const readyz = async () => (await fetch(new URL('/readyz', a.url))).status;
      expect(await readyz()).toBe(200);
      for (const n of masters) await n.call('CLUSTER', 'DELSLOTS', slot).catch(() => undefined);
      await eventually(async () => (await readyz()) === 503, 10_000);
      await masters[to].call('CLUSTER', 'ADDSLOTS', slot);
      await eventually(async () => (await readyz()) === 200, 15_000);
    } finally {
      probe.disconnect();
    }
  }, 90_000);

  it("should end typing with a send through an instance that took the channel after it began, the conversation's mark on its own shard", async () => {
    // Alice's start sets the conversation's mark (another slot than her state's) before telling
    // anyone; B's first send there reads it from that slot's shard.
    const { waitedMs, flags } = await typingBegunBeforeTheChannel({ REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes });
    expect(waitedMs).toBeLessThan(1000);
    expect(flags).toEqual([true, false]);
  }, 30_000);

  it('should say in its start line that pub/sub rides on the cluster, over sharded channels', async () => {
    const s = await createTestServer({ REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes }, { spawn: true, captureLogs: true });
    const line = (await eventually(() => s.logs.find((l) => String(l.json.msg).startsWith('Parley listening'))))!;
    expect([line.json.pubsub, line.json.msg]).toEqual(['redis cluster, sharded channels', expect.stringContaining('pub/sub: redis cluster, sharded channels)')]);
  });

  it('should refuse to start with REDIS_URL naming one node of the cluster, and say to list its nodes instead', async () => {
    const url = `redis://127.0.0.1:${cluster.ports[0]}`;
    await expect(createTestServer({ REDIS_URL: url, REDIS_CLUSTER_NODES: '' })).rejects.toThrow(
      `Redis at ${url} is a node of a Redis Cluster: list its nodes in REDIS_CLUSTER_NODES (host:port,…) instead of REDIS_URL`,
    );
  });

  it('should count a shard back once its subscribers settle, not at each of the resets ioredis runs while it is down', async () => {
    const s = await createTestServer({ REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.nodes });
    const u = await signup(s.url);
    await buildGroup(s.url, u, { name: 'On every shard' });
    const back: number[] = [];
    const off = onReconnect(s.services.redis!.subscriber, (lostAt) => back.push(lostAt));
    try {
      const killedAt = Date.now();
      await cluster.kill(1);
      // Down: ioredis resets its sharded subscribers about a hundred times a second (each said ready).
      await sleep(3000);
      expect(back).toEqual([]);
      await cluster.restart(1);
      await eventually(() => back.length > 0, 15_000);
      await sleep(1500);
      // Once, counted from the loss: what was published since is read back.
      expect(back).toHaveLength(1);
      expect(back[0] - killedAt).toBeLessThan(1000);
    } finally {
      off();
    }
  }, 60_000);
});
