import { codeOf, gql, listen, ok, sleep } from './helpers/graphql';
import { createTestServer, itRedis } from './helpers/server';
import { signup, type TestUser } from './helpers/factories';
import { snapshot } from './helpers/db';
import { Topic } from '../src/shared/pubsub/topics';

const SEND = 'mutation($id: ID!) { sendFriendRequest(userId: $id) { id status from { id } to { id } } }';
const ACCEPT = 'mutation($id: ID!) { acceptFriendRequest(requestId: $id) { id status } }';
const DECLINE = 'mutation($id: ID!) { declineFriendRequest(requestId: $id) { id status } }';
const REMOVE = 'mutation($id: ID!) { removeFriend(userId: $id) }';
const FRIENDS = '{ friends { id username } }';
const REQUESTS = '{ friendRequests { id status from { id } to { id } createdAt } }';

describe('friends', () => {
  it('should send, list, accept and remove a friendship', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const req = (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest;
    expect(req).toMatchObject({ status: 'PENDING', from: { id: a.id }, to: { id: b.id } });
    for (const u of [a, b]) {
      expect((await ok(gql(s.url, REQUESTS, {}, u.token))).friendRequests.map((r: any) => r.id)).toEqual([req.id]);
    }
    expect((await ok(gql(s.url, ACCEPT, { id: req.id }, b.token))).acceptFriendRequest.status).toBe('ACCEPTED');
    expect((await ok(gql(s.url, FRIENDS, {}, a.token))).friends.map((f: any) => f.id)).toEqual([b.id]);
    expect((await ok(gql(s.url, FRIENDS, {}, b.token))).friends.map((f: any) => f.id)).toEqual([a.id]);
    expect((await ok(gql(s.url, REQUESTS, {}, a.token))).friendRequests).toEqual([]);
    expect((await ok(gql(s.url, REMOVE, { id: a.id }, b.token))).removeFriend).toBe(true);
    expect((await ok(gql(s.url, FRIENDS, {}, a.token))).friends).toEqual([]);
    expect(codeOf(await gql(s.url, REMOVE, { id: a.id }, b.token))).toBe('NOT_FOUND');
  });

  it('should list friends and blocked users by username whatever its case, as users pages them', async () => {
    const s = await createTestServer();
    const me = await signup(s.url);
    const tag = `${process.pid}_${Date.now() % 100000}`;
    // Upper case sorts before lower case byte by byte: Zed before adam.
    const users = [await signup(s.url, { username: `Zed_${tag}` }), await signup(s.url, { username: `adam_${tag}` }), await signup(s.url, { username: `Bob_${tag}` })];
    for (const u of users) {
      const req = (await ok(gql(s.url, SEND, { id: u.id }, me.token))).sendFriendRequest;
      await ok(gql(s.url, ACCEPT, { id: req.id }, u.token));
    }
    const alphabetical = [`adam_${tag}`, `Bob_${tag}`, `Zed_${tag}`];
    expect((await ok(gql(s.url, FRIENDS, {}, me.token))).friends.map((f: any) => f.username)).toEqual(alphabetical);
    for (const u of users) await ok(gql(s.url, 'mutation($id: ID!) { blockUser(userId: $id) }', { id: u.id }, me.token));
    expect((await ok(gql(s.url, '{ blockedUsers { username } }', {}, me.token))).blockedUsers.map((u: any) => u.username)).toEqual(alphabetical);
  });

  it("should bring a direct conversation back with a restored friendship as each had read it, not read to the end", async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const befriend = async () => ok(gql(s.url, ACCEPT, { id: (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest.id }, b.token));
    await befriend();
    const DM = 'mutation($to: ID!, $t: String!) { sendMessage(input: { toUserId: $to, content: $t }) { id } }';
    await ok(gql(s.url, DM, { to: a.id, t: 'from b' }, b.token));
    await ok(gql(s.url, DM, { to: b.id, t: 'first' }, a.token));
    const second = (await ok(gql(s.url, DM, { to: b.id, t: 'second' }, a.token))).sendMessage.id;
    const ROW = 'query($u: ID!) { conversation(conversation: { userId: $u }) { unreadCount lastReadMessageId } readReceipts(conversation: { userId: $u }) { user { id } lastReadMessageId } }';
    const rows = async () => [await ok(gql(s.url, ROW, { u: a.id }, b.token)), await ok(gql(s.url, ROW, { u: b.id }, a.token))];
    const restore = async () => {
      expect((await ok(gql(s.url, REMOVE, { id: b.id }, a.token))).removeFriend).toBe(true);
      await befriend();
    };
    const before = await rows();
    expect(before.map((r) => r.conversation.unreadCount)).toEqual([2, 0]);
    await restore();
    // Bob had read up to his own message, no further; Alice up to her last one. Neither is told more.
    expect(await rows()).toEqual(before);
    // Bob reads 'first' without answering: ended and restored again, he is still there, and Alice's receipts say so.
    const MARK = 'mutation($u: ID!, $m: ID) { markRead(conversation: { userId: $u }, messageId: $m) { unreadCount } }';
    const first = (await ok(gql(s.url, 'query($u: ID!) { history(conversation: { userId: $u }, last: 2) { edges { node { id } } } }', { u: a.id }, b.token))).history.edges[0].node.id;
    expect((await ok(gql(s.url, MARK, { u: a.id, m: first }, b.token))).markRead.unreadCount).toBe(1);
    const read = await rows();
    await restore();
    expect(await rows()).toEqual(read);
    expect(read[0].conversation).toEqual({ unreadCount: 1, lastReadMessageId: first });
    expect(read[1].readReceipts).toEqual([{ user: { id: b.id }, lastReadMessageId: first }]);
    expect(read[1].conversation.lastReadMessageId).toBe(second);
  });

  it('should let only the addressee answer, once', async () => {
    const s = await createTestServer();
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const req = (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest;
    expect(codeOf(await gql(s.url, ACCEPT, { id: req.id }, a.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(s.url, ACCEPT, { id: req.id }, c.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, ACCEPT, { id: req.id }))).toBe('UNAUTHENTICATED');
    expect((await ok(gql(s.url, DECLINE, { id: req.id }, b.token))).declineFriendRequest.status).toBe('DECLINED');
    expect(codeOf(await gql(s.url, ACCEPT, { id: req.id }, b.token))).toBe('CONFLICT');
    expect((await ok(gql(s.url, FRIENDS, {}, a.token))).friends).toEqual([]);
    // After a decline the sender waits out FRIEND_REQUEST_COOLDOWN (test/hardening-auth.test.ts).
    expect(codeOf(await gql(s.url, SEND, { id: b.id }, a.token))).toBe('RATE_LIMITED');
  });

  it('should let only the sender withdraw a pending request, as if never sent, and change nothing when refused', async () => {
    const s = await createTestServer();
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const CANCEL = 'mutation($id: ID!) { cancelFriendRequest(requestId: $id) }';
    const req = (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest;
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const [token, code] of [[b.token, 'FORBIDDEN'], [c.token, 'NOT_FOUND'], [undefined, 'UNAUTHENTICATED']] as const) {
      expect(codeOf(await gql(s.url, CANCEL, { id: req.id }, token))).toBe(code);
    }
    for (const id of ['00000000-0000-4000-8000-000000000000', 'nope']) expect(codeOf(await gql(s.url, CANCEL, { id }, a.token))).toBe('NOT_FOUND');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(s.url, CANCEL, { id: req.id }, a.token))).cancelFriendRequest).toBe(true);
    for (const u of [a, b]) expect((await ok(gql(s.url, REQUESTS, {}, u.token))).friendRequests).toEqual([]);
    expect(codeOf(await gql(s.url, ACCEPT, { id: req.id }, b.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, CANCEL, { id: req.id }, a.token))).toBe('NOT_FOUND');
    // No cooldown, as after a decline: the sender may ask again at once; an answered one is CONFLICT.
    const again = (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest;
    expect((await ok(gql(s.url, ACCEPT, { id: again.id }, b.token))).acceptFriendRequest.status).toBe('ACCEPTED');
    expect(codeOf(await gql(s.url, CANCEL, { id: again.id }, a.token))).toBe('CONFLICT');
    expect((await ok(gql(s.url, FRIENDS, {}, a.token))).friends.map((f: any) => f.id)).toEqual([b.id]);
  });

  it('should refuse requests to oneself, duplicates, unknown users and existing friends', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, SEND, { id: a.id }, a.token))).toBe('BAD_USER_INPUT');
    // Naming oneself is a bad input in unfriending too, as in every call that names another user.
    const self = await gql(s.url, REMOVE, { id: a.id }, a.token);
    expect([codeOf(self), self.errors?.[0]?.extensions?.field]).toEqual(['BAD_USER_INPUT', 'userId']);
    expect(codeOf(await gql(s.url, SEND, { id: '00000000-0000-4000-8000-000000000000' }, a.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, SEND, { id: "1' or '1'='1" }, a.token))).toBe('NOT_FOUND');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    await ok(gql(s.url, SEND, { id: b.id }, a.token));
    expect(codeOf(await gql(s.url, SEND, { id: b.id }, a.token))).toBe('CONFLICT');
    const race = await Promise.all([1, 2, 3].map(() => gql(s.url, SEND, { id: a.id }, b.token)));
    // b answering with a request of their own accepts a's.
    expect(race.filter((r) => !r.errors).length).toBeGreaterThanOrEqual(1);
    expect((await ok(gql(s.url, FRIENDS, {}, a.token))).friends.map((f: any) => f.id)).toEqual([b.id]);
    expect(codeOf(await gql(s.url, SEND, { id: b.id }, a.token))).toBe('CONFLICT');
  });

  it('should accept their request when you send one back', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const first = (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest;
    const back = (await ok(gql(s.url, SEND, { id: a.id }, b.token))).sendFriendRequest;
    expect(back).toMatchObject({ id: first.id, status: 'ACCEPTED' });
    expect((await ok(gql(s.url, FRIENDS, {}, b.token))).friends.map((f: any) => f.id)).toEqual([a.id]);
  });

  it('should drop friendships and requests of a deleted account', async () => {
    const s = await createTestServer();
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const r = (await ok(gql(s.url, SEND, { id: b.id }, a.token))).sendFriendRequest;
    await ok(gql(s.url, ACCEPT, { id: r.id }, b.token));
    await ok(gql(s.url, SEND, { id: c.id }, a.token));
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: a.password }, a.token));
    expect((await ok(gql(s.url, FRIENDS, {}, b.token))).friends).toEqual([]);
    expect((await ok(gql(s.url, REQUESTS, {}, c.token))).friendRequests).toEqual([]);
  });
});

describe('friend events', () => {
  const EVENTS = 'subscription { friendEvent { kind createdAt user { id username } request { id status from { id } to { id } } } }';
  const CANCEL = 'mutation($id: ID!) { cancelFriendRequest(requestId: $id) }';
  /** What a friendEvent subscription got, as [kind, the other user, the request's status]. */
  const told = (sub: { values: any[] }, users: Record<string, TestUser>) => {
    const name = (id: string | undefined) => Object.keys(users).find((k) => users[k].id === id) ?? id;
    return sub.values.map(({ friendEvent: e }) => [e.kind, name(e.user.id), e.request?.status ?? null]);
  };

  it('should tell a copy of an event once: an event published again after a Redis outage may come twice', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const toBob = await listen(s, bob, 'subscription { friendEvent { kind createdAt } }');
    const event = (at: string) => ({ kind: 'REMOVED' as const, userIds: [alice.id, bob.id] as [string, string], audience: [alice.id, bob.id], request: null, at });
    const [first, later] = [new Date(Date.now() - 1000).toISOString(), new Date().toISOString()];
    for (const at of [first, first, later]) await s.services.pubsub.publish(Topic.FriendEvent, event(at));
    await toBob.nth(2);
    await sleep(300);
    expect(toBob.values.map((v) => v.friendEvent.createdAt)).toEqual([first, later]);
  });

  it("should tell both users' sessions each request sent, withdrawn, declined and accepted, and each friendship ended, and no one else", async () => {
    const s = await createTestServer({ FRIEND_REQUEST_COOLDOWN: '0' });
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const [toAlice, toBob, toCarol] = [await listen(s, alice, EVENTS), await listen(s, bob, EVENTS), await listen(s, carol, EVENTS)];
    const send = async (from: TestUser, to: TestUser) => (await ok(gql(s.url, SEND, { id: to.id }, from.token))).sendFriendRequest;
    const first = await send(alice, bob);
    await ok(gql(s.url, CANCEL, { id: first.id }, alice.token));
    const second = await send(alice, bob);
    await ok(gql(s.url, DECLINE, { id: second.id }, bob.token));
    const third = await send(bob, alice);
    await ok(gql(s.url, ACCEPT, { id: third.id }, alice.token));
    await ok(gql(s.url, REMOVE, { id: alice.id }, bob.token));
    await Promise.all([toAlice.nth(7), toBob.nth(7)]);
    const users = { alice, bob };
    expect(told(toAlice, users)).toEqual([
      ['REQUESTED', 'bob', 'PENDING'],
      ['CANCELLED', 'bob', 'PENDING'],
      ['REQUESTED', 'bob', 'PENDING'],
      ['DECLINED', 'bob', 'DECLINED'],
      ['REQUESTED', 'bob', 'PENDING'],
      ['ACCEPTED', 'bob', 'ACCEPTED'],
      ['REMOVED', 'bob', null],
    ]);
    expect(told(toBob, users)).toEqual(told(toAlice, users).map(([kind, , status]) => [kind, 'alice', status]));
    // Each request as it is: its id, and who sent it to whom.
    const requests = toBob.values.map(({ friendEvent: e }) => e.request && [e.request.id, e.request.from.id, e.request.to.id]);
    expect(requests).toEqual([
      [first.id, alice.id, bob.id],
      [first.id, alice.id, bob.id],
      [second.id, alice.id, bob.id],
      [second.id, alice.id, bob.id],
      [third.id, bob.id, alice.id],
      [third.id, bob.id, alice.id],
      null,
    ]);
    await sleep(100);
    expect(toCarol.values).toEqual([]);
  });

  it("should tell a request sent back as the acceptance it is, nothing of a refused call, and a block to the blocker's sessions alone", async () => {
    const s = await createTestServer();
    const [alice, bob, carol, dave] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const [toAlice, toBob, toCarol, toDave] = [await listen(s, alice, EVENTS), await listen(s, bob, EVENTS), await listen(s, carol, EVENTS), await listen(s, dave, EVENTS)];
    await ok(gql(s.url, SEND, { id: bob.id }, alice.token));
    expect(codeOf(await gql(s.url, SEND, { id: bob.id }, alice.token))).toBe('CONFLICT');
    expect((await ok(gql(s.url, SEND, { id: alice.id }, bob.token))).sendFriendRequest.status).toBe('ACCEPTED');
    await toAlice.nth(2);
    // A block ends the friendship and drops requests either way: the blocker's sessions are told (their
    // other devices kept the friend, or the request: an outside probe), the blocked user nothing.
    await ok(gql(s.url, SEND, { id: carol.id }, bob.token));
    await ok(gql(s.url, SEND, { id: bob.id }, dave.token));
    await ok(gql(s.url, 'mutation($id: ID!) { blockUser(userId: $id) }', { id: bob.id }, alice.token));
    await ok(gql(s.url, 'mutation($id: ID!) { blockUser(userId: $id) }', { id: carol.id }, bob.token));
    await ok(gql(s.url, 'mutation($id: ID!) { blockUser(userId: $id) }', { id: dave.id }, bob.token));
    // Blocked already: nothing changes, no one is told.
    await ok(gql(s.url, 'mutation($id: ID!) { blockUser(userId: $id) }', { id: bob.id }, alice.token));
    await Promise.all([toAlice.nth(3), toBob.nth(6)]);
    await sleep(150);
    expect(told(toAlice, { bob })).toEqual([
      ['REQUESTED', 'bob', 'PENDING'],
      ['ACCEPTED', 'bob', 'ACCEPTED'],
      ['REMOVED', 'bob', null],
    ]);
    expect(told(toBob, { alice, carol, dave })).toEqual([
      ['REQUESTED', 'alice', 'PENDING'],
      ['ACCEPTED', 'alice', 'ACCEPTED'],
      ['REQUESTED', 'carol', 'PENDING'],
      ['REQUESTED', 'dave', 'PENDING'],
      ['CANCELLED', 'carol', 'PENDING'],
      ['CANCELLED', 'dave', 'PENDING'],
    ]);
    expect(told(toCarol, { bob })).toEqual([['REQUESTED', 'bob', 'PENDING']]);
    expect(told(toDave, { bob })).toEqual([['REQUESTED', 'bob', 'PENDING']]);
  });

  it("should tell a deleted account's friends the friendship ended, and the other side of its pending requests that they went", async () => {
    const s = await createTestServer();
    const [alice, bob, carol, dave] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    await ok(gql(s.url, ACCEPT, { id: (await ok(gql(s.url, SEND, { id: bob.id }, alice.token))).sendFriendRequest.id }, bob.token));
    await ok(gql(s.url, SEND, { id: carol.id }, alice.token));
    await ok(gql(s.url, SEND, { id: alice.id }, dave.token));
    const [toBob, toCarol, toDave] = [await listen(s, bob, EVENTS), await listen(s, carol, EVENTS), await listen(s, dave, EVENTS)];
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: alice.password }, alice.token));
    await Promise.all([toBob.nth(1), toCarol.nth(1), toDave.nth(1)]);
    await sleep(100);
    expect(told(toBob, { alice })).toEqual([['REMOVED', 'alice', null]]);
    expect(told(toCarol, { alice })).toEqual([['CANCELLED', 'alice', 'PENDING']]);
    expect(told(toDave, { alice })).toEqual([['CANCELLED', 'alice', 'PENDING']]);
    // The other user as they are now: the deleted account's placeholder.
    for (const sub of [toBob, toCarol, toDave]) expect(sub.values[0].friendEvent.user.username).toMatch(/^deleted-/);
    // Nothing of it left pending either.
    expect((await ok(gql(s.url, '{ friendRequests { id } }', {}, dave.token))).friendRequests).toEqual([]);
  });

  itRedis('should reach a session on another instance than the one the change went through', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob] = [await signup(a.url), await signup(a.url)];
    const [onB, aliceOnB] = [await listen(b, bob, EVENTS), await listen(b, alice, EVENTS)];
    const r = (await ok(gql(a.url, SEND, { id: bob.id }, alice.token))).sendFriendRequest;
    await ok(gql(a.url, ACCEPT, { id: r.id }, bob.token));
    await Promise.all([onB.nth(2), aliceOnB.nth(2)]);
    await sleep(100);
    expect(told(onB, { alice })).toEqual([
      ['REQUESTED', 'alice', 'PENDING'],
      ['ACCEPTED', 'alice', 'ACCEPTED'],
    ]);
    expect(told(aliceOnB, { bob })).toEqual([
      ['REQUESTED', 'bob', 'PENDING'],
      ['ACCEPTED', 'bob', 'ACCEPTED'],
    ]);
  });
});
