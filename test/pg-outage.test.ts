import { codeOf, eventually, gql, listen, ok, sleep } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { lobbyOf, signup, attempt, sendMessage } from './helpers/factories';
import { SendMessageDocument } from '../generated/client/graphql';
import { proxiedDatabase } from './helpers/tcp-proxy';
import { initialized, raw } from './helpers/raw-socket';

const LOBBY = '{ groups(first: 100) { edges { node { id isLobby } } } }';

describe('PostgreSQL outage', () => {
  it('should fail fast with SERVICE_UNAVAILABLE while PostgreSQL is away and recover by itself', async () => {
    const { proxy, url } = await proxiedDatabase();
    try {
      const s = await createTestServer({ DATABASE_URL: url });
      const base = s.url.replace('/graphql', '');
      const alice = await signup(s.url);
      // Signed up on another instance: this one has not checked bob's token yet.
      const other = await createTestServer({}, { clean: false });
      const bob = await signup(other.url);
      const lobby = await lobbyOf(s.url, alice.token);
      await sendMessage(s.url, alice.token, { groupId: lobby, content: 'before' });

      await proxy.cut();
      // Every kind of operation answers at once with the code, none hangs.
      const attempts = [
        () => gql(s.url, LOBBY, {}, alice.token),
        () => attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'during' } }, alice.token),
        () => gql(s.url, 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { token } }', { u: 'pgdown_user', p: 'a long enough password' }),
        () => gql(s.url, '{ me { id username } }', {}, alice.token),
      ];
      for (const attempt of attempts) {
        const started = Date.now();
        const r = await attempt();
        expect(Date.now() - started).toBeLessThan(5000);
        expect(codeOf(r)).toBe('SERVICE_UNAVAILABLE');
        expect(Object.values(r.data ?? {}).every((v) => v === null)).toBe(true);
      }
      // A request whose token can't be checked fails before it runs: 503, as a load balancer reads it.
      const unchecked = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${bob.token}` }, body: JSON.stringify({ query: '{ me { id } }' }) });
      expect([unchecked.status, unchecked.headers.get('retry-after'), ((await unchecked.json()) as any).errors?.[0]?.extensions?.code]).toEqual([503, '1', 'SERVICE_UNAVAILABLE']);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      // A socket opened meanwhile, with a token this instance knows (its session can't load) or one
      // it has not seen (it can't be checked): told to try again (1013, which graphql-ws clients
      // retry), not 4500 or 4403, which end them for good.
      for (const token of [alice.token, bob.token]) {
        const socket = raw(s.wsUrl);
        await socket.opened;
        socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
        expect(await socket.closed).toEqual({ code: 1013, reason: 'Try again later' });
      }

      await proxy.restore();
      // Back by itself: no restart, the same token, and nothing sent during the outage was stored.
      await eventually(async () => (await fetch(`${base}/readyz`)).status === 200, 10_000);
      await sendMessage(s.url, alice.token, { groupId: lobby, content: 'after' });
      const history = await ok(gql(s.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 10) { edges { node { content } } } }', { g: lobby }, alice.token));
      expect(history.history.edges.map((e: any) => e.node.content)).toEqual(['before', 'after']);
    } finally {
      await proxy.cut();
    }
  }, 60_000);

  it('should deliver, once PostgreSQL is back, a message whose commit landed as the connection broke though its send was answered SERVICE_UNAVAILABLE', async () => {
    const { proxy, url } = await proxiedDatabase();
    try {
      const b = await createTestServer({ DATABASE_URL: url });
      const a = await createTestServer({}, { clean: false });
      const [alice, bob] = [await signup(a.url), await signup(a.url)];
      const g = (await ok(gql(a.url, 'mutation { createGroup(name: "quiet") { id } }', {}, alice.token))).createGroup.id;
      await ok(gql(a.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, bob.token));
      const ADDED = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }';
      const subs = [await listen(a, bob, ADDED, { g }), await listen(b, bob, ADDED, { g })];
      await sendMessage(b.url, alice.token, { groupId: g, content: 'before' });
      await eventually(() => subs.every((x) => x.values.length === 1));
      // The statement reaches PostgreSQL and commits; its answer never comes back, then the link goes.
      proxy.dropReplies();
      const send = attempt(b.url, SendMessageDocument, { input: { groupId: g, content: 'landed' } }, alice.token);
      await sleep(500);
      await proxy.cut();
      expect(codeOf(await send)).toBe('SERVICE_UNAVAILABLE');
      await sleep(1500);
      await proxy.restore();
      // Stored, and the last of a quiet conversation: no later message makes a gap to search. Before,
      // it reached no subscriber on either instance (an outside probe, 3 of 3).
      const history = await ok(gql(a.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 5) { edges { node { content } } } }', { g }, alice.token));
      expect(history.history.edges.map((e: any) => e.node.content)).toEqual(['before', 'landed']);
      await eventually(() => subs.every((x) => x.values.length === 2), 15_000);
      await sleep(1000);
      for (const x of subs) expect(x.values.map((v: any) => v.messageAdded.content)).toEqual(['before', 'landed']);
    } finally {
      await proxy.cut();
    }
  }, 60_000);

  it('should tell a subscription it could not check meanwhile to come back, over a socket already open and over SSE', async () => {
    const { proxy, url } = await proxiedDatabase();
    try {
      const s = await createTestServer({ DATABASE_URL: url });
      const alice = await signup(s.url);
      const lobby = await lobbyOf(s.url, alice.token);
      const scoped = { query: 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { id } }', variables: { g: lobby } };
      // Open before the cut: the user's session and memberships are loaded, so a stream opens too.
      const [socket, held] = [await initialized(s.wsUrl, alice.token), await initialized(s.wsUrl, alice.token)];
      await proxy.cut();
      // Its check of the conversation needs PostgreSQL: the socket is closed 1013, which graphql-ws
      // clients retry, subscribing again. Errors and complete ended it for good there.
      socket.send({ id: 'scoped', type: 'subscribe', payload: scoped });
      const closed = await Promise.race([socket.closed, sleep(10_000).then(() => 'still open')]);
      expect([closed, socket.messages.filter((m) => m.id === 'scoped')]).toEqual([{ code: 1013, reason: 'Try again later' }, []]);
      // Over SSE, while the other socket keeps the user's session here: 503, to try again.
      const stream = await fetch(s.url.replace('/graphql', '/graphql/stream'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${alice.token}` },
        body: JSON.stringify(scoped),
        signal: AbortSignal.timeout(10_000),
      });
      expect([stream.status, stream.headers.get('retry-after')]).toEqual([503, '1']);
      expect(JSON.parse(await stream.text()).errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
      expect(held.socket.readyState).toBe(held.socket.OPEN);
    } finally {
      await proxy.cut();
    }
  }, 30_000);

  it('should answer /readyz 503 within a few seconds while PostgreSQL stalls (takes connections, answers nothing)', async () => {
    const { proxy, url } = await proxiedDatabase();
    try {
      const s = await createTestServer({ DATABASE_URL: url });
      const readyz = s.url.replace('/graphql', '/readyz');
      expect((await fetch(readyz)).status).toBe(200);
      proxy.hold();
      const started = Date.now();
      expect((await fetch(readyz)).status).toBe(503);
      expect(Date.now() - started).toBeLessThan(5000);
      proxy.release();
      await eventually(async () => (await fetch(readyz)).status === 200, 10_000);
    } finally {
      await proxy.cut();
    }
  }, 30_000);
});
