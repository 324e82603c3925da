import { codeOf, eventually, gql, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { lobbyOf, signup, attempt, sendMessage } from './helpers/factories';
import { SendMessageDocument } from '../generated/client/graphql';
import { proxiedDatabase } from './helpers/tcp-proxy';

const LOBBY = '{ groups(first: 100) { edges { node { id isLobby } } } }';

describe('PostgreSQL outage', () => {
  it('should fail fast with SERVICE_UNAVAILABLE while PostgreSQL is away and recover by itself', async () => {
    const { proxy, url } = await proxiedDatabase();
    try {
      const s = await createTestServer({ DATABASE_URL: url });
      const base = s.url.replace('/graphql', '');
      const alice = await signup(s.url);
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
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);

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
});
