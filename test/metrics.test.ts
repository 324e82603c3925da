import { eventually, gql, ok, subscribe, wsClient } from './helpers/graphql';
import { signup } from './helpers/factories';
import { OwnRedis } from './helpers/redis-server';
import { createTestServer, type TestServer } from './helpers/server';
import { itNeeding, tools } from './helpers/tools';
import { MAX_OPERATION_NAMES } from '../src/shared/metrics';

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

async function post(url: string, body: object, token?: string): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
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

  it('should count every operation over HTTP and WebSocket by operation, type and code, with its duration', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    await post(s.url, { query: 'query Lobby { groups(first: 5) { totalCount } }', operationName: 'Lobby' }, a.token);
    await post(s.url, { query: 'query Lobby { groups(first: 5) { totalCount } }', operationName: 'Lobby' }, a.token);
    // No name: the root field. An error: its code. A document that doesn't parse: no operation at all.
    await post(s.url, { query: '{ me { id } }' }, a.token);
    await post(s.url, { query: 'query Bad { groups(first: 500) { totalCount } }' }, a.token);
    await post(s.url, { query: '{ me { id ' });
    await post(s.url, { query: 'mutation { heartbeat { status } }' });

    const w = wsClient(s.wsUrl, a.token);
    await w.connected;
    await subscribe(w, 'query Me { me { id } }').nth(1);
    subscribe(w, 'subscription Live { messageAdded { id } }');
    await eventually(() => s.fanout.active.messageAdded === 1);
    const refused = subscribe(w, 'subscription { messageAdded(conversation: { groupId: "nope" }) { id } }');
    await refused.done;

    const m = await eventually<Awaited<ReturnType<typeof scrape>> | undefined>(async () => {
      const r = await scrape(s);
      return r('parley_graphql_operations_total', 'operation="messageAdded",type="subscription",code="NOT_FOUND"') === 1 ? r : undefined;
    });
    if (!m) throw new Error('unreachable');
    expect(m('parley_graphql_operations_total', 'operation="Lobby",type="query",code="OK"')).toBe(2);
    expect(m('parley_graphql_operations_total', 'operation="me",type="query",code="OK"')).toBe(1);
    expect(m('parley_graphql_operations_total', 'operation="Bad",type="query",code="BAD_USER_INPUT"')).toBe(1);
    expect(m('parley_graphql_operations_total', 'operation="other",type="unknown",code="BAD_USER_INPUT"')).toBe(1);
    expect(m('parley_graphql_operations_total', 'operation="heartbeat",type="mutation",code="UNAUTHENTICATED"')).toBe(1);
    expect(m('parley_graphql_operations_total', 'operation="Me",type="query",code="OK"')).toBe(1);
    expect(m('parley_graphql_operations_total', 'operation="Live",type="subscription",code="OK"')).toBe(1);
    expect(m('parley_graphql_operation_duration_seconds_count', 'operation="Lobby",type="query"')).toBe(2);
    expect(m('parley_graphql_operation_duration_seconds_sum', 'operation="Lobby",type="query"')).toBeGreaterThan(0);
    expect(m('parley_graphql_operation_duration_seconds_count', 'operation="Live",type="subscription"')).toBe(1);
  });

  it('should keep the operation labels bounded whatever names clients make up', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const w = wsClient(s.wsUrl, a.token);
    await w.connected;
    for (let i = 0; i < MAX_OPERATION_NAMES + 20; i++) await subscribe(w, `query Made${i} { me { id } }`).nth(1);
    // Names that are not GraphQL names, and names of operations that didn't validate, never become labels.
    await post(s.url, { query: 'query Nope { nope }', operationName: 'Nope' }, a.token);
    const text = await (await fetch(new URL('/metrics', s.url))).text();
    const labels = new Set([...text.matchAll(/^parley_graphql_operations_total\{operation="([^"]*)"/gm)].map((x) => x[1]));
    // The capped names (Signup and Made…), the root field 'me' and 'other' for the one that didn't validate.
    expect(labels.size).toBe(MAX_OPERATION_NAMES + 2);
    expect(labels.has('other')).toBe(true);
    expect(labels.has('Made0')).toBe(true);
    expect(labels.has(`Made${MAX_OPERATION_NAMES + 19}`)).toBe(false);
    expect(labels.has('Nope')).toBe(false);
    // Beyond the cap, operations are still counted, under their root field (Signup took one of the names).
    const m = await scrape(s);
    expect(m('parley_graphql_operations_total', 'operation="me",type="query",code="OK"')).toBe(21);
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
