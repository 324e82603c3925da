import { codeOf, eventually, gql, listen, ok, running, sleep, subscribe } from './helpers/graphql';
import { snapshot } from './helpers/db';
import { createTestServer, type TestServer } from './helpers/server';
import { groupWith, sendMessage, signup, type TestUser } from './helpers/factories';

const BLOCK = 'mutation($id: ID!) { blockUser(userId: $id) }';
const UNBLOCK = 'mutation($id: ID!) { unblockUser(userId: $id) }';
const THREAD = 'query($m: ID!) { thread(messageId: $m, last: 50) { totalCount edges { node { id } } } }';
const THREADS = '{ threads(first: 50) { totalCount edges { node { id hasUnreadReplies } } } }';
const MENTIONS = '{ mentions(first: 50) { totalCount edges { node { id } } } }';
const BADGE = 'query($c: ConversationInput!) { conversation(conversation: $c) { unreadMentionCount } }';
const ADDED = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id } }';
const EVENTS = 'subscription($c: ConversationInput) { messageEvent(conversation: $c) { kind message { id replyCount } } }';

const reply = (s: TestServer, u: TestUser, groupId: string, parentId: string, content = 'a reply') => sendMessage(s.url, u.token, { groupId, content, parentId });
const ids = (conn: { edges: { node: { id: string } }[] }) => conn.edges.map((e) => e.node.id);

describe('block-threads', () => {
  it("should leave a blocked user's replies out of the blocker's thread pages and totalCount, keeping the root's global replyCount", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Block threads', [bob, carol]);
    const root = await sendMessage(s.url, alice.token, { groupId: g, content: 'root' });
    const c1 = await reply(s, carol, g, root.id);
    await reply(s, bob, g, root.id);
    const c2 = await reply(s, carol, g, root.id);
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));

    const page = (await ok(gql(s.url, THREAD, { m: root.id }, alice.token))).thread;
    expect({ ids: ids(page), totalCount: page.totalCount }).toEqual({ ids: [c1.id, c2.id], totalCount: 2 });
    // Carol blocks no one: she sees all three.
    expect((await ok(gql(s.url, THREAD, { m: root.id }, carol.token))).thread.totalCount).toBe(3);
    const history = await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c) { edges { node { id replyCount } } } }', { c: { groupId: g } }, alice.token));
    expect(history.history.edges.find((e: any) => e.node.id === root.id).node.replyCount).toBe(3);

    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    expect((await ok(gql(s.url, THREAD, { m: root.id }, alice.token))).thread.totalCount).toBe(3);
  });

  it("should leave out of the blocker's threads (and its totalCount) a thread whose root is the blocked user's, as history leaves the root out", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Roots', [bob, carol]);
    const bobs = await sendMessage(s.url, bob.token, { groupId: g, content: 'root by bob' });
    const carols = await sendMessage(s.url, carol.token, { groupId: g, content: 'root by carol' });
    // Alice follows both (she replied), then blocks bob.
    await reply(s, alice, g, bobs.id);
    await reply(s, alice, g, carols.id);
    expect(ids((await ok(gql(s.url, THREADS, {}, alice.token))).threads).sort()).toEqual([bobs.id, carols.id].sort());
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    const threads = (await ok(gql(s.url, THREADS, {}, alice.token))).threads;
    expect({ ids: ids(threads), totalCount: threads.totalCount }).toEqual({ ids: [carols.id], totalCount: 1 });
    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    expect((await ok(gql(s.url, THREADS, {}, alice.token))).threads.totalCount).toBe(2);
  });

  it("should refuse a blocker's reply to a root or reply by the user they block, as to a message history leaves out, and take it once unblocked", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const groups = [await groupWith(s.url, alice, 'One', [bob, carol]), await groupWith(s.url, alice, 'Two', [bob, carol]), await groupWith(s.url, alice, 'Three', [bob, carol])];
    const [g] = groups;
    const roots = await Promise.all(groups.map((groupId) => sendMessage(s.url, bob.token, { groupId, content: 'root by bob' })));
    const carolsRoot = await sendMessage(s.url, carol.token, { groupId: g, content: 'root by carol' });
    const carolsReply = await reply(s, carol, g, roots[0].id);
    const bobsReply = await reply(s, bob, g, carolsRoot.id);
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    const before = await snapshot(s.env.DATABASE_URL!);
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    const refused = async (groupId: string, parentId: string, alsoInConversation = false) => {
      const r = await gql(s.url, SEND, { i: { groupId, content: 'hidden parent', parentId, alsoInConversation } }, alice.token);
      return [codeOf(r), r.errors?.[0].extensions?.field];
    };
    // Bob's root, a reply in bob's thread, bob's reply in carol's thread; kept in the thread or also in the conversation.
    for (const [parent, also] of [[roots[0].id, false], [carolsReply.id, false], [bobsReply.id, false], [roots[0].id, true]] as const) {
      expect(await refused(g, parent, also)).toEqual(['BAD_USER_INPUT', 'parentId']);
    }
    // Replies arriving together (written in one statement): hers refused, carol's taken.
    const together = await Promise.all(groups.flatMap((groupId, i) => [refused(groupId, roots[i].id), reply(s, carol, groupId, roots[i].id).then(() => 'ok')]));
    expect(together).toEqual(groups.flatMap(() => [['BAD_USER_INPUT', 'parentId'], 'ok']));
    const after = await snapshot(s.env.DATABASE_URL!);
    expect(after.messages).toBe(before.messages + groups.length);
    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    expect((await reply(s, alice, g, roots[0].id)).id).toBeTruthy();
  });

  it("should answer a blocker's thread, markThreadRead and threadId on a root or reply by the user they block as on a message that is not there, and follow nothing", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Hidden roots', [bob, carol]);
    const bobsRoot = await sendMessage(s.url, bob.token, { groupId: g, content: 'secret root by bob' });
    const carolsRoot = await sendMessage(s.url, carol.token, { groupId: g, content: 'root by carol' });
    const bobsReply = await reply(s, bob, g, carolsRoot.id, 'secret reply by bob');
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    const MARK = 'mutation($m: ID!) { markThreadRead(messageId: $m) { id content } }';
    for (const m of [bobsRoot.id, bobsReply.id]) {
      for (const [q, field] of [[THREAD, 'thread'], [MARK, 'markThreadRead']] as const) {
        const r = await gql(s.url, q, { m }, alice.token);
        expect([codeOf(r), r.data?.[field] ?? null]).toEqual(['NOT_FOUND', null]);
      }
    }
    const client = (await listen(s, alice, 'subscription { messageAdded { id } }')).ws.client;
    for (const threadId of [bobsRoot.id, bobsReply.id]) {
      const sub = subscribe({ client }, ADDED, { c: { groupId: g, threadId } });
      await sub.done;
      expect(sub.errors).toMatchObject([{ extensions: { code: 'BAD_USER_INPUT', field: 'threadId' } }]);
    }
    // Nothing followed: the refused markThreadRead wrote no marker.
    expect((await ok(gql(s.url, THREADS, {}, alice.token))).threads.totalCount).toBe(0);
    // Carol's own root stays hers to read; once unblocked, bob's thread is there again.
    expect((await ok(gql(s.url, THREAD, { m: carolsRoot.id }, alice.token))).thread.totalCount).toBe(0);
    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    expect((await ok(gql(s.url, MARK, { m: bobsRoot.id }, alice.token))).markThreadRead).toEqual({ id: bobsRoot.id, content: 'secret root by bob' });
  });

  it("should keep replies kept in their threads out of a blocker's sidebar as out of everyone's: not the last message, not unread", async () => {
    const s = await createTestServer();
    const [alice, bob, carol, dave, stranger] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Sidebar', [bob, carol, dave]);
    const ROW = 'query($c: ConversationInput!) { conversation(conversation: $c) { unreadCount lastMessage { id } } }';
    const root = await sendMessage(s.url, carol.token, { groupId: g, content: 'root' });
    // Alice blocks bob (in the group), dave a stranger: both then read the sidebar through the blocked-sender scan.
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    await ok(gql(s.url, BLOCK, { id: stranger.id }, dave.token));
    await reply(s, bob, g, root.id);
    await reply(s, carol, g, root.id);
    const plain = await sendMessage(s.url, carol.token, { groupId: g, content: 'plain' });
    await reply(s, bob, g, root.id);
    await reply(s, carol, g, root.id);
    const row = async (u: TestUser) => (await ok(gql(s.url, ROW, { c: { groupId: g } }, u.token))).conversation;
    // Two timeline messages (root, plain) unread for each member who did not send them; the last one is plain.
    expect(await row(alice)).toEqual({ unreadCount: 2, lastMessage: { id: plain.id } });
    expect(await row(dave)).toEqual({ unreadCount: 2, lastMessage: { id: plain.id } });
    expect(await row(bob)).toEqual({ unreadCount: 2, lastMessage: { id: plain.id } });
  });

  it("should not make a thread unread for replies of a user the viewer blocks", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Block unread', [bob, carol]);
    const onlyBob = await sendMessage(s.url, alice.token, { groupId: g, content: 'bob answers' });
    const readThenBob = await sendMessage(s.url, alice.token, { groupId: g, content: 'read, then bob' });
    const carols = await sendMessage(s.url, alice.token, { groupId: g, content: 'carol answers' });
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));

    await reply(s, bob, g, onlyBob.id);
    await reply(s, carol, g, readThenBob.id);
    await ok(gql(s.url, 'mutation($m: ID!) { markThreadRead(messageId: $m) { id } }', { m: readThenBob.id }, alice.token));
    await reply(s, bob, g, readThenBob.id);
    await reply(s, carol, g, carols.id);

    // Listed, as every thread she takes part in is, latest reply first (bob's too): only carol's has something to read.
    const unread = (t: { edges: { node: { id: string; hasUnreadReplies: boolean } }[] }) => t.edges.map((e) => [e.node.id, e.node.hasUnreadReplies]);
    const threads = (await ok(gql(s.url, THREADS, {}, alice.token))).threads;
    expect({ threads: unread(threads), totalCount: threads.totalCount }).toEqual({
      threads: [
        [carols.id, true],
        [readThenBob.id, false],
        [onlyBob.id, false],
      ],
      totalCount: 3,
    });
    // Once unblocked, bob's replies count again.
    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    expect(unread((await ok(gql(s.url, THREADS, {}, alice.token))).threads)).toEqual([
      [carols.id, true],
      [readThenBob.id, true],
      [onlyBob.id, true],
    ]);
  });

  it('should leave mentions by a blocked user (made before the block too) out of mentions and unreadMentionCount, and follow their threads once unblocked', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Block mentions', [bob, carol]);
    await sendMessage(s.url, bob.token, { groupId: g, content: `@${alice.username} before the block` });
    const byCarol = await sendMessage(s.url, carol.token, { groupId: g, content: `hey @${alice.username}` });
    const before = (await ok(gql(s.url, BADGE, { c: { groupId: g } }, alice.token))).conversation.unreadMentionCount;
    expect(before).toBe(2);
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    // Bob's message names alice as any mention does: its mentions (which bob and carol read) don't tell him of the block.
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id mentions { id } } }';
    const after = (await ok(gql(s.url, SEND, { i: { groupId: g, content: `@${alice.username} after the block` } }, bob.token))).sendMessage;
    expect(after.mentions).toEqual([{ id: alice.id }]);
    // Nor does a reply's: it makes alice no follower of the thread (carol's root: alice never took part).
    const root = await sendMessage(s.url, carol.token, { groupId: g, content: 'a thread' });
    const replied = (await ok(gql(s.url, SEND, { i: { groupId: g, parentId: root.id, content: `@${alice.username} look` } }, bob.token))).sendMessage;
    expect(replied.mentions).toEqual([{ id: alice.id }]);
    // Nor an edit's, to a reply of another thread.
    const other = await sendMessage(s.url, carol.token, { groupId: g, content: 'another thread' });
    const plain = await reply(s, bob, g, other.id, 'plain');
    const EDIT = 'mutation($m: ID!, $c: String!) { editMessage(messageId: $m, content: $c) { mentions { id } } }';
    expect((await ok(gql(s.url, EDIT, { m: plain.id, c: `plain @${alice.username}` }, bob.token))).editMessage.mentions).toEqual([{ id: alice.id }]);
    expect(ids((await ok(gql(s.url, THREADS, {}, alice.token))).threads)).toEqual([]);

    const mentions = (await ok(gql(s.url, MENTIONS, {}, alice.token))).mentions;
    expect({ ids: ids(mentions), totalCount: mentions.totalCount }).toEqual({ ids: [byCarol.id], totalCount: 1 });
    expect((await ok(gql(s.url, BADGE, { c: { groupId: g } }, alice.token))).conversation.unreadMentionCount).toBe(1);
    // A new mention's badge, counted in the send statement, leaves bob's out too.
    const live = await listen(s, alice, 'subscription { conversationUpdated { id unreadMentionCount } }');
    await sendMessage(s.url, carol.token, { groupId: g, content: `again @${alice.username}` });
    expect((await live.nth(1)).conversationUpdated.unreadMentionCount).toBe(2);
    // Unblocked: the mentions show again, and alice follows the threads they were in, as if they had
    // come unblocked (a reply's mention and an edit's), with their replies to read.
    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    const followed = (await ok(gql(s.url, THREADS, {}, alice.token))).threads;
    expect(followed.edges.map((e: any) => [e.node.id, e.node.hasUnreadReplies])).toEqual([
      [other.id, true],
      [root.id, true],
    ]);
  });

  it('should count live mention badges of a member who blocks someone else as the query counts them', async () => {
    const s = await createTestServer();
    const [alice, bob, stranger] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Badges', [bob]);
    await ok(gql(s.url, BLOCK, { id: stranger.id }, alice.token));
    // Past the 5 s after a block in which a row's count is read again at its delivery (see
    // ThreadService.badgeUnsure): read then, a row could count the next mention, committed before it
    // was delivered (CI, loaded: 3, 4, 4 for the third). This test is of the counts the events carry.
    await sleep(5_100);
    const live = await listen(s, alice, 'subscription { conversationUpdated { id unreadCount unreadMentionCount } }');
    for (let i = 1; i <= 4; i++) await sendMessage(s.url, bob.token, { groupId: g, content: `@${alice.username} ${i}` });
    await live.nth(4);
    expect(live.values.map((v: any) => [v.conversationUpdated.unreadCount, v.conversationUpdated.unreadMentionCount])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
    ]);
    expect((await ok(gql(s.url, BADGE, { c: { groupId: g } }, alice.token))).conversation.unreadMentionCount).toBe(4);
  });

  it('should count the live badge again after the viewer blocks or unblocks someone, not reuse the one told before', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Badge and block', [bob, carol]);
    const live = await listen(s, alice, 'subscription { conversationUpdated { id unreadMentionCount } }');
    const badge = async () => (await ok(gql(s.url, BADGE, { c: { groupId: g } }, alice.token))).conversation.unreadMentionCount;
    // The group's rows as told, in order (a block tells the lobby's row too: bob is in it).
    const told = async (n: number) => {
      await eventually(() => live.values.filter((v: any) => v.conversationUpdated.id === `g:${g}`).length >= n);
      return live.values.filter((v: any) => v.conversationUpdated.id === `g:${g}`).map((v: any) => v.conversationUpdated.unreadMentionCount).slice(0, n);
    };
    await sendMessage(s.url, bob.token, { groupId: g, content: `@${alice.username} from bob` });
    await sendMessage(s.url, carol.token, { groupId: g, content: `@${alice.username} from carol` });
    expect(await told(2)).toEqual([1, 2]);

    // Blocked, bob's mention leaves the badge: the block tells the row at once, carol's plain
    // message carries no count, and the one told (2) no longer holds.
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    await sendMessage(s.url, carol.token, { groupId: g, content: 'plain' });
    expect([await told(4), await badge()]).toEqual([[1, 2, 1, 1], 1]);

    // Unblocked, it comes back: so does a mention bob made meanwhile (alice was not told of it).
    await sendMessage(s.url, bob.token, { groupId: g, content: `@${alice.username} while blocked` });
    await ok(gql(s.url, UNBLOCK, { id: bob.id }, alice.token));
    await sendMessage(s.url, carol.token, { groupId: g, content: 'plain again' });
    expect([(await told(6)).slice(4), await badge()]).toEqual([[3, 3], 3]);
  });

  it("should not tell the blocker of a blocked user's replies: no THREAD_UPDATED, no messageAdded with threadId", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Block live', [bob, carol]);
    const root = await sendMessage(s.url, carol.token, { groupId: g, content: 'root by carol' });
    await ok(gql(s.url, BLOCK, { id: bob.id }, alice.token));
    const thread = await listen(s, alice, ADDED, { c: { groupId: g, threadId: root.id } });
    const events = await listen(s, alice, EVENTS, { c: { groupId: g } });
    await running(s, 'messageEvent', 1);

    await reply(s, bob, g, root.id, 'from bob');
    const fromCarol = await reply(s, carol, g, root.id, 'from carol');

    expect((await thread.nth(1)).messageAdded.id).toBe(fromCarol.id);
    expect((await events.nth(1)).messageEvent).toEqual({ kind: 'THREAD_UPDATED', message: { id: root.id, replyCount: 2 } });
    await thread.settle(200);
    expect([thread.values.length, events.values.length]).toEqual([1, 1]);
  });
});
