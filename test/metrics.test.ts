import { eventually, gql, ok, subscribe, wsClient } from './helpers/graphql';
import { signup } from './helpers/factories';
import { OwnRedis } from './helpers/redis-server';
import { createTestServer, type TestServer } from './helpers/server';
import { itNeeding, tools } from './helpers/tools';

/** One sample of the Prometheus text format: `name{labels} value`, or undefined when absent. */
async function scrape(s: TestServer): Promise<(name: string, labels?: string) => number | undefined> {
  const res = await fetch(new URL('/metrics', s.url));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const text = await res.text();
  return (name, labels) => {
    const key = labels ? `${name}{${labels}}` : name;
    const line = text.split('\n').find((l) => l.startsWith(`${key} `));
    return line === undefined ? undefined : Number(line.slice(key.length + 1));
  };
}

const LOBBY = '{ groups(first: 50) { edges { node { id isLobby } } } }';
const SEND = 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id } }';

describe('metrics', () => {
  it('should report sockets, subscriptions by type, messages, fan-out latency, online users and sweeps as they happen', async () => {
    const s = await createTestServer({ PRESENCE_SWEEP_CRON: '* * * * * *', PRESENCE_TIMEOUT: '1s' }, { jobs: true });
    const before = await scrape(s);
    expect(before('parley_open_sockets')).toBe(0);
    expect(before('parley_messages_sent_total')).toBe(0);
    expect(before('parley_fanout_latency_seconds_count')).toBe(0);
    expect(before('parley_presence_sweep_expired_total')).toBe(0);
    expect(before('parley_redis_errors_total')).toBe(0);
    expect(before('parley_database_errors_total')).toBe(0);
    // Default process metrics come along, from this server's own registry.
    expect(before('process_cpu_user_seconds_total')).toBeGreaterThan(0);

    const a = await signup(s.url);
    const b = await signup(s.url);
    const lobby = (await ok(gql(s.url, LOBBY, {}, a.token))).groups.edges.find((e: any) => e.node.isLobby).node.id;
    const w = wsClient(s.wsUrl, a.token);
    await w.connected;
    const messages = subscribe(w, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { id content } }', { g: lobby });
    subscribe(w, 'subscription { presenceChanged { status user { id } } }');
    await eventually(() => s.fanout.active.messageAdded === 1 && s.fanout.active.presenceChanged === 1);

    const during = await scrape(s);
    expect(during('parley_open_sockets')).toBe(1);
    expect(during('parley_subscriptions', 'type="messageAdded"')).toBe(1);
    expect(during('parley_subscriptions', 'type="presenceChanged"')).toBe(1);
    expect(during('parley_online_users')).toBe(2);

    await ok(gql(s.url, SEND, { g: lobby, c: 'one' }, b.token));
    await ok(gql(s.url, SEND, { g: lobby, c: 'two' }, b.token));
    await messages.nth(2);
    const after = await scrape(s);
    expect(after('parley_messages_sent_total')).toBe(2);
    expect(after('parley_fanout_latency_seconds_count')).toBeGreaterThanOrEqual(2);
    expect(after('parley_fanout_latency_seconds_sum')).toBeGreaterThan(0);

    // B has no socket and stays idle past PRESENCE_TIMEOUT: a sweep expires them.
    const swept = await eventually<((name: string, labels?: string) => number | undefined) | undefined>(
      async () => {
        const m = await scrape(s);
        return (m('parley_presence_sweep_expired_total') ?? 0) >= 1 ? m : undefined;
      },
      8000,
      200,
    );
    expect(swept!('parley_presence_sweep_duration_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(swept!('parley_online_users')).toBeLessThan(2);

    await w.dispose();
    await eventually(async () => (await scrape(s))('parley_open_sockets') === 0);
    const closed = await scrape(s);
    expect(closed('parley_subscriptions', 'type="messageAdded"') ?? 0).toBe(0);
    // Counters never go back.
    expect(closed('parley_messages_sent_total')).toBe(2);
  });

  itNeeding('redis-server', tools.redisServer)('should count Redis errors and refused publishes while Redis is away, and keep answering scrapes', async () => {
    const redis = new OwnRedis();
    await redis.start();
    let stopped = false;
    try {
      const s = await createTestServer({ REDIS_URL: redis.url });
      const a = await signup(s.url);
      const lobby = (await ok(gql(s.url, LOBBY, {}, a.token))).groups.edges.find((e: any) => e.node.isLobby).node.id;
      expect((await scrape(s))('parley_redis_errors_total')).toBe(0);
      await redis.stop();
      stopped = true;
      await eventually(async () => (await fetch(new URL('/readyz', s.url))).status === 503, 5000);
      // The message is committed; only its publish fails.
      await ok(gql(s.url, SEND, { g: lobby, c: 'while redis is down' }, a.token));
      const m = await eventually<((name: string, labels?: string) => number | undefined) | undefined>(
        async () => {
          const r = await scrape(s);
          return (r('parley_redis_errors_total') ?? 0) >= 1 && (r('parley_pubsub_publish_failures_total') ?? 0) >= 1 ? r : undefined;
        },
        8000,
        100,
      );
      expect(m!('parley_messages_sent_total')).toBe(1);
    } finally {
      // OwnRedis.stop() waits for an exit it already saw when called twice.
      if (!stopped) await redis.stop();
    }
  }, 30_000);
});
