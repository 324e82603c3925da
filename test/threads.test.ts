import { createClient, type Client } from 'graphql-sse';
import { codeOf, eventually, gql, listen, ok, running, sleep, subscribe } from './helpers/graphql';
import { createTestServer, type TestServer } from './helpers/server';
import { befriend, buildProject, groupWith, request, sendMessage, signup, type TestUser } from './helpers/factories';
import { MarkThreadReadDocument, ThreadDocument, ThreadsDocument } from '../generated/client/graphql';
import { snapshot, sql, whileHolding } from './helpers/db';
import { Migration20261127060000_ThreadParticipantOrder } from '../src/migrations/Migration20261127060000_ThreadParticipantOrder';
import { startReceiver } from './helpers/webhook-receiver';

const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id content parentId replyCount conversationId } }';
const HISTORY = 'query($c: ConversationInput!) { history(conversation: $c, last: 50) { totalCount edges { node { id parentId replyCount lastReplyAt threadParticipants { id } } } } }';
const SIDEBAR = '{ conversations(first: 20) { edges { node { id unreadCount lastMessage { id } } } } }';
const ADDED = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id content parentId } }';
const EVENTS = 'subscription($c: ConversationInput) { messageEvent(conversation: $c) { kind message { id replyCount lastReplyAt threadParticipants { id } } } }';

const reply = (s: TestServer, u: TestUser, input: Record<string, unknown>) => ok(gql(s.url, SEND, { i: input }, u.token)).then((d) => d.sendMessage);

const clients = new Set<Client>();
afterEach(() => {
  for (const c of clients) c.dispose();
  clients.clear();
});

describe('threads', () => {
  it('should keep replies in their thread: out of history and the sidebar, counted on the root, paged oldest first, a reply to a reply on the root', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Threads', [bob, carol]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'release on friday?' });
    const sidebarBefore = (await ok(gql(s.url, SIDEBAR, {}, carol.token))).conversations.edges;

    const r1 = await reply(s, bob, { groupId: g, content: 'yes', parentId: root.id });
    expect(r1).toMatchObject({ parentId: root.id, replyCount: 0, conversationId: root.conversationId });
    // A reply to a reply joins the root's thread.
    const r2 = await reply(s, carol, { groupId: g, content: 'agreed', parentId: r1.id });
    expect(r2.parentId).toBe(root.id);
    const r3 = await reply(s, alice, { groupId: g, content: 'shipping it', parentId: root.id, alsoInConversation: true });

    const history = (await ok(gql(s.url, HISTORY, { c: { groupId: g } }, carol.token))).history;
    expect(history.edges.map((e: any) => e.node.id)).toEqual([root.id, r3.id]);
    expect(history.totalCount).toBe(2);
    const rootNode = history.edges[0].node;
    expect(rootNode).toMatchObject({ replyCount: 3, parentId: null, threadParticipants: [{ id: alice.id }, { id: bob.id }, { id: carol.id }] });
    expect(rootNode.lastReplyAt).toEqual(expect.any(String));
    expect(history.edges[1].node.parentId).toBe(root.id);


    // The sidebar: replies kept in the thread neither count nor show; one also sent to the conversation does.
    const sidebar = (await ok(gql(s.url, SIDEBAR, {}, carol.token))).conversations.edges.find((e: any) => e.node.id === root.conversationId).node;
    expect(sidebarBefore.find((e: any) => e.node.id === root.conversationId).node.unreadCount).toBe(1);
    expect(sidebar).toEqual({ id: root.conversationId, unreadCount: 2, lastMessage: { id: r3.id } });
    // The read marker stays on the timeline: a reply kept in its thread is markThreadRead's; one also in the conversation may hold it.
    const MARK = 'mutation($c: ConversationInput!, $m: ID) { markRead(conversation: $c, messageId: $m) { unreadCount lastReadMessageId } }';
    const refused = await gql(s.url, MARK, { c: { groupId: g }, m: r2.id }, carol.token);
    expect([codeOf(refused), refused.errors?.[0]?.extensions?.field]).toEqual(['BAD_USER_INPUT', 'messageId']);
    expect((await ok(gql(s.url, SIDEBAR, {}, carol.token))).conversations.edges.find((e: any) => e.node.id === root.conversationId).node.unreadCount).toBe(2);
    expect((await ok(gql(s.url, MARK, { c: { groupId: g }, m: root.id }, carol.token))).markRead).toEqual({ unreadCount: 1, lastReadMessageId: root.id });

    const page = (await request(s.url, ThreadDocument, { messageId: root.id }, bob.token)).thread;
    expect(page.edges.map((e) => e.node.id)).toEqual([r1.id, r2.id, r3.id]);
    const first = (await request(s.url, ThreadDocument, { messageId: root.id, first: 2 }, bob.token)).thread;
    expect(first.edges.map((e) => e.node.id)).toEqual([r1.id, r2.id]);
    expect(first.pageInfo.hasNextPage).toBe(true);
    const next = (await request(s.url, ThreadDocument, { messageId: root.id, first: 2, after: first.pageInfo.endCursor }, bob.token)).thread;
    expect(next.edges.map((e) => e.node.id)).toEqual([r3.id]);
    const back = (await request(s.url, ThreadDocument, { messageId: root.id, last: 1, before: next.edges[0].cursor }, bob.token)).thread;
    expect(back.edges.map((e) => e.node.id)).toEqual([r2.id]);
    // A reply names its root's thread.
    expect((await request(s.url, ThreadDocument, { messageId: r2.id }, bob.token)).thread.edges).toHaveLength(3);
  });

  it("should list a thread's participants in the order they first replied, a follower who replied late last, as its events do", async () => {
    const s = await createTestServer();
    const [alice, bob, dan, eve] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Who', [bob, dan, eve]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'who is in?' });
    const events = await listen(s, alice, EVENTS, { c: { groupId: g } });
    // eve follows first (markThreadRead), then replies last.
    await ok(gql(s.url, 'mutation($m: ID!) { markThreadRead(messageId: $m) { id } }', { m: root.id }, eve.token));
    for (const u of [bob, dan, eve]) await reply(s, u, { groupId: g, content: 'me', parentId: root.id });
    const order = [{ id: alice.id }, { id: bob.id }, { id: dan.id }, { id: eve.id }];
    expect((await events.nth(3)).messageEvent.message.threadParticipants).toEqual(order);
    const queried = (await ok(gql(s.url, HISTORY, { c: { groupId: g } }, alice.token))).history.edges[0].node;
    expect(queried.threadParticipants).toEqual(order);
    // A thread an earlier release kept at the time eve began to follow: the migration moves her to her reply.
    await sql(s.env.DATABASE_URL!, "update thread_members set joined_at = (select created_at from messages where id = $1) + interval '1 millisecond' where root_id = $1 and user_id = $2", [root.id, eve.id]);
    const before = (await ok(gql(s.url, HISTORY, { c: { groupId: g } }, alice.token))).history.edges[0].node.threadParticipants;
    expect(before).toEqual([order[0], order[3], order[1], order[2]]);
    const statements: string[] = [];
    const migration = Object.assign(Object.create(Migration20261127060000_ThreadParticipantOrder.prototype), { addSql: (q: string) => statements.push(q) });
    await migration.up();
    for (const q of statements) await sql(s.env.DATABASE_URL!, q);
    expect((await ok(gql(s.url, HISTORY, { c: { groupId: g } }, alice.token))).history.edges[0].node.threadParticipants).toEqual(order);
  });

  it('should refuse bad replies with the right code and change nothing', async () => {
    const s = await createTestServer();
    const [alice, bob, eve] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'A', [bob]);
    const other = await groupWith(s.url, alice, 'B', [bob]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root' });
    const elsewhere = await sendMessage(s.url, alice.token, { groupId: other, content: 'elsewhere' });
    const gone = await sendMessage(s.url, alice.token, { groupId: g, content: 'to delete' });
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: gone.id }, alice.token));
    const p = await buildProject(s.url, alice, { participants: [bob] });
    const priv = await sendMessage(s.url, bob.token, { projectId: p.id, toUserId: alice.id, content: 'between us' });
    const before = await snapshot(s.env.DATABASE_URL!);
    const send = (u: TestUser, i: Record<string, unknown>) => gql(s.url, SEND, { i }, u.token);
    expect(codeOf(await send(bob, { groupId: g, content: 'x', parentId: elsewhere.id }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await send(bob, { groupId: g, content: 'x', parentId: gone.id }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await send(bob, { groupId: g, content: 'x', parentId: 'not-an-id' }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await send(bob, { groupId: g, content: 'x', parentId: '00000000-0000-4000-8000-000000000000' }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await send(bob, { groupId: g, content: 'x', parentId: elsewhere.id, alsoInConversation: true }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await send(bob, { groupId: g, content: 'x', parentId: gone.id, alsoInConversation: true }))).toBe('BAD_USER_INPUT');
    // A private project message has no thread, in the open project nor in its private one.
    expect(codeOf(await send(alice, { projectId: p.id, content: 'x', parentId: priv.id }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await send(alice, { projectId: p.id, toUserId: bob.id, content: 'x', parentId: priv.id }))).toBe('BAD_USER_INPUT');
    // Who may send is told first.
    expect(codeOf(await send(eve, { groupId: g, content: 'x', parentId: root.id }))).toBe('FORBIDDEN');
    expect(codeOf(await send(bob, { groupId: g, content: '', parentId: root.id }))).toBe('BAD_USER_INPUT');
    // Reading: NOT_FOUND for a thread the viewer can't see; a threadId of another conversation.
    expect(codeOf(await gql(s.url, '{ thread(messageId: "' + root.id + '") { edges { cursor } } }', {}, eve.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, 'mutation($m: ID!) { markThreadRead(messageId: $m) { id } }', { m: root.id }, eve.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, '{ thread(messageId: "' + root.id + '", first: 1, last: 1) { edges { cursor } } }', {}, bob.token))).toBe('BAD_USER_INPUT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Nor is there one to read or to stream, in either of the project's conversations.
    expect(codeOf(await gql(s.url, '{ thread(messageId: "' + priv.id + '") { totalCount } }', {}, alice.token))).toBe('BAD_USER_INPUT');
    const open = await sendMessage(s.url, alice.token, { projectId: p.id, content: 'open' });
    const client = (await listen(s, bob, 'subscription { messageAdded { id } }')).ws.client;
    for (const c of [{ groupId: g, threadId: elsewhere.id }, { projectId: p.id, threadId: priv.id }, { projectId: p.id, userId: alice.id, threadId: priv.id }, { projectId: p.id, userId: alice.id, threadId: open.id }]) {
      const sub = subscribe({ client }, ADDED, { c });
      await sub.done;
      expect([c, JSON.stringify(sub.errors)]).toEqual([c, expect.stringMatching(/BAD_USER_INPUT/)]);
    }
  });

  it('should refuse a reply also in the conversation whose root a deletion took after the reply read it, and tell DELETED last', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Reply against deletion', [bob]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root, going' });
    // The deletion holds the root's row, not yet committed: the reply reads the root as it was, then waits.
    const tombstone = 'update messages set content = null, deleted_at = now(), version = version + 1 where id = $1';
    const r = await whileHolding(s.env.DATABASE_URL!, [[tombstone, [root.id]]], () => gql(s.url, SEND, { i: { groupId: g, content: 'too late', parentId: root.id, alsoInConversation: true } }, bob.token));
    // Before, it was stored and counted on the tombstone (an outside probe, 5-8 of 40 racing rounds).
    expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'parentId']);
    expect(await sql(s.env.DATABASE_URL!, 'select reply_count from messages where id = $1', [root.id])).toEqual([{ reply_count: 0 }]);
    expect(await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from messages where parent_id = $1', [root.id])).toEqual([{ n: 0 }]);
  });

  it('should take the head before the root for a reply also in the conversation, as kept replies do: mixed replies to one root at once all land', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Replies at once', [bob, carol]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root' });
    const [{ conversation_key: key }] = await sql(s.env.DATABASE_URL!, 'select conversation_key from messages where id = $1', [root.id]);
    // As a kept reply's statement: the head held, the root next. The reply also in the conversation
    // waits for the head without holding the root (before, it held the root first: a deadlock).
    const r = await whileHolding(
      s.env.DATABASE_URL!,
      [['select 1 from conversation_heads where conversation_key = $1 for update', [key]]],
      () => gql(s.url, SEND, { i: { groupId: g, content: 'also', parentId: root.id, alsoInConversation: true } }, bob.token),
      [['select 1 from messages where id = $1 for no key update nowait', [root.id]]],
    );
    expect(r.errors).toBeUndefined();
    // Thirty at once, every fourth also in the conversation: before, 1-3 came back SERVICE_UNAVAILABLE (an outside probe, 6 of 6).
    const users = [alice, bob, carol];
    const sent = await Promise.all(
      Array.from({ length: 30 }, (_, i) => gql(s.url, SEND, { i: { groupId: g, content: `r${i}`, parentId: root.id, alsoInConversation: i % 4 === 0 } }, users[i % 3].token)),
    );
    expect(sent.map((x) => codeOf(x) ?? 'ok')).toEqual(Array(30).fill('ok'));
    expect(await sql(s.env.DATABASE_URL!, 'select reply_count from messages where id = $1', [root.id])).toEqual([{ reply_count: 31 }]);
  });

  it('should answer a rate-limited reply with RATE_LIMITED and write nothing', async () => {
    const s = await createTestServer({ RATE_LIMIT_SEND_MESSAGE: '2/1m' });
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Limits', [bob]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root' });
    await reply(s, bob, { groupId: g, content: 'one', parentId: root.id });
    await reply(s, bob, { groupId: g, content: 'two', parentId: root.id });
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, SEND, { i: { groupId: g, content: 'three', parentId: root.id } }, bob.token))).toBe('RATE_LIMITED');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(s.url, HISTORY, { c: { groupId: g } }, alice.token))).history.edges[0].node.replyCount).toBe(2);
  });

  it('should stream one thread with threadId (WebSocket and SSE), leave its replies out of the timeline stream, and raise THREAD_UPDATED on the root', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Live', [bob]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root' });
    const timeline = await listen(s, alice, ADDED, { c: { groupId: g } });
    const thread = await listen(s, alice, ADDED, { c: { groupId: g, threadId: root.id } });
    const events = await listen(s, alice, EVENTS, { c: { groupId: g } });
    const ticket = (await ok(gql(s.url, 'mutation { streamTicket }', {}, alice.token))).streamTicket;
    expect(ticket).toEqual(expect.any(String));
    const sse = createClient({ url: `${s.url}/stream`, fetchFn: fetch, retryAttempts: 0, headers: { authorization: `Bearer ${alice.token}` } });
    clients.add(sse);
    const sseThread = subscribe<any>({ client: sse }, ADDED, { c: { groupId: g, threadId: root.id } });
    // Both WebSocket subscriptions and the SSE one run before anything is sent.
    await running(s, 'messageAdded', 3);

    const r1 = await reply(s, bob, { groupId: g, content: 'in thread', parentId: root.id });
    const plain = await sendMessage(s.url, bob.token, { groupId: g, content: 'in timeline' });
    const r2 = await reply(s, bob, { groupId: g, content: 'both', parentId: root.id, alsoInConversation: true });

    expect((await thread.nth(2)).messageAdded).toEqual({ id: r2.id, content: 'both', parentId: root.id });
    expect(thread.values.map((v: any) => v.messageAdded.id)).toEqual([r1.id, r2.id]);
    expect((await sseThread.nth(2)).messageAdded.id).toBe(r2.id);
    expect(sseThread.values.map((v: any) => v.messageAdded.id)).toEqual([r1.id, r2.id]);
    expect((await timeline.nth(2)).messageAdded.id).toBe(r2.id);
    expect(timeline.values.map((v: any) => v.messageAdded.id)).toEqual([plain.id, r2.id]);

    const e2 = (await events.nth(2)).messageEvent;
    expect((await events.nth(1)).messageEvent).toMatchObject({ kind: 'THREAD_UPDATED', message: { id: root.id, replyCount: 1, threadParticipants: [{ id: alice.id }, { id: bob.id }] } });
    expect(e2).toMatchObject({ kind: 'THREAD_UPDATED', message: { id: root.id, replyCount: 2, threadParticipants: [{ id: alice.id }, { id: bob.id }] } });
    expect(e2.message.lastReplyAt).toEqual(expect.any(String));
  });

  it('should list every thread I take part in, latest reply first, each saying whether it has replies I have not read', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Unread', [bob, carol]);
    const t1 = await sendMessage(s.url, alice.token, { groupId: g, content: 'first topic' });
    const t2 = await sendMessage(s.url, alice.token, { groupId: g, content: 'second topic' });
    // A root nobody answered is no thread yet.
    await sendMessage(s.url, alice.token, { groupId: g, content: 'third topic' });
    await reply(s, bob, { groupId: g, content: 'on t1', parentId: t1.id });
    await reply(s, bob, { groupId: g, content: 'on t2', parentId: t2.id });
    await reply(s, bob, { groupId: g, content: 'on t1 again', parentId: t1.id });

    const listed = async (u: TestUser) => {
      const { threads } = await request(s.url, ThreadsDocument, {}, u.token);
      return threads.edges.map((e) => [e.node.id, e.node.replyCount, e.node.hasUnreadReplies]);
    };
    expect(await listed(alice)).toEqual([
      [t1.id, 2, true],
      [t2.id, 1, true],
    ]);
    // bob took part by replying, and has read his own replies; carol takes part in nothing.
    expect(await listed(bob)).toEqual([
      [t1.id, 2, false],
      [t2.id, 1, false],
    ]);
    expect(await listed(carol)).toEqual([]);
    const paged = (await request(s.url, ThreadsDocument, { first: 1 }, alice.token)).threads;
    expect(paged.pageInfo.hasNextPage).toBe(true);
    expect((await request(s.url, ThreadsDocument, { first: 1, after: paged.pageInfo.endCursor }, alice.token)).threads.edges.map((e) => e.node.id)).toEqual([t2.id]);
    expect((await ok(gql(s.url, '{ threads { totalCount } }', {}, alice.token))).threads.totalCount).toBe(2);

    // Read, a thread stays listed; the field says so wherever the root shows.
    expect((await request(s.url, MarkThreadReadDocument, { messageId: t1.id }, alice.token)).markThreadRead).toMatchObject({ id: t1.id, replyCount: 2 });
    expect(await listed(alice)).toEqual([
      [t1.id, 2, false],
      [t2.id, 1, true],
    ]);
    const inHistory = (await ok(gql(s.url, '{ history(conversation: { groupId: "' + g + '" }, last: 5) { edges { node { id hasUnreadReplies } } } }', {}, alice.token))).history.edges;
    expect(inHistory.map((e: any) => e.node.hasUnreadReplies)).toEqual([false, true, false]);
    // A new reply makes it unread again; carol, having marked it read, takes part in it now.
    await request(s.url, MarkThreadReadDocument, { messageId: t1.id }, carol.token);
    expect(await listed(carol)).toEqual([[t1.id, 2, false]]);
    await reply(s, bob, { groupId: g, content: 'more', parentId: t1.id });
    expect(await listed(alice)).toEqual([
      [t1.id, 3, true],
      [t2.id, 1, true],
    ]);
    expect(await listed(carol)).toEqual([[t1.id, 3, true]]);
    // Out of the group, out of the list.
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, carol.token));
    expect(await listed(carol)).toEqual([]);
  });

  it("should tell each subscriber of a THREAD_UPDATED whether they have replies to read there", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Unread live', [bob, carol]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'topic' });
    const UNREAD_EVENTS = 'subscription($c: ConversationInput) { messageEvent(conversation: $c) { kind message { id replyCount hasUnreadReplies } } }';
    const [forAlice, forBob, forCarol] = await Promise.all([alice, bob, carol].map((u) => listen(s, u, UNREAD_EVENTS, { c: { groupId: g } })));
    await reply(s, bob, { groupId: g, content: 'answer', parentId: root.id });
    // The root's author follows it and has not read bob's reply; bob has; carol takes no part.
    const seen = await Promise.all([forAlice, forBob, forCarol].map(async (sub) => (await sub.nth(1)).messageEvent.message));
    expect(seen).toEqual([
      { id: root.id, replyCount: 1, hasUnreadReplies: true },
      { id: root.id, replyCount: 1, hasUnreadReplies: false },
      { id: root.id, replyCount: 1, hasUnreadReplies: false },
    ]);
  });

  it('should thread direct and project conversations, a project member outside a private thread seeing nothing of it', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const d = await sendMessage(s.url, alice.token, { toUserId: bob.id, content: 'lunch?' });
    const dr = await reply(s, bob, { toUserId: alice.id, content: 'sure', parentId: d.id });
    expect(dr.parentId).toBe(d.id);
    expect((await request(s.url, ThreadDocument, { messageId: d.id }, alice.token)).thread.edges.map((e) => e.node.id)).toEqual([dr.id]);
    expect((await ok(gql(s.url, HISTORY, { c: { userId: bob.id } }, alice.token))).history.edges.map((e: any) => e.node.id)).toEqual([d.id]);
    expect(codeOf(await gql(s.url, '{ thread(messageId: "' + d.id + '") { edges { cursor } } }', {}, carol.token))).toBe('NOT_FOUND');

    const p = await buildProject(s.url, alice, { participants: [bob, carol] });
    const open = await sendMessage(s.url, carol.token, { projectId: p.id, content: 'brief' });
    const pr = await reply(s, bob, { projectId: p.id, content: 'read it', parentId: open.id });
    expect((await request(s.url, ThreadDocument, { messageId: open.id }, carol.token)).thread.edges.map((e) => e.node.id)).toEqual([pr.id]);
    expect((await request(s.url, ThreadsDocument, {}, carol.token)).threads.edges.map((e) => e.node.id)).toEqual([open.id]);
    // The open project's reply can't go into a private thread, nor a private one's into the open project.
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, SEND, { i: { projectId: p.id, toUserId: carol.id, content: 'x', parentId: open.id } }, bob.token))).toBe('BAD_USER_INPUT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it('should notify away followers of a reply with THREAD_REPLY, a mentioned one with MENTION, and the rest only for a reply also in the conversation', async () => {
    const receiver = await startReceiver();
    try {
      const s = await createTestServer(
        { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: 'whsec_test_0123456789abcdef', WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' },
        { jobs: true },
      );
      const [alice, bob, carol, dave] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
      const g = await groupWith(s.url, alice, 'Notify', [bob, carol, dave]);
      const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root' });
      // Every member's event for the root first, so that what follows is the reply's alone.
      await eventually(() => [bob, carol, dave].every((u) => receiver.of(u.id).length === 1), 15_000);
      receiver.got.length = 0;
      await reply(s, bob, { groupId: g, content: `noted @${carol.username}`, parentId: root.id });
      await eventually(() => receiver.of(alice.id).length === 1 && receiver.of(carol.id).length === 1, 15_000);
      await sleep(1500);
      expect(receiver.of(alice.id).map((e) => [e.body.kind, e.body.preview])).toEqual([['THREAD_REPLY', `noted @${carol.username}`]]);
      expect(receiver.of(carol.id).map((e) => e.body.kind)).toEqual(['MENTION']);
      // dave follows nothing: a reply kept in its thread is not his.
      expect(receiver.of(dave.id)).toEqual([]);
      expect(receiver.of(bob.id)).toEqual([]);
      await reply(s, carol, { groupId: g, content: 'for everyone', parentId: root.id, alsoInConversation: true });
      await eventually(() => receiver.of(dave.id).length === 1 && receiver.of(bob.id).length === 1, 15_000);
      expect(receiver.of(dave.id)[0].body.kind).toBe('MESSAGE');
      expect(receiver.of(bob.id)[0].body.kind).toBe('THREAD_REPLY');
    } finally {
      await receiver.close();
    }
  }, 60_000);
});
