import { codeOf, eventually, gql, listen, ok, running, sleep } from './helpers/graphql';
import { initialized } from './helpers/raw-socket';
import { holdNextPublishOf } from './helpers/publish';
import { Topic } from '../src/shared/pubsub/topics';
import { createTestServer, describeRedis } from './helpers/server';
import { befriend, buildProject, groupWith, lobbyOf, sendMessage, signup, type TestUser } from './helpers/factories';
import { snapshot, sql } from './helpers/db';
import { migrationsList } from '../src/migrations';

const CONVERSATIONS = `query($first: Int, $after: String) { conversations(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { cursor node { id kind title unreadCount lastReadMessageId updatedAt group { id name } project { id title } peer { id }
    lastMessage { id content conversationId sender { id } deletedAt } } } } }`;
const CONVERSATION = 'query($c: ConversationInput!) { conversation(conversation: $c) { id kind title unreadCount lastReadMessageId lastMessage { id content } } }';
const MARK = 'mutation($c: ConversationInput!, $m: ID) { markRead(conversation: $c, messageId: $m) { id unreadCount lastReadMessageId } }';
const RECEIPTS = 'query($c: ConversationInput!) { readReceipts(conversation: $c) { conversationId user { id } lastReadMessageId readAt } }';
const UPDATED = 'subscription { conversationUpdated { id title unreadCount lastReadMessageId lastMessage { id content } } }';
const RECEIPT = 'subscription($c: ConversationInput) { readReceipt(conversation: $c) { conversationId user { id } lastReadMessageId } }';

const send = sendMessage;
const group = groupWith;

async function conversations(url: string, u: TestUser, first = 50, after?: string) {
  return (await ok(gql(url, CONVERSATIONS, { first, after }, u.token))).conversations;
}


describe('conversations', () => {
  it('should list every group, direct conversation and project of the viewer, most recent activity first, keyset-paged', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url, { displayName: 'Alice A.' }), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const lobby = await lobbyOf(s.url, bob.token);
    const g = await group(s.url, alice, 'Team', [bob]);
    const p = (await buildProject(s.url, alice, { title: 'Apollo', participants: [bob] })).id;
    // A friend without a message yet is not a conversation.
    expect((await conversations(s.url, bob)).edges.map((e: any) => e.node.kind).sort()).toEqual(['GROUP', 'GROUP', 'PROJECT']);

    await send(s.url, alice.token, { groupId: g, content: 'g1' });
    const d1 = await send(s.url, alice.token, { toUserId: bob.id, content: 'd1' });
    await send(s.url, alice.token, { projectId: p, content: 'p1' });
    await send(s.url, alice.token, { groupId: g, content: 'g2' });
    await send(s.url, alice.token, { toUserId: bob.id, content: 'd2' });

    const all = await conversations(s.url, bob);
    expect(all.totalCount).toBe(4);
    expect(all.edges.map((e: any) => [e.node.kind, e.node.title, e.node.unreadCount, e.node.lastMessage?.content ?? null])).toEqual([
      ['DIRECT', 'Alice A.', 2, 'd2'],
      ['GROUP', 'Team', 2, 'g2'],
      ['PROJECT', 'Apollo', 1, 'p1'],
      ['GROUP', 'Lobby', 0, null],
    ]);
    const direct = all.edges[0].node;
    expect(direct.peer).toEqual({ id: alice.id });
    expect(direct.id).toBe(d1.conversationId);
    expect(direct.lastMessage.conversationId).toBe(direct.id);
    expect(all.edges[1].node.group).toEqual({ id: g, name: 'Team' });
    expect(all.edges[2].node.project).toEqual({ id: p, title: 'Apollo' });
    expect(all.edges[3].node.group.id).toBe(lobby);
    // The sender has read their own messages.
    expect((await conversations(s.url, alice)).edges.map((e: any) => e.node.unreadCount)).toEqual([0, 0, 0, 0]);

    // Pages of 2 walk the same order without gaps or repeats.
    const first = await conversations(s.url, bob, 2);
    expect(first.pageInfo.hasNextPage).toBe(true);
    const second = await conversations(s.url, bob, 2, first.pageInfo.endCursor);
    expect(second.pageInfo.hasNextPage).toBe(false);
    expect([...first.edges, ...second.edges].map((e: any) => e.node.id)).toEqual(all.edges.map((e: any) => e.node.id));
    expect(codeOf(await gql(s.url, CONVERSATIONS, { after: 'nonsense' }, bob.token))).toBe('BAD_USER_INPUT');

    // conversation(): the same row; a friend with no message yet is an empty conversation.
    const one = (await ok(gql(s.url, CONVERSATION, { c: { groupId: g } }, bob.token))).conversation;
    expect(one).toMatchObject({ id: all.edges[1].node.id, unreadCount: 2, lastMessage: { content: 'g2' } });
    const carol = await signup(s.url);
    const before = Date.now();
    await befriend(s.url, bob, carol);
    const after = Date.now();
    expect((await ok(gql(s.url, CONVERSATION, { c: { userId: carol.id } }, bob.token))).conversation).toMatchObject({ kind: 'DIRECT', unreadCount: 0, lastMessage: null });
    // Its updatedAt is when the two became friends, the same on every call (it was the time of
    // each call: an outside probe). Its markRead answers the same.
    const EMPTY = 'query($c: ConversationInput!) { conversation(conversation: $c) { updatedAt } }';
    const at = (await ok(gql(s.url, EMPTY, { c: { userId: carol.id } }, bob.token))).conversation.updatedAt;
    expect(Date.parse(at)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(at)).toBeLessThanOrEqual(after + 1);
    await new Promise((r) => setTimeout(r, 20));
    expect((await ok(gql(s.url, EMPTY, { c: { userId: bob.id } }, carol.token))).conversation.updatedAt).toBe(at);
    const marked = 'mutation($c: ConversationInput!) { markRead(conversation: $c) { updatedAt lastMessage { id } } }';
    expect((await ok(gql(s.url, marked, { c: { userId: carol.id } }, bob.token))).markRead).toEqual({ updatedAt: at, lastMessage: null });
    expect(codeOf(await gql(s.url, CONVERSATION, { c: { groupId: g } }, carol.token))).toBe('FORBIDDEN');
  });

  it('should count project messages a member may see: a private message counts for its recipient only', async () => {
    const s = await createTestServer();
    const [owner, ann, ben] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await buildProject(s.url, owner, { participants: [ann, ben] })).id;
    const open = await send(s.url, owner.token, { projectId: p, content: 'to all' });
    const secret = await send(s.url, owner.token, { projectId: p, toUserId: ann.id, content: 'to ann' });
    const row = async (u: TestUser) => (await ok(gql(s.url, CONVERSATION, { c: { projectId: p } }, u.token))).conversation;
    expect(await row(ann)).toMatchObject({ unreadCount: 2, lastMessage: { id: secret.id } });
    expect(await row(ben)).toMatchObject({ unreadCount: 1, lastMessage: { id: open.id } });
    // Ben can't mark a message he can't see.
    expect(codeOf(await gql(s.url, MARK, { c: { projectId: p }, m: secret.id }, ben.token))).toBe('BAD_USER_INPUT');
    expect((await ok(gql(s.url, MARK, { c: { projectId: p }, m: open.id }, ann.token))).markRead.unreadCount).toBe(1);
  });

  it('should never name a private project message in a receipt to a member who may not read it', async () => {
    const s = await createTestServer();
    const [owner, ann, ben] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await buildProject(s.url, owner, { participants: [ann, ben] })).id;
    const c = { projectId: p };
    const open = await send(s.url, owner.token, { projectId: p, content: 'to all' });
    const secret = await send(s.url, owner.token, { projectId: p, toUserId: ann.id, content: 'to ann' });
    const toBen = await listen(s, ben, RECEIPT, { c });
    const toOwner = await listen(s, owner, RECEIPT, { c });
    // Ann reads up to the newest she may see: the private one.
    expect((await ok(gql(s.url, MARK, { c }, ann.token))).markRead.lastReadMessageId).toBe(secret.id);
    expect((await toOwner.nth(1)).readReceipt).toMatchObject({ user: { id: ann.id }, lastReadMessageId: secret.id });
    expect((await toBen.nth(1)).readReceipt).toMatchObject({ user: { id: ann.id }, lastReadMessageId: open.id });
    const receipts = async (u: TestUser) =>
      Object.fromEntries((await ok(gql(s.url, RECEIPTS, { c }, u.token))).readReceipts.map((r: any) => [r.user.id, r.lastReadMessageId]));
    // The sender's own marker moved to it too (sending moves it): Ben sees both at the message before.
    expect(await receipts(ben)).toEqual({ [ann.id]: open.id, [owner.id]: open.id });
    expect(await receipts(owner)).toEqual({ [ann.id]: secret.id });
    expect(await receipts(ann)).toEqual({ [owner.id]: secret.id });
    // A barrier: a public marker move reaches both; had anything more been sent to either, it would have come first.
    await ok(gql(s.url, MARK, { c }, ben.token));
    const last = await send(s.url, ann.token, { projectId: p, content: 'to all again' });
    await ok(gql(s.url, MARK, { c }, owner.token));
    await toBen.nth(2);
    expect(toBen.values.map((v) => v.readReceipt.lastReadMessageId)).toEqual([open.id, last.id]);
    expect(JSON.stringify([...toBen.values, await receipts(ben)])).not.toContain(secret.id);
  });

  it('should not tell the other members again of a marker that moved onto a private message, where they see it where it was', async () => {
    const s = await createTestServer();
    const [owner, ann, ben] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await buildProject(s.url, owner, { participants: [ann, ben] })).id;
    const c = { projectId: p };
    const open = await send(s.url, owner.token, { projectId: p, content: 'to all' });
    const toBen = await listen(s, ben, RECEIPT, { c });
    await ok(gql(s.url, 'mutation($c: ConversationInput!, $m: ID) { markRead(conversation: $c, messageId: $m) { id } }', { c, m: open.id }, ann.token));
    expect((await toBen.nth(1)).readReceipt).toMatchObject({ user: { id: ann.id }, lastReadMessageId: open.id });
    // A private message to ann, read: ben still sees ann's marker on `open`, and is told nothing (a new readAt would say she read something).
    const secret = await send(s.url, owner.token, { projectId: p, toUserId: ann.id, content: 'to ann' });
    expect((await ok(gql(s.url, MARK, { c }, ann.token))).markRead.lastReadMessageId).toBe(secret.id);
    // And from one private message to the next, both shown to ben as `open`.
    const again = await send(s.url, owner.token, { projectId: p, toUserId: ann.id, content: 'to ann again' });
    expect((await ok(gql(s.url, MARK, { c }, ann.token))).markRead.lastReadMessageId).toBe(again.id);
    // A barrier: ann's next public marker move reaches ben; anything told before it would have come first.
    const later = await send(s.url, owner.token, { projectId: p, content: 'to all again' });
    await ok(gql(s.url, MARK, { c }, ann.token));
    await toBen.nth(2);
    expect(toBen.values.map((v) => v.readReceipt.lastReadMessageId)).toEqual([open.id, later.id]);
  });

  it('should show a marker resting on a private message with the time it reached what the viewer sees, not the time it moved on', async () => {
    const s = await createTestServer();
    const [owner, ann, ben, cal] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await buildProject(s.url, owner, { participants: [ann, ben, cal] })).id;
    const c = { projectId: p };
    const receipts = async (u: TestUser) =>
      Object.fromEntries((await ok(gql(s.url, RECEIPTS, { c }, u.token))).readReceipts.map((r: any) => [r.user.id, [r.lastReadMessageId, r.readAt]]));
    const mark = async (u: TestUser) => ok(gql(s.url, MARK, { c }, u.token));
    // Each step a few ms apart: times that differ tell apart what a receipt shows.
    const privately = async (from: TestUser, to: TestUser, content: string) => (await sleep(5), await send(s.url, from.token, { projectId: p, toUserId: to.id, content }));
    const open = await send(s.url, owner.token, { projectId: p, content: 'to all' });
    await mark(ann);
    const seen = await receipts(ben);
    expect(seen[ann.id][0]).toBe(open.id);
    // A private message to Ann, read by her; her marker and the owner's (his send moved it) rest on
    // it: Ben sees both as before, their times too (the probe saw the private message's times).
    await privately(owner, ann, 'to ann');
    await mark(ann);
    expect(await receipts(ben)).toEqual(seen);
    // Cal writes to Ann privately: he sees her marker on his message once she read it, and keeps
    // seeing it so when she reads the owner's next one; Ben still sees what he saw.
    const fromCal = await privately(cal, ann, 'from cal');
    await mark(ann);
    const calSees = (await receipts(cal))[ann.id];
    expect(calSees[0]).toBe(fromCal.id);
    await privately(owner, ann, 'to ann again');
    await mark(ann);
    expect((await receipts(cal))[ann.id]).toEqual(calSees);
    expect((await receipts(ben))[ann.id]).toEqual(seen[ann.id]);
    // An open message she passes on her way to a private one: that one is shown, with the time she passed it.
    await sleep(5);
    const again = await send(s.url, ben.token, { projectId: p, content: 'to all again' });
    await privately(owner, ann, 'to ann, third');
    const passed = (await mark(ann)).markRead;
    const now = (await receipts(ben))[ann.id];
    expect(now[0]).toBe(again.id);
    expect(Date.parse(now[1])).toBeGreaterThan(Date.parse(seen[ann.id][1]));
    expect((await receipts(cal))[ann.id]).toEqual(now);
    expect(passed.lastReadMessageId).not.toBe(again.id);
    // Removed and added again with a private message of hers newer than the open ones: her marker
    // rests on it from the start, and stays shown where it was shown then as she reads on.
    await ok(gql(s.url, 'mutation($p: ID!, $u: ID!) { removeProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: ann.id }, owner.token));
    await ok(gql(s.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: ann.id }, owner.token));
    const back = (await receipts(ben))[ann.id];
    expect(back[0]).toBe(again.id);
    await privately(owner, ann, 'to ann, back');
    await mark(ann);
    expect((await receipts(ben))[ann.id]).toEqual(back);
    // A member's own private send moves their marker onto it: the others see it where it was, never
    // on a private message of their own that the member can't read (the owner's to Ann: a probe).
    const before = (await receipts(owner))[ben.id];
    expect(before[0]).toBe(again.id);
    await privately(ben, cal, 'ben to cal');
    expect((await receipts(owner))[ben.id]).toEqual(before);
  });

  it('should never date a marker before the message it rests on', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await group(s.url, alice, 'stamps', [bob]);
    const c = { groupId: g };
    // Sends that arrive together are stamped a millisecond apart, the last ones ahead of the clock;
    // the sender's marker moves onto their last message in the same statement.
    const sent = await Promise.all(Array.from({ length: 20 }, (_, i) => send(s.url, alice.token, { groupId: g, content: `m${i}` })));
    const createdAt = new Map(sent.map((m) => [m.id, Date.parse(m.createdAt)]));
    const newest = sent.reduce((a, b) => (Date.parse(b.createdAt) > Date.parse(a.createdAt) ? b : a));
    await ok(gql(s.url, MARK, { c, m: newest.id }, bob.token));
    // Each reads the other's marker.
    const receipts: { user: { id: string }; lastReadMessageId: string; readAt: string }[] = [];
    for (const u of [alice, bob]) receipts.push(...(await ok(gql(s.url, RECEIPTS, { c }, u.token))).readReceipts);
    expect(receipts.map((r) => r.user.id).sort()).toEqual([alice.id, bob.id].sort());
    for (const r of receipts) expect(Date.parse(r.readAt)).toBeGreaterThanOrEqual(createdAt.get(r.lastReadMessageId)!);
  });

  it("should retitle a friend's direct row live when they change their name, and tell no one else", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const dm = await send(s.url, bob.token, { toUserId: alice.id, content: 'hi' });
    const [toAlice, toBob] = [await listen(s, alice, UPDATED), await listen(s, bob, UPDATED)];
    const PROFILE = 'mutation($u: String, $d: String) { updateProfile(username: $u, displayName: $d) { id } }';
    await ok(gql(s.url, PROFILE, { d: 'Bobby' }, bob.token));
    expect(await toAlice.nth(1)).toEqual({ conversationUpdated: expect.objectContaining({ id: dm.conversationId, title: 'Bobby', unreadCount: 1, lastMessage: expect.objectContaining({ id: dm.id }) }) });
    // Without a display name, the username: the row says so too. Nothing changed: nothing told.
    await ok(gql(s.url, PROFILE, { d: null }, bob.token));
    expect((await toAlice.nth(2)).conversationUpdated.title).toBe(bob.username);
    await ok(gql(s.url, PROFILE, { u: bob.username }, bob.token));
    await sleep(300);
    expect([toAlice.values.length, toBob.values.length]).toEqual([2, 0]);
    expect((await conversations(s.url, alice)).edges.filter((e: any) => e.node.kind === 'DIRECT').map((e: any) => e.node.title)).toEqual([bob.username]);
  });

  it('should keep unread counts exact under concurrent sends', async () => {
    const s = await createTestServer();
    const [reader, ...senders] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await group(s.url, senders[0], 'Busy', [reader, senders[1], senders[2]]);
    await Promise.all(senders.flatMap((u, i) => Array.from({ length: 15 }, (_, n) => send(s.url, u.token, { groupId: g, content: `${i}-${n}` }))));
    const history = (await ok(gql(s.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 100) { edges { node { id sender { id } } } } }', { g }, reader.token))).history.edges.map(
      (e: any) => e.node,
    );
    expect(history).toHaveLength(45);
    // Each sender's unread: messages from others after their own last one, in the conversation's order.
    const expected = (u: TestUser) => {
      const last = history.map((m: any) => m.sender.id).lastIndexOf(u.id);
      return history.slice(last + 1).filter((m: any) => m.sender.id !== u.id).length;
    };
    const unread = async (u: TestUser) => (await ok(gql(s.url, CONVERSATION, { c: { groupId: g } }, u.token))).conversation;
    expect((await unread(reader)).unreadCount).toBe(45);
    for (const u of senders) {
      const row = await unread(u);
      expect(row.unreadCount).toBe(expected(u));
      expect(row.lastReadMessageId).toBe(history.filter((m: any) => m.sender.id === u.id).pop().id);
    }
  });

  it('should move read markers forward only, tell the viewer\'s other devices and the other members, and refuse a message of another conversation', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await group(s.url, alice, 'Reads', [bob]);
    const other = await group(s.url, alice, 'Other', [bob]);
    const foreign = await send(s.url, alice.token, { groupId: other, content: 'elsewhere' });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await send(s.url, alice.token, { groupId: g, content: `m${i}` })).id);
    const c = { groupId: g };
    const bobDevice = await listen(s, bob, UPDATED);
    const receipts = await listen(s, alice, RECEIPT, { c });

    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, MARK, { c, m: foreign.id }, bob.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, MARK, { c, m: 'not-an-id' }, bob.token))).toBe('BAD_USER_INPUT');
    expect((await ok(gql(s.url, CONVERSATION, { c }, bob.token))).conversation.unreadCount).toBe(5);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);

    expect((await ok(gql(s.url, MARK, { c, m: ids[2] }, bob.token))).markRead).toMatchObject({ unreadCount: 2, lastReadMessageId: ids[2] });
    // Never back.
    expect((await ok(gql(s.url, MARK, { c, m: ids[0] }, bob.token))).markRead).toMatchObject({ unreadCount: 2, lastReadMessageId: ids[2] });
    const updated = await bobDevice.nth(1);
    expect(updated.conversationUpdated).toMatchObject({ unreadCount: 2, lastReadMessageId: ids[2], title: 'Reads' });
    expect((await receipts.nth(1)).readReceipt).toMatchObject({ user: { id: bob.id }, lastReadMessageId: ids[2] });
    // No messageId: up to the newest.
    expect((await ok(gql(s.url, MARK, { c }, bob.token))).markRead).toMatchObject({ unreadCount: 0, lastReadMessageId: ids[4] });
    await receipts.nth(2);
    const listed = (await ok(gql(s.url, RECEIPTS, { c }, alice.token))).readReceipts;
    expect(listed).toEqual([expect.objectContaining({ user: { id: bob.id }, lastReadMessageId: ids[4] })]);
    // A new message read as a barrier: once its events arrive, any for the moves that moved nothing would have.
    const later = await send(s.url, alice.token, { groupId: g, content: 'later' });
    await ok(gql(s.url, MARK, { c }, bob.token));
    await receipts.nth(3);
    await bobDevice.nth(4);
    // The moves that moved nothing told no one.
    expect(receipts.values.map((v) => v.readReceipt.lastReadMessageId)).toEqual([ids[2], ids[4], later.id]);
    expect(bobDevice.values.map((v) => [v.conversationUpdated.unreadCount, v.conversationUpdated.lastReadMessageId])).toEqual([
      [2, ids[2]],
      [0, ids[4]],
      [1, ids[4]],
      [0, later.id],
    ]);
  });

  it("should keep a connected member's held state current from their own send while no sidebar subscription of theirs is open", async () => {
    // A row published here is copied for this instance only when something here takes it: a
    // subscription of its audience, or a member's state held here that it carries (the sender's).
    const s = await createTestServer();
    const [ann, ben] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ann, 'Held', [ben]);
    const sock = await initialized(s.wsUrl, ben.token);
    sock.send({ id: 'c', type: 'subscribe', payload: { query: UPDATED } });
    await running(s, 'conversationUpdated', 1);
    await sendMessage(s.url, ann.token, { groupId: g, content: 'one' });
    await sendMessage(s.url, ann.token, { groupId: g, content: 'two' });
    await sock.next('next', 'c');
    // Ben's row is derived from his state, held here from now on while he is connected.
    expect((await sock.next('next', 'c')).payload.data.conversationUpdated).toMatchObject({ unreadCount: 2 });
    sock.send({ id: 'c', type: 'complete' });
    await running(s, 'conversationUpdated', 0);
    // His send moves his marker to it; its row carries his state, which only the copy here tells the state held here.
    const mine = await sendMessage(s.url, ben.token, { groupId: g, content: 'mine' });
    sock.send({ id: 'c2', type: 'subscribe', payload: { query: UPDATED } });
    await running(s, 'conversationUpdated', 1);
    const three = await sendMessage(s.url, ann.token, { groupId: g, content: 'three' });
    expect((await sock.next('next', 'c2')).payload.data.conversationUpdated).toMatchObject({ unreadCount: 1, lastReadMessageId: mine.id, lastMessage: { id: three.id } });
  });

  it('should answer each of concurrent markRead calls with the marker as it stands, never one a concurrent call moved past', async () => {
    const s = await createTestServer();
    const [ann, ben] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ann, 'Tabs', [ben]);
    let newest = '';
    for (let i = 0; i < 6; i++) newest = (await sendMessage(s.url, ann.token, { groupId: g, content: `m${i}` })).id;
    for (let trial = 0; trial < 6; trial++) {
      const last = (await sendMessage(s.url, ann.token, { groupId: g, content: `again ${trial}` })).id;
      // Two tabs (or five) mark the conversation read at once.
      const answers = await Promise.all(Array.from({ length: 5 }, () => ok(gql(s.url, MARK, { c: { groupId: g } }, ben.token))));
      for (const a of answers) expect(a.markRead).toMatchObject({ unreadCount: 0, lastReadMessageId: last });
      newest = last;
    }
    expect(newest).toBeTruthy();
  });

  it("should send the viewer's row on a new message and on a rename", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await group(s.url, alice, 'Before', [bob]);
    const sidebar = await listen(s, bob, UPDATED);
    const m = await send(s.url, alice.token, { groupId: g, content: 'hello' });
    expect((await sidebar.nth(1)).conversationUpdated).toMatchObject({ title: 'Before', unreadCount: 1, lastMessage: { id: m.id, content: 'hello' } });
    await ok(gql(s.url, 'mutation($g: ID!) { renameGroup(groupId: $g, name: "After") { id } }', { g }, alice.token));
    expect((await sidebar.nth(2)).conversationUpdated).toMatchObject({ title: 'After', unreadCount: 1, lastMessage: { id: m.id } });
  });

  it("should end a sidebar on the newest name when two renames' rows are published in the other order, a group's or a project's", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await group(s.url, alice, 'Before', [bob]);
    const p = (await buildProject(s.url, alice, { participants: [bob] })).id;
    const sidebar = await listen(s, bob, UPDATED);
    const renames: [string, (name: string) => Promise<unknown>][] = [
      ['GROUP', (name) => ok(gql(s.url, 'mutation($g: ID!, $n: String!) { renameGroup(groupId: $g, name: $n) { id } }', { g, n: name }, alice.token))],
      ['PROJECT', (name) => ok(gql(s.url, 'mutation($p: ID!, $n: String!) { renameProject(projectId: $p, title: $n) { id } }', { p, n: name }, alice.token))],
    ];
    let told = 0;
    for (const [kind, rename] of renames) {
      // The first rename's row goes out late (a slow instance): the second's first.
      const held = holdNextPublishOf(s.services.pubsub, Topic.ConversationUpdated);
      const first = rename(`${kind} one`);
      await eventually(() => held.held());
      held.restore();
      await rename(`${kind} two`);
      held.release();
      await first;
      // A message after both: the row bob gets next is its own, not the late rename's.
      await sendMessage(s.url, alice.token, kind === 'GROUP' ? { groupId: g, content: 'after' } : { projectId: p, content: 'after' });
      await sidebar.nth((told += 2));
      expect(sidebar.values.slice(-2).map((v: any) => [v.conversationUpdated.title, v.conversationUpdated.lastMessage?.content ?? null])).toEqual([
        [`${kind} two`, null],
        [`${kind} two`, 'after'],
      ]);
    }
  });

  it("should send a creator's new group or project row to their other devices, as a member added or joining gets theirs", async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const sidebar = await listen(s, alice, 'subscription { conversationUpdated { id kind title unreadCount lastMessage { id } } }');
    const g = (await ok(gql(s.url, 'mutation { createGroup(name: "Fresh", isPrivate: true) { id } }', {}, alice.token))).createGroup.id;
    const p = (await ok(gql(s.url, 'mutation { createProject(title: "Plans") { id } }', {}, alice.token))).createProject.id;
    // Before, neither was told: a sidebar kept from this subscription never showed them (an outside probe).
    await sidebar.nth(2);
    const rows = (await ok(gql(s.url, CONVERSATIONS, { first: 10 }, alice.token))).conversations.edges.map((e: any) => e.node);
    const [ofGroup, ofProject] = [rows.find((r: any) => r.group?.id === g), rows.find((r: any) => r.project?.id === p)];
    expect(sidebar.values.map((v) => v.conversationUpdated)).toEqual([
      { id: ofGroup.id, kind: 'GROUP', title: 'Fresh', unreadCount: 0, lastMessage: null },
      { id: ofProject.id, kind: 'PROJECT', title: 'Plans', unreadCount: 0, lastMessage: null },
    ]);
  });

  it("should send the row when its last message is edited or deleted, to those whose last message it is", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url, { displayName: 'Alice A.' }), await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const g = await group(s.url, alice, 'Edits', [bob]);
    const EDIT = 'mutation($m: ID!, $t: String!) { editMessage(messageId: $m, content: $t) { id } }';
    const DELETE = 'mutation($m: ID!) { deleteMessage(messageId: $m) }';
    const sidebar = await listen(s, bob, UPDATED);
    const older = await send(s.url, alice.token, { groupId: g, content: 'first' });
    const last = await send(s.url, alice.token, { groupId: g, content: 'second' });
    await sidebar.nth(2);
    // Not the last message: no row changes.
    await ok(gql(s.url, EDIT, { m: older.id, t: 'first, fixed' }, alice.token));
    await ok(gql(s.url, EDIT, { m: last.id, t: 'second, fixed' }, alice.token));
    expect((await sidebar.nth(3)).conversationUpdated).toMatchObject({ title: 'Edits', unreadCount: 2, lastMessage: { id: last.id, content: 'second, fixed' } });
    await ok(gql(s.url, DELETE, { m: last.id }, alice.token));
    expect((await sidebar.nth(4)).conversationUpdated).toMatchObject({ title: 'Edits', unreadCount: 2, lastMessage: { id: last.id, content: null } });
    // A direct conversation: the other side's row keeps its title (the sender's name).
    const direct = await send(s.url, alice.token, { toUserId: bob.id, content: 'psst' });
    await sidebar.nth(5);
    await ok(gql(s.url, EDIT, { m: direct.id, t: 'psst, fixed' }, alice.token));
    expect((await sidebar.nth(6)).conversationUpdated).toMatchObject({ title: 'Alice A.', lastMessage: { id: direct.id, content: 'psst, fixed' } });
    // A private project message is the last message of its two users only.
    const p = (await buildProject(s.url, alice, { participants: [bob, carol] })).id;
    const open = await send(s.url, alice.token, { projectId: p, content: 'to all' });
    const thirdSidebar = await listen(s, carol, UPDATED);
    const secret = await send(s.url, alice.token, { projectId: p, toUserId: bob.id, content: 'to bob' });
    // Bob's rows: the project's as he was added (no message yet), 'to all', 'to bob'.
    await sidebar.nth(9);
    await ok(gql(s.url, EDIT, { m: secret.id, t: 'to bob, fixed' }, alice.token));
    expect((await sidebar.nth(10)).conversationUpdated).toMatchObject({ lastMessage: { id: secret.id, content: 'to bob, fixed' } });
    // A barrier for Carol: her row's last message changes; had the private edit reached her, it would have come first.
    await ok(gql(s.url, EDIT, { m: open.id, t: 'to all, fixed' }, alice.token));
    expect((await thirdSidebar.nth(1)).conversationUpdated).toMatchObject({ lastMessage: { id: open.id, content: 'to all, fixed' } });
    expect(thirdSidebar.values).toHaveLength(1);
    expect(sidebar.values.map((v) => v.conversationUpdated.lastMessage?.content)).toEqual(['first', 'second', 'second, fixed', null, 'psst', 'psst, fixed', undefined, 'to all', 'to bob', 'to bob, fixed']);
  });

  it('should give existing members their rows when the migration runs over existing data', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const g = await group(s.url, alice, 'Old', [bob]);
    await send(s.url, alice.token, { groupId: g, content: 'old group message' });
    await send(s.url, alice.token, { toUserId: bob.id, content: 'old direct message' });
    const migrator = s.database.orm.getMigrator();
    // Back to before this feature (its migrations reverted, the latest first), data kept; then forward again.
    const from = migrationsList.findIndex((m) => m.name.endsWith('_Conversations'));
    const migrations = migrationsList.slice(from).map((m) => m.name);
    for (const name of [...migrations].reverse()) await migrator.down({ migrations: [name] });
    expect(await sql(s.env.DATABASE_URL!, "select 1 from pg_tables where tablename = 'conversation_members'")).toEqual([]);
    await migrator.up({ migrations });
    const rows = (await conversations(s.url, bob)).edges.map((e: any) => [e.node.kind, e.node.unreadCount, e.node.lastMessage?.content ?? null]);
    expect(rows).toEqual([
      ['DIRECT', 0, 'old direct message'],
      ['GROUP', 0, 'old group message'],
      ['GROUP', 0, null],
    ]);
  });
});

describeRedis('conversations on two instances', () => {
  it('should deliver conversationUpdated and readReceipt caused on B to subscribers on A once', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob] = [await signup(a.url), await signup(a.url)];
    const g = await group(b.url, alice, 'Both', [bob]);
    const sidebar = await listen(a, bob, UPDATED);
    const receipts = await listen(a, alice, RECEIPT);
    const m = await send(b.url, alice.token, { groupId: g, content: 'via B' });
    await ok(gql(b.url, MARK, { c: { groupId: g } }, bob.token));
    expect((await sidebar.nth(1)).conversationUpdated).toMatchObject({ unreadCount: 1, lastMessage: { id: m.id } });
    expect((await sidebar.nth(2)).conversationUpdated).toMatchObject({ unreadCount: 0, lastReadMessageId: m.id });
    expect((await receipts.nth(1)).readReceipt).toMatchObject({ user: { id: bob.id }, lastReadMessageId: m.id });
    // A later message read as a barrier: once its events arrive, a duplicate of the first ones would have.
    const later = await send(b.url, alice.token, { groupId: g, content: 'later via B' });
    await ok(gql(b.url, MARK, { c: { groupId: g } }, bob.token));
    await sidebar.nth(4);
    await receipts.nth(2);
    expect(sidebar.values.map((v) => [v.conversationUpdated.unreadCount, v.conversationUpdated.lastMessage.id])).toEqual([
      [1, m.id],
      [0, m.id],
      [1, later.id],
      [0, later.id],
    ]);
    expect(receipts.values.map((v) => v.readReceipt.lastReadMessageId)).toEqual([m.id, later.id]);
  });

  it("should end on a reader's furthest marker when two marks' receipts arrive the other way round", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob] = [await signup(a.url), await signup(a.url)];
    const g = await group(a.url, alice, 'Marks crossing', [bob]);
    const first = await send(a.url, alice.token, { groupId: g, content: 'first' });
    const second = await send(a.url, alice.token, { groupId: g, content: 'second' });
    const receipts = await listen(b, alice, RECEIPT);
    // A's receipt of the first mark is held (a slow instance), while B's of the second goes out.
    const hold = holdNextPublishOf(a.services.pubsub, Topic.ReadReceipt);
    const early = gql(a.url, MARK, { c: { groupId: g }, m: first.id }, bob.token);
    await eventually(() => hold.held());
    await ok(gql(b.url, MARK, { c: { groupId: g }, m: second.id }, bob.token));
    await receipts.nth(1);
    hold.release();
    await ok(early);
    await sleep(300);
    expect(receipts.values.map((v) => v.readReceipt.lastReadMessageId)).toEqual([second.id]);
    hold.restore();
  });
});
