import WebSocket from 'ws';
import { eventually, gql, ok, running, sleep, wsClient } from './helpers/graphql';
import { lobbyOf, signup, login } from './helpers/factories';
import { cutSlowReader } from './helpers/slow-reader';
import { initialized, raw } from './helpers/raw-socket';
import { createTestServer } from './helpers/server';
import { anonymousBodyLimit } from '../src/graphql/limits';

/** What an attacker with the API, or a client with an old token, can do to the WebSocket path. */
const GROUP_EVENTS = 'subscription { groupEvent { kind groupId } }';

type Params = Record<string, unknown>;
/** A graphql-ws client that retries, as an app's client does (with a short wait here). */
function retryingClient(url: string, connectionParams: Params | (() => Promise<Params>), on: { connected?: () => void; closed?: (e: any) => void } = {}) {
  return wsClient(url, undefined, undefined, { retryAttempts: 20, retryWait: async () => void (await sleep(100)), connectionParams, on }).client;
}

/** Resolves with the close, or null when the socket is still open after `ms`. */
const closedWithin = (r: { closed: Promise<{ code: number; reason: string }> }, ms: number) => Promise.race([r.closed, sleep(ms).then(() => null)]);

describe('sockets and token expiry', () => {
  it('should close a socket with 4403 when its token expires, before it gets another event', async () => {
    const s = await createTestServer({ TOKEN_TTL: '2s' });
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token);
    w.send({ id: 'g', type: 'subscribe', payload: { query: GROUP_EVENTS } });
    await eventually(async () => (await gql(s.url, '{ me { id } }', {}, u.token)).status === 401, 5000, 20);
    const expired = Date.now();
    // A fresh user announces a public group: a live subscription would get it.
    const other = await signup(s.url);
    await ok(gql(s.url, 'mutation { createGroup(name: "after expiry") { id } }', {}, other.token));
    expect(await closedWithin(w, 3000)).toEqual({ code: 4403, reason: 'Token expired' });
    expect(Date.now() - expired).toBeLessThan(3000);
    expect(w.messages.filter((m) => m.type === 'next')).toEqual([]);
  });

  it('should refuse a query on a socket whose token expired before the sweep closed it', async () => {
    const s = await createTestServer({ TOKEN_TTL: '2s' });
    // Two tokens expiring a signup apart: the sweep that closes the first runs at most once a
    // second, so the second socket is briefly open past its expiry.
    const a = await signup(s.url);
    const b = await signup(s.url);
    const [wa, wb] = await Promise.all([initialized(s.wsUrl, a.token), initialized(s.wsUrl, b.token)]);
    expect((await wa.closed).code).toBe(4403);
    await eventually(async () => (await gql(s.url, '{ me { id } }', {}, b.token)).status === 401, 5000, 20);
    wb.send({ id: 'q', type: 'subscribe', payload: { query: '{ me { id } }' } });
    expect(await closedWithin(wb, 3000)).toEqual({ code: 4403, reason: 'Token expired' });
    expect(wb.messages).toEqual([]);
  });

  it('should deliver no event to a socket whose token expired before the sweep closed it', async () => {
    const s = await createTestServer({ TOKEN_TTL: '2s' });
    // As above: the second socket is briefly open past its expiry, and an event comes in then.
    const a = await signup(s.url);
    const b = await signup(s.url);
    const [wa, wb] = await Promise.all([initialized(s.wsUrl, a.token), initialized(s.wsUrl, b.token)]);
    wb.send({ id: 'g', type: 'subscribe', payload: { query: GROUP_EVENTS } });
    expect((await wa.closed).code).toBe(4403);
    await eventually(async () => (await gql(s.url, '{ me { id } }', {}, b.token)).status === 401, 5000, 20);
    const other = await signup(s.url);
    await ok(gql(s.url, 'mutation { createGroup(name: "in the gap") { id } }', {}, other.token));
    expect(await closedWithin(wb, 3000)).toEqual({ code: 4403, reason: 'Token expired' });
    expect(wb.messages.filter((m) => m.type === 'next')).toEqual([]);
  });

  it('should let a graphql-ws client reconnect with fresh connectionParams and keep its subscription', async () => {
    const s = await createTestServer({ TOKEN_TTL: '2s' });
    const u = await signup(s.url);
    let token = u.token;
    let connects = 0;
    const closes: number[] = [];
    const client = retryingClient(
      s.wsUrl,
      // As an app does: the first connect uses the token it has, a reconnect signs in again.
      async () => {
        if (connects++ > 0) token = await login(s.url, u);
        return { authorization: `Bearer ${token}` };
      },
      { closed: (e) => closes.push(e.code) },
    );
    const kinds: string[] = [];
    client.subscribe({ query: GROUP_EVENTS }, { next: (r: any) => kinds.push(r.data.groupEvent.kind), error: () => undefined, complete: () => undefined });
    await eventually(() => closes.includes(4403), 6000);
    await eventually(() => connects >= 2, 10_000);
    // The new socket's subscription runs (the old one's stopped with its socket) before the event.
    await running(s, 'groupEvent', 1);
    const other = await signup(s.url);
    await ok(gql(s.url, 'mutation { createGroup(name: "resubscribed") { id } }', {}, other.token));
    await eventually(() => kinds.includes('CREATED'), 10_000);
  });
});

describe('unauthenticated sockets per address', () => {
  it('should refuse upgrades with 429 beyond 20 sockets from one address awaiting connection_init', async () => {
    const s = await createTestServer();
    const sockets = Array.from({ length: 25 }, () => raw(s.wsUrl));
    const results = await Promise.all(sockets.map((r) => r.opened.then(() => 'open', (e: Error) => e.message)));
    expect(results.filter((r) => r === 'open')).toHaveLength(20);
    expect(results.filter((r) => r !== 'open')).toEqual(Array(5).fill('upgrade refused: 429'));
  });

  it('should cut (1009) a frame over the anonymous body limit before the socket is acknowledged, and take large frames after', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const limit = anonymousBodyLimit(s.env);
    // An unauthenticated connection_init of 2 MB: cut as it arrives, not read and then refused.
    const pending = raw(s.wsUrl);
    await pending.opened;
    pending.socket.send(JSON.stringify({ type: 'connection_init', payload: { junk: 'x'.repeat(2 * 1024 * 1024) } }));
    expect((await pending.closed).code).toBe(1009);
    // Acknowledged, a frame of an attachment's size goes through (answered, not cut).
    const acked = await initialized(s.wsUrl, u.token);
    acked.send({ id: 'big', type: 'subscribe', payload: { query: '{ me { id } }', variables: { pad: 'y'.repeat(limit + 1024) } } });
    expect((await acked.next('next')).payload.data.me.id).toBe(u.id);
  });

  it('should count a socket only until it is acknowledged or closed', async () => {
    const s = await createTestServer({ WS_MAX_PENDING_PER_IP: '3' });
    const u = await signup(s.url);
    const idle = [raw(s.wsUrl), raw(s.wsUrl), raw(s.wsUrl)];
    await Promise.all(idle.map((r) => r.opened));
    const refused = await new Promise<{ status?: number; retryAfter?: string }>((resolve) => {
      const ws = new WebSocket(s.wsUrl, 'graphql-transport-ws');
      ws.on('error', () => undefined);
      ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] }));
      ws.once('open', () => (ws.terminate(), resolve({})));
    });
    expect(refused).toEqual({ status: 429, retryAfter: '3' });
    // An acknowledged socket no longer counts...
    idle[0].send({ type: 'connection_init', payload: { authorization: `Bearer ${u.token}` } });
    await idle[0].next('connection_ack');
    const acked = await initialized(s.wsUrl, u.token);
    await raw(s.wsUrl).opened;
    // ...nor does one refused (4403) or closed by its client: two slots free up, and only two.
    idle[1].send({ type: 'connection_init', payload: { token: 'not-a-token' } });
    expect((await idle[1].closed).code).toBe(4403);
    idle[2].socket.close(1000);
    await idle[2].closed;
    await eventually(async () => {
      const pair = [raw(s.wsUrl), raw(s.wsUrl)];
      if ((await Promise.all(pair.map((r) => r.opened.then(() => true, () => false)))).every(Boolean)) return true;
      for (const r of pair) r.socket.terminate();
      return false;
    }, 2000);
    await expect(raw(s.wsUrl).opened).rejects.toThrow('upgrade refused: 429');
    expect([idle[0], acked].every((r) => r.socket.readyState === WebSocket.OPEN)).toBe(true);
  });

  it('should free the place of a socket whose connection_init timed out at once, though its peer never answers the close', async () => {
    const s = await createTestServer({ WS_MAX_PENDING_PER_IP: '2', WS_CONNECTION_INIT_TIMEOUT: '300ms' });
    const idle = [raw(s.wsUrl), raw(s.wsUrl)];
    await Promise.all(idle.map((r) => r.opened));
    // They read nothing more: the 4408 close is never answered (a half-open client, a proxy).
    for (const r of idle) (r.socket as any)._socket.pause();
    await expect(raw(s.wsUrl).opened).rejects.toThrow('upgrade refused: 429');
    await sleep(500);
    // Past the timeout the address may open sockets again (ws waited 30 s for the close before).
    const after = [raw(s.wsUrl), raw(s.wsUrl)];
    await Promise.all(after.map((r) => r.opened));
    await expect(raw(s.wsUrl).opened).rejects.toThrow('upgrade refused: 429');
  });
});

describe('sockets per user', () => {
  it('should close a socket over WS_MAX_SOCKETS_PER_USER with 1013, which a graphql-ws client retries', async () => {
    const s = await createTestServer({ WS_MAX_SOCKETS_PER_USER: '1' });
    const u = await signup(s.url);
    const first = await initialized(s.wsUrl, u.token);
    const closes: { code: number; reason: string }[] = [];
    let connected = false;
    retryingClient(s.wsUrl, { authorization: `Bearer ${u.token}` }, {
      connected: () => (connected = true),
      closed: (e) => closes.push({ code: e.code, reason: e.reason }),
    });
    await eventually(() => closes.length >= 1, 5000);
    expect(closes[0]).toEqual({ code: 1013, reason: 'Too many connections' });
    expect(connected).toBe(false);
    // A slot frees up: the client, still retrying, gets in.
    first.socket.close(1000);
    await eventually(() => connected, 5000);
  });

  it('should free the place of a slow reader cut with 1013 within seconds, though it never reads its close', async () => {
    // No keep-alive: a paused client can't answer pings, and being cut for that is not what this tests.
    const s = await createTestServer({ WS_MAX_SOCKETS_PER_USER: '1', WS_MAX_BUFFERED_BYTES: '65536', WS_KEEPALIVE: '0' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    await cutSlowReader(s, u.token, lobby, 'subscription { messageAdded { content } }');
    const cut = Date.now();
    // The user's one socket was given up on: another is let in (ws waited 30 s for the close before).
    const accepted = async () => {
      const r = raw(s.wsUrl);
      await r.opened;
      r.send({ type: 'connection_init', payload: { authorization: `Bearer ${u.token}` } });
      return Promise.race([r.next('connection_ack', undefined, 2000).then(() => true, () => false), r.closed.then(() => false)]);
    };
    await eventually(accepted, 8000, 200);
    expect(Date.now() - cut).toBeLessThan(8000);
  }, 60_000);
});
