import { Redis } from 'ioredis';
import { eventually, gql, listen, ok, running, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, redisName, type TestServer } from './helpers/server';
import { befriend, buildProject, groupWith, lobbyOf, sendMessage, signup, type TestUser } from './helpers/factories';
import { sql } from './helpers/db';
import { migrationsList } from '../src/migrations';
import { directKey } from '../src/modules/conversation/conversation.keys';
import { CONVERSATION_CHANNELS, Topic, type ConversationUpdatedPayload } from '../src/shared/pubsub/topics';
import { eventsOf } from '../src/shared/pubsub/pubsub';

const CONVERSATION = 'query($c: ConversationInput!) { conversation(conversation: $c) { id unreadCount lastReadMessageId lastMessage { id } } }';
const CONVERSATIONS = 'query { conversations(first: 50) { edges { node { id unreadCount lastReadMessageId updatedAt lastMessage { id } } } } }';
const MARK = 'mutation($c: ConversationInput!, $m: ID) { markRead(conversation: $c, messageId: $m) { unreadCount lastReadMessageId } }';
const HISTORY = 'query($c: ConversationInput!) { history(conversation: $c, last: 100) { edges { node { id sender { id } } } } }';
const UPDATED = 'subscription { conversationUpdated { id peer { id } unreadCount lastReadMessageId lastMessage { id } } }';

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

const ACTIVITY = 'coalesce(greatest(h.activity_at, cm.private_at), cm.joined_at)';

/** A user's conversation keys in the order their heads give: what a sidebar must show, computed the long way. */
async function sidebarByHeads(s: TestServer, userId: string): Promise<string[]> {
  const rows = await sql(
    s.env.DATABASE_URL!,
    `select cm.conversation_key from conversation_members cm left join conversation_heads h on h.conversation_key = cm.conversation_key
     where cm.user_id = $1 order by ${ACTIVITY} desc, cm.conversation_key desc`,
    [userId],
  );
  return rows.map((r) => r.conversation_key);
}

/** Rows whose sort key is set but differs from what their head gives (a key set is a promise to be exact). */
async function staleSortKeys(s: TestServer): Promise<{ conversation_key: string; user_id: string }[]> {
  return sql(
    s.env.DATABASE_URL!,
    `select cm.conversation_key, cm.user_id from conversation_members cm left join conversation_heads h on h.conversation_key = cm.conversation_key
     where cm.sort_at is not null and cm.sort_at <> ${ACTIVITY}`,
  );
}

const keyedRows = async (s: TestServer, key: string): Promise<number> =>
  (await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from conversation_members where conversation_key = $1 and sort_at is not null', [key]))[0].n;

/** The user's whole sidebar through the API, two conversations a page. */
async function pagedSidebar(s: TestServer, u: TestUser): Promise<string[]> {
  const ids: string[] = [];
  for (let after: string | null = null; ; ) {
    const page: any = (await ok(gql(s.url, 'query($a: String) { conversations(first: 2, after: $a) { edges { node { id } } pageInfo { hasNextPage endCursor } } }', { a: after }, u.token))).conversations;
    ids.push(...page.edges.map((e: any) => e.node.id));
    if (!page.pageInfo.hasNextPage) return ids;
    after = page.pageInfo.endCursor;
  }
}

const row = async (s: TestServer, u: TestUser, c: Record<string, string>) => (await ok(gql(s.url, CONVERSATION, { c }, u.token))).conversation;

/** Messages of the conversation as `u` sees them, oldest first. */
async function historyOf(s: TestServer, u: TestUser, c: Record<string, string>): Promise<{ id: string; sender: { id: string } }[]> {
  return (await ok(gql(s.url, HISTORY, { c }, u.token))).history.edges.map((e: any) => e.node);
}

/** Unread after a marker at index `at` of the viewer's history (-1: none): the messages from others after it. */
const unreadAfter = (history: { sender: { id: string } }[], u: TestUser, at: number) => history.slice(at + 1).filter((m) => m.sender.id !== u.id).length;

describe('conversations at scale', () => {
  it("should write the head and the sender's row per message past SIDEBAR_FANOUT_MAX members, every member's sort key below it", async () => {
    const s = await createTestServer({ SIDEBAR_FANOUT_MAX: '3' });
    const [alice, bob, ...rest] = await users(s.url, 12);
    const lobby = await lobbyOf(s.url, alice.token);
    const small = await groupWith(s.url, alice, 'Two', [bob]);
    // Two members: both rows get the message's sort key.
    expect(await rowsWrittenWith(s, (await send(s.url, alice.token, { groupId: small, content: 'hi' })).id)).toEqual({ members: 2, heads: 1 });
    // Twelve: the head and the sender's row, the first time (the other rows are read, not written) and after.
    for (const content of ['one', 'two']) {
      const m = await send(s.url, alice.token, { groupId: lobby, content });
      expect(await rowsWrittenWith(s, m.id)).toEqual({ members: 1, heads: 1 });
    }
    expect((await row(s, rest[9], { groupId: lobby })).unreadCount).toBe(2);
    expect((await row(s, bob, { groupId: small })).unreadCount).toBe(1);
    expect((await row(s, alice, { groupId: lobby })).unreadCount).toBe(0);

    // A direct conversation's first message creates both rows; each next one writes both sort keys.
    await befriend(s.url, alice, bob);
    const first = await send(s.url, alice.token, { toUserId: bob.id, content: 'first' });
    expect(await rowsWrittenWith(s, first.id)).toEqual({ members: 2, heads: 1 });
    const reply = await send(s.url, bob.token, { toUserId: alice.id, content: 'reply' });
    expect(await rowsWrittenWith(s, reply.id)).toEqual({ members: 2, heads: 1 });
    expect((await row(s, alice, { userId: bob.id })).unreadCount).toBe(1);
  });

  it('should keep every sidebar in the order the heads give while conversations grow past SIDEBAR_FANOUT_MAX and shrink back', async () => {
    const s = await createTestServer({ SIDEBAR_FANOUT_MAX: '3' });
    const [alice, bob, carol, dave, erin] = await users(s.url, 5);
    const everyone = [alice, bob, carol, dave, erin];
    const g = await groupWith(s.url, alice, 'Grows', [bob]);
    const p = (await buildProject(s.url, alice, { participants: [bob, carol] })).id;
    await befriend(s.url, alice, bob);
    const lobby = await lobbyOf(s.url, alice.token);
    const join = (u: TestUser) => ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, u.token));
    const leave = (u: TestUser) => ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, u.token));
    const check = async (step: string) => {
      expect({ step, stale: await staleSortKeys(s) }).toEqual({ step, stale: [] });
      for (const u of everyone) expect({ step, user: u.id, order: await pagedSidebar(s, u) }).toEqual({ step, user: u.id, order: await sidebarByHeads(s, u.id) });
    };
    await check('no message yet');
    await send(s.url, alice.token, { groupId: g, content: 'g small' });
    await send(s.url, bob.token, { projectId: p, content: 'p open' });
    await send(s.url, alice.token, { toUserId: bob.id, content: 'dm' });
    await send(s.url, carol.token, { groupId: lobby, content: 'lobby' });
    expect(await keyedRows(s, `g:${g}`)).toBe(2);
    await check('small conversations keyed');
    await join(carol);
    await send(s.url, bob.token, { groupId: g, content: 'three now' });
    expect(await keyedRows(s, `g:${g}`)).toBe(3);
    await join(dave);
    await check('grown past the bound, before its next message');
    await send(s.url, dave.token, { groupId: g, content: 'four now' });
    expect(await keyedRows(s, `g:${g}`)).toBe(0);
    await check('grown past the bound');
    await send(s.url, alice.token, { projectId: p, toUserId: carol.id, content: 'private' });
    await send(s.url, carol.token, { projectId: p, toUserId: bob.id, content: 'private back' });
    await check('private project messages');
    await leave(dave);
    await send(s.url, erin.token, { groupId: lobby, content: 'lobby again' });
    await check('shrunk, before its next message');
    await send(s.url, carol.token, { groupId: g, content: 'three again' });
    expect(await keyedRows(s, `g:${g}`)).toBe(3);
    await send(s.url, bob.token, { toUserId: alice.id, content: 'dm back' });
    await check('shrunk back');
  });

  it('should leave no sort key behind when messages race each other and a join, and page through joins of one millisecond', async () => {
    const s = await createTestServer({ SIDEBAR_FANOUT_MAX: '3' });
    const [alice, bob, carol, dave] = await users(s.url, 4);
    await befriend(s.url, alice, bob);
    const g = await groupWith(s.url, alice, 'Race', [bob]);
    // Both sides of a direct conversation send its first messages at once; members send while others join.
    await Promise.all([
      ...[alice, bob].flatMap((u) => [1, 2, 3].map((i) => send(s.url, u.token, { toUserId: u === alice ? bob.id : alice.id, content: `dm ${i}` }))),
      ...[alice, bob].flatMap((u) => [1, 2, 3].map((i) => send(s.url, u.token, { groupId: g, content: `g ${i}` }))),
      ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, carol.token)),
      ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, dave.token)),
    ]);
    await send(s.url, carol.token, { groupId: g, content: 'after' });
    // Groups made at once, with no message: ordered by join times, often within one millisecond.
    await Promise.all([1, 2, 3, 4, 5, 6].map((i) => ok(gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: `quiet ${i}` }, dave.token))));
    expect(await staleSortKeys(s)).toEqual([]);
    for (const u of [alice, bob, carol, dave]) expect(await pagedSidebar(s, u)).toEqual(await sidebarByHeads(s, u.id));
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
    const [, g2] = [await send(s.url, alice.token, { groupId: g, content: 'g1' }), await send(s.url, alice.token, { groupId: g, content: 'g2' })];
    const d1 = await send(s.url, alice.token, { toUserId: bob.id, content: 'd1' });
    const d2 = await send(s.url, alice.token, { toUserId: bob.id, content: 'd2' });
    expect((await sidebar.nth(4)).conversationUpdated.unreadCount).toBe(2);
    expect(s.services.memberStates.get(bob.id, `g:${g}`)).toBeDefined();

    // Bob leaves with two unread and comes back: his new row is read up to the head.
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, bob.token));
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, bob.token));
    await eventually(async () => s.services.groups.isMemberCached(bob.id, g));
    // Told as it starts, then counted from there.
    expect((await sidebar.nth(5)).conversationUpdated).toMatchObject({ id: `g:${g}`, unreadCount: 0, lastMessage: { id: g2.id } });
    const g3 = await send(s.url, alice.token, { groupId: g, content: 'g3' });
    expect((await sidebar.nth(6)).conversationUpdated).toMatchObject({ id: `g:${g}`, unreadCount: 1, lastMessage: { id: g3.id } });
    // A direct conversation: Bob read d1 of two. Unfriended and friends again, his row comes back
    // read where he had read (the marker kept with the friendship's end), counted from there.
    expect((await ok(gql(s.url, MARK, { c: { userId: alice.id }, m: d1.id }, bob.token))).markRead.unreadCount).toBe(1);
    expect((await sidebar.nth(7)).conversationUpdated).toMatchObject({ unreadCount: 1, lastReadMessageId: d1.id });
    await ok(gql(s.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: alice.id }, bob.token));
    await befriend(s.url, alice, bob);
    // Back in his sidebar as it was kept, told to his sessions as a group joined again is.
    expect((await sidebar.nth(8)).conversationUpdated).toMatchObject({ id: directKey(alice.id, bob.id), peer: { id: alice.id }, unreadCount: 1, lastReadMessageId: d1.id, lastMessage: { id: d2.id } });
    const d3 = await send(s.url, alice.token, { toUserId: bob.id, content: 'd3' });
    expect((await sidebar.nth(9)).conversationUpdated).toMatchObject({ unreadCount: 2, lastReadMessageId: d1.id, lastMessage: { id: d3.id } });
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

    // Back to before the heads (the migrations since reverted, the latest first), data kept; then forward again.
    const since = migrationsList.slice(migrationsList.findIndex((m) => m.name.endsWith('_ConversationHeads'))).map((m) => m.name);
    const migrator = s.database.orm.getMigrator();
    for (const name of [...since].reverse()) await migrator.down({ migrations: [name] });
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
    await migrator.up({ migrations: since });
    expect(await Promise.all([alice, bob, carol].map(sidebar))).toEqual(before);
    // The sort keys the migration set are exact, and in use.
    expect(await staleSortKeys(s)).toEqual([]);
    expect(await keyedRows(s, `g:${g}`)).toBe(3);
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
    await running(a, 'conversationUpdated', 1);
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
      redis.on('pmessage', (_pattern, _channel, message) => eventsOf(JSON.parse(message)).some((e) => e.topic === Topic.ConversationUpdated) && published.push(message));
      await redis.psubscribe(redisName(`${CONVERSATION_CHANNELS}:*`));
      await send(s.url, alice.token, { groupId: small, content: 'same text' });
      await send(s.url, alice.token, { groupId: lobby, content: 'same text' });
      await eventually(() => published.length === 2);
    } finally {
      redis.disconnect();
    }
    const [toTwo, toTwelve] = published.map((m) => eventsOf(JSON.parse(m)).find((e) => e.topic === Topic.ConversationUpdated)!.payload as ConversationUpdatedPayload);
    expect([toTwo.conversationKey, toTwelve.conversationKey]).toEqual([`g:${small}`, `g:${lobby}`]);
    for (const p of [toTwo, toTwelve]) expect(Object.keys(p.members)).toEqual([alice.id]);
    // The same ids, times and text: only the titles differ ('Tiny', 'Lobby').
    expect(Math.abs(published[1].length - published[0].length)).toBeLessThanOrEqual(8);
    expect(rest).toHaveLength(10);
  });
});
