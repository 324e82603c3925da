import { codeOf, eventually, gql, ok, subscribe, wsClient, type GqlResult } from './helpers/graphql';
import { signup, SIGNUP, buildUser, lobbyOf, type TestUser } from './helpers/factories';
import { createTestServer, type TestServer } from './helpers/server';
import { snapshot } from './helpers/db';

const ME = '{ me { id } }';
const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }';
const DELETE = 'mutation($p: String!) { deleteAccount(password: $p) }';
const BEFRIEND = 'mutation($id: ID!) { sendFriendRequest(userId: $id) { id from { id } to { id } } }';
const ACCEPT = 'mutation($id: ID!) { acceptFriendRequest(requestId: $id) { id status } }';
const DECLINE = 'mutation($id: ID!) { declineFriendRequest(requestId: $id) { id status } }';
const CREATE_GROUP = 'mutation($n: String!) { createGroup(name: $n) { id name } }';
const RENAME_GROUP = 'mutation($g: ID!, $n: String!) { renameGroup(groupId: $g, name: $n) { id name } }';
const CREATE_PROJECT = 'mutation($t: String!) { createProject(title: $t) { id title } }';
const RENAME_PROJECT = 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id title } }';
const PROFILE = 'mutation($d: String) { updateProfile(displayName: $d) { displayName } }';
const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id content attachment { fileName } } }';
const HISTORY = 'query($c: ConversationInput!) { history(conversation: $c) { edges { node { id content } } } }';

/** Requests from a given client address (the server trusts X-Forwarded-For in these tests). */
const from = (ip: string) => ({ 'x-forwarded-for': ip });

async function befriend(s: TestServer, a: TestUser, b: TestUser): Promise<void> {
  const req = (await ok(gql(s.url, BEFRIEND, { id: b.id }, a.token))).sendFriendRequest;
  await ok(gql(s.url, ACCEPT, { id: req.id }, b.token));
}

describe('ids', () => {
  it('should treat an upper-cased id as the id it spells, in arguments, input objects and subscriptions', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const A = a.id.toUpperCase();
    const B = b.id.toUpperCase();
    // Befriending oneself is refused however the id is spelled, as a variable or a literal.
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, BEFRIEND, { id: A }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, `mutation { sendFriendRequest(userId: "${A}") { id } }`, {}, a.token))).toBe('BAD_USER_INPUT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Anything that is not a UUID still names nothing.
    expect(codeOf(await gql(s.url, BEFRIEND, { id: 'NOT-A-UUID' }, a.token))).toBe('NOT_FOUND');

    const req = (await ok(gql(s.url, BEFRIEND, { id: B }, a.token))).sendFriendRequest;
    expect(req.to.id).toBe(b.id);
    await ok(gql(s.url, ACCEPT, { id: req.id.toUpperCase() }, b.token));

    const w = wsClient(s.wsUrl, b.token);
    await w.connected;
    const sub = subscribe(w, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { content } }', { c: { userId: A } });
    // A subscription is live once a message sent after it arrives; poll with messages until one does.
    await eventually(async () => {
      await ok(gql(s.url, SEND, { input: { toUserId: B, content: 'ping' } }, a.token));
      return sub.values.length > 0;
    });
    const sent = (await ok(gql(s.url, SEND, { input: { toUserId: B, content: 'upper-cased dm' } }, a.token))).sendMessage;
    await eventually(() => sub.values.some((v: any) => v.messageAdded.content === 'upper-cased dm'));
    // It is stored in the one conversation both read, whichever spelling they use.
    for (const [u, peer] of [[a, b.id], [a, B], [b, a.id], [b, A]] as const) {
      const h = await ok(gql(s.url, HISTORY, { c: { userId: peer } }, u.token));
      expect(h.history.edges.map((e: any) => e.node.id)).toContain(sent.id);
    }
    // Other ids: a group by an upper-cased id answers with the stored spelling.
    const lobby = await lobbyOf(s.url, a.token);
    expect((await ok(gql(s.url, 'query($id: ID!) { group(id: $id) { id } }', { id: lobby.toUpperCase() }, a.token))).group.id).toBe(lobby);
  });
});
