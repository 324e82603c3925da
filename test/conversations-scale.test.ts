import { Redis } from 'ioredis';
import { eventually, gql, listen, ok, sleep, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { befriend, buildProject, groupWith, lobbyOf, sendMessage, signup, type TestUser } from './helpers/factories';
import { sql } from './helpers/db';
import { migrationsList } from '../src/migrations';
import { CONVERSATION_CHANNELS, Topic } from '../src/shared/pubsub/topics';

const CONVERSATION = 'query($c: ConversationInput!) { conversation(conversation: $c) { id unreadCount lastReadMessageId lastMessage { id } } }';
const CONVERSATIONS = 'query { conversations(first: 50) { edges { node { id unreadCount lastReadMessageId updatedAt lastMessage { id } } } } }';
const MARK = 'mutation($c: ConversationInput!, $m: ID) { markRead(conversation: $c, messageId: $m) { unreadCount lastReadMessageId } }';
const HISTORY = 'query($c: ConversationInput!) { history(conversation: $c, last: 100) { edges { node { id sender { id } } } } }';
const UPDATED = 'subscription { conversationUpdated { id unreadCount lastReadMessageId lastMessage { id } } }';

const send = sendMessage;

async function users(url: string, n: number): Promise<TestUser[]> {
  const out: TestUser[] = [];
  for (let i = 0; i < n; i++) out.push(await signup(url));
  return out;
}

/** Rows of each conversation table written by the transaction that stored this message (their xmin is its xid). */
async function rowsWrittenWith(s: TestServer, messageId: string): Promise<{ members: number; heads: number }> {
  const [row] = await sql(
    s.env.DATABASE_URL!,
    `select (select count(*)::int from conversation_members where xmin = m.xmin) as members, (select count(*)::int from conversation_heads where xmin = m.xmin) as heads
     from messages m where m.id = $1`,
    [messageId],
  );
  return row;
}

const row = async (s: TestServer, u: TestUser, c: Record<string, string>) => (await ok(gql(s.url, CONVERSATION, { c }, u.token))).conversation;

/** Messages of the conversation as `u` sees them, oldest first. */
async function historyOf(s: TestServer, u: TestUser, c: Record<string, string>): Promise<{ id: string; sender: { id: string } }[]> {
  return (await ok(gql(s.url, HISTORY, { c }, u.token))).history.edges.map((e: any) => e.node);
}

/** Unread after a marker at index `at` of the viewer's history (-1: none): the messages from others after it. */
const unreadAfter = (history: { sender: { id: string } }[], u: TestUser, at: number) => history.slice(at + 1).filter((m) => m.sender.id !== u.id).length;

describe('conversations at scale', () => {
  it('should write one head and one member row per message, whatever the number of members', async () => {
    const s = await createTestServer();
    const [alice, bob, ...rest] = await users(s.url, 12);
    const lobby = await lobbyOf(s.url, alice.token);
    const small = await groupWith(s.url, alice, 'Two', [bob]);
    for (const groupId of [small, lobby, lobby]) {
      const m = await send(s.url, alice.token, { groupId, content: 'hi' });
      // The old design updated every member's row (12 in the lobby).
      expect(await rowsWrittenWith(s, m.id)).toEqual({ members: 1, heads: 1 });
    }
    expect((await row(s, rest[9], { groupId: lobby })).unreadCount).toBe(2);
    expect((await row(s, bob, { groupId: small })).unreadCount).toBe(1);
    expect((await row(s, alice, { groupId: lobby })).unreadCount).toBe(0);

    // A direct conversation's first message creates both rows; the next ones write the sender's.
    await befriend(s.url, alice, bob);
    const first = await send(s.url, alice.token, { toUserId: bob.id, content: 'first' });
    expect(await rowsWrittenWith(s, first.id)).toEqual({ members: 2, heads: 1 });
    const reply = await send(s.url, bob.token, { toUserId: alice.id, content: 'reply' });
    expect(await rowsWrittenWith(s, reply.id)).toEqual({ members: 1, heads: 1 });
    expect((await row(s, alice, { userId: bob.id })).unreadCount).toBe(1);
  });

  it('should store a retried clientMessageId once and count it once, even when the retries race', async () => {
    const s = await createTestServer();
    const [alice, bob] = await users(s.url, 2);
    const g = await groupWith(s.url, alice, 'Retries', [bob]);
    const sent = await Promise.all(Array.from({ length: 6 }, () => send(s.url, alice.token, { groupId: g, content: 'once', clientMessageId: 'c-1' })));
    expect(new Set(sent.map((m) => m.id)).size).toBe(1);
    expect(await row(s, bob, { groupId: g })).toMatchObject({ unreadCount: 1, lastMessage: { id: sent[0].id } });
    const [head] = await sql(s.env.DATABASE_URL!, 'select seq::int from conversation_heads where conversation_key = $1', [`g:${g}`]);
    expect(head.seq).toBe(1);
  });

  it('should keep unread counts exact with private project messages, concurrent sends and markers set in the middle', async () => {
    const s = await createTestServer();
    const [owner, ann, ben] = await users(s.url, 3);
    const p = (await buildProject(s.url, owner, { participants: [ann, ben] })).id;
    const c = { projectId: p };
    // Open and private messages in every direction, at once.
    const sends: [TestUser, Record<string, unknown>][] = [];
    for (let i = 0; i < 8; i++) {
      sends.push([owner, { projectId: p, content: `open ${i}` }]);
      sends.push([owner, { projectId: p, toUserId: ann.id, content: `owner to ann ${i}` }]);
      sends.push([ann, { projectId: p, toUserId: ben.id, content: `ann to ben ${i}` }]);
      sends.push([ben, { projectId: p, content: `ben open ${i}` }]);
      if (i % 2) sends.push([ben, { projectId: p, toUserId: owner.id, content: `ben to owner ${i}` }]);
    }
    await Promise.all(sends.map(([u, input]) => send(s.url, u.token, input)));

    for (const u of [owner, ann, ben]) {
      const history = await historyOf(s, u, c);
      const own = history.map((m) => m.sender.id).lastIndexOf(u.id);
      expect(await row(s, u, c)).toEqual({
        id: `p:${p}`,
        unreadCount: unreadAfter(history, u, own),
        lastReadMessageId: history[own].id,
        lastMessage: { id: history[history.length - 1].id },
      });
    }

    // Then, one at a time: ann's marker moves to a private message, then to an open one, in the middle.
    const q1 = await send(s.url, owner.token, { projectId: p, toUserId: ann.id, content: 'q1' });
    await send(s.url, ben.token, { projectId: p, content: 'p2' });
    await send(s.url, owner.token, { projectId: p, toUserId: ben.id, content: 'not for ann' });
    const p3 = await send(s.url, owner.token, { projectId: p, content: 'p3' });
    await send(s.url, owner.token, { projectId: p, toUserId: ann.id, content: 'q2' });
    await send(s.url, ben.token, { projectId: p, content: 'p4' });
    const history = await historyOf(s, ann, c);
    for (const target of [q1, p3]) {
      const expected = unreadAfter(history, ann, history.findIndex((m) => m.id === target.id));
      expect((await ok(gql(s.url, MARK, { c, m: target.id }, ann.token))).markRead).toEqual({ unreadCount: expected, lastReadMessageId: target.id });
      expect((await row(s, ann, c)).unreadCount).toBe(expected);
    }
    expect((await ok(gql(s.url, MARK, { c }, ann.token))).markRead).toEqual({ unreadCount: 0, lastReadMessageId: history[history.length - 1].id });
    // Ben's sidebar: his newest message is his own p4; the private one to him after his open ones counts.
    const benHistory = await historyOf(s, ben, c);
    expect((await row(s, ben, c)).unreadCount).toBe(unreadAfter(benHistory, ben, benHistory.map((m) => m.sender.id).lastIndexOf(ben.id)));
  });

  it("should derive each subscriber's row from their own read state, reading the missing ones in one query", async () => {
    const s = await createTestServer();
    const [alice, bob, carol, dave] = await users(s.url, 4);
    const g = await groupWith(s.url, alice, 'Readers', [bob, carol, dave]);
    const c = { groupId: g };
    const m: string[] = [];
    for (let i = 0; i < 3; i++) m.push((await send(s.url, alice.token, { groupId: g, content: `m${i}` })).id);
    await ok(gql(s.url, MARK, { c, m: m[2] }, bob.token));
    await ok(gql(s.url, MARK, { c, m: m[0] }, carol.token));
    const states = s.services.memberStates;
    states.clear();
    const [bs, cs, ds] = [await listen(s, bob, UPDATED), await listen(s, carol, UPDATED), await listen(s, dave, UPDATED)];

    const loads = states.loads;
    const m3 = await send(s.url, alice.token, { groupId: g, content: 'm3' });
    const unread = async (n: number) => Promise.all([bs, cs, ds].map(async (sub) => (await sub.nth(n)).conversationUpdated.unreadCount));
    expect(await unread(1)).toEqual([1, 3, 4]);
    expect((await ds.nth(1)).conversationUpdated).toMatchObject({ lastReadMessageId: null, lastMessage: { id: m3.id } });
    expect(states.loads - loads).toBe(1);
    await send(s.url, alice.token, { groupId: g, content: 'm4' });
    expect(await unread(2)).toEqual([2, 4, 5]);
    // Carol's marker moves (her event carries her new state), then the next message counts from it: no query.
    expect((await ok(gql(s.url, MARK, { c, m: m3.id }, carol.token))).markRead.unreadCount).toBe(1);
    expect((await cs.nth(3)).conversationUpdated).toMatchObject({ unreadCount: 1, lastReadMessageId: m3.id });
    await send(s.url, alice.token, { groupId: g, content: 'm5' });
    expect(await Promise.all([bs.nth(3), cs.nth(4), ds.nth(3)].map(async (v) => (await v).conversationUpdated.unreadCount))).toEqual([3, 2, 6]);
    expect(states.loads - loads).toBe(1);
    // Bob and Dave got nothing of Carol's marker.
    expect(bs.values).toHaveLength(3);
    expect(ds.values).toHaveLength(3);
  });

  it('should forget a read state that no event would keep current: a membership left and taken again, a friendship ended and renewed', async () => {
    const s = await createTestServer();
    const [alice, bob] = await users(s.url, 2);
    const g = await groupWith(s.url, alice, 'Again', [bob]);
    await befriend(s.url, alice, bob);
    const sidebar = await listen(s, bob, UPDATED);
    for (const n of [1, 2]) await send(s.url, alice.token, { groupId: g, content: `g${n}` });
    for (const n of [1, 2]) await send(s.url, alice.token, { toUserId: bob.id, content: `d${n}` });
    expect((await sidebar.nth(4)).conversationUpdated.unreadCount).toBe(2);
    expect(s.services.memberStates.get(bob.id, `g:${g}`)).toBeDefined();

    // Bob leaves with two unread and comes back: his new row is read up to the head.
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, bob.token));
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, bob.token));
    await eventually(async () => s.services.groups.isMemberCached(bob.id, g));
    const g3 = await send(s.url, alice.token, { groupId: g, content: 'g3' });
    expect((await sidebar.nth(5)).conversationUpdated).toMatchObject({ id: `g:${g}`, unreadCount: 1, lastMessage: { id: g3.id } });
    // The same for a direct conversation: unfriended with two unread, friends again, read up to the head.
    await ok(gql(s.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: alice.id }, bob.token));
    await befriend(s.url, alice, bob);
    const d3 = await send(s.url, alice.token, { toUserId: bob.id, content: 'd3' });
    expect((await sidebar.nth(6)).conversationUpdated).toMatchObject({ unreadCount: 1, lastMessage: { id: d3.id } });
  });

  it('should come out of the head migration with every row as it was: unread, marker, last message, order', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = await users(s.url, 3);
    await befriend(s.url, alice, bob);
    const g = await groupWith(s.url, alice, 'Old group', [bob, carol]);
    const p = (await buildProject(s.url, alice, { participants: [bob, carol] })).id;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await send(s.url, alice.token, { groupId: g, content: `g${i}` })).id);
    await send(s.url, carol.token, { groupId: g, content: 'carol' });
    const secret = await send(s.url, alice.token, { projectId: p, toUserId: bob.id, content: 'secret' });
    await send(s.url, carol.token, { projectId: p, content: 'open' });
    await send(s.url, alice.token, { projectId: p, toUserId: bob.id, content: 'secret 2' });
    await send(s.url, carol.token, { projectId: p, toUserId: alice.id, content: 'not for bob' });
    await send(s.url, alice.token, { toUserId: bob.id, content: 'direct' });
    await ok(gql(s.url, MARK, { c: { groupId: g }, m: ids[1] }, bob.token));
    await ok(gql(s.url, MARK, { c: { projectId: p }, m: secret.id }, bob.token));
    const sidebar = async (u: TestUser) => (await ok(gql(s.url, CONVERSATIONS, {}, u.token))).conversations.edges.map((e: any) => e.node);
    const before = await Promise.all([alice, bob, carol].map(sidebar));
    expect(before[1].map((r: any) => r.unreadCount)).toEqual([1, 2, 3, 0]);

    const heads = migrationsList.find((m) => m.name.endsWith('_ConversationHeads'))!.name;
    const migrator = s.database.orm.getMigrator();
    await migrator.down({ migrations: [heads] });
    // The old rows, as the old design kept them: its unread count is what a count over messages says.
    const old = await sql(
      s.env.DATABASE_URL!,
      `select cm.unread_count, (select count(*)::int from messages m where m.conversation_key = cm.conversation_key and m.sender_id <> cm.user_id
         and (m.recipient_id is null or m.project_id is null or m.recipient_id = cm.user_id)
         and (cm.last_read_at is null or (m.created_at, m.id) > (cm.last_read_at, cm.last_read_message_id))) as counted
       from conversation_members cm`,
    );
    expect(old.length).toBeGreaterThan(8);
    for (const r of old) expect(r.unread_count).toBe(r.counted);
    await migrator.up({ migrations: [heads] });
    expect(await Promise.all([alice, bob, carol].map(sidebar))).toEqual(before);
  });
});

describeRedis('conversationUpdated through Redis', () => {
  it("should not derive a row from the read state of a user who was away from this instance", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob] = await users(a.url, 2);
    const g = await groupWith(a.url, alice, 'Away', [bob]);
    const first = wsClient(a.wsUrl, bob.token);
    await first.connected;
    const sidebar = subscribe(first, UPDATED);
    await sleep(150);
    await send(a.url, alice.token, { groupId: g, content: 'one' });
    const two = await send(a.url, alice.token, { groupId: g, content: 'two' });
    expect((await sidebar.nth(2)).conversationUpdated.unreadCount).toBe(2);
    // Bob leaves A; on B (where A, with no one of the group left, doesn't hear of it) he reads everything.
    await first.dispose();
    await eventually(() => !a.services.memberships.isLocal(bob.id));
    expect((await ok(gql(b.url, MARK, { c: { groupId: g } }, bob.token))).markRead).toEqual({ unreadCount: 0, lastReadMessageId: two.id });
    const again = await listen(a, bob, UPDATED);
    await send(a.url, alice.token, { groupId: g, content: 'three' });
    expect((await again.nth(1)).conversationUpdated.unreadCount).toBe(1);
  });

  it("should not grow with the conversation's members", async () => {
    const s = await createTestServer();
    const [alice, bob, ...rest] = await users(s.url, 12);
    const lobby = await lobbyOf(s.url, alice.token);
    const small = await groupWith(s.url, alice, 'Tiny', [bob]);
    const redis = new Redis(process.env.REDIS_URL!);
    const published: string[] = [];
    try {
      // Every conversation channel; the envelope names the topic.
      redis.on('pmessage', (_pattern, _channel, message) => JSON.parse(message).topic === Topic.ConversationUpdated && published.push(message));
      await redis.psubscribe(`${CONVERSATION_CHANNELS}:*`);
      await send(s.url, alice.token, { groupId: small, content: 'same text' });
      await send(s.url, alice.token, { groupId: lobby, content: 'same text' });
      await eventually(() => published.length === 2);
    } finally {
      redis.disconnect();
    }
    const [toTwo, toTwelve] = published.map((m) => JSON.parse(m).payload);
    expect([toTwo.conversationKey, toTwelve.conversationKey]).toEqual([`g:${small}`, `g:${lobby}`]);
    for (const p of [toTwo, toTwelve]) expect(Object.keys(p.members)).toEqual([alice.id]);
    // The same ids, times and text: only the titles differ ('Tiny', 'Lobby').
    expect(Math.abs(published[1].length - published[0].length)).toBeLessThanOrEqual(8);
    expect(rest).toHaveLength(10);
  });
});
