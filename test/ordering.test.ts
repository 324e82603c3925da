import { holdNextMessagePublish, loseNextPublish } from './helpers/publish';
import { eventually, gql, listen, ok, running } from './helpers/graphql';
import { initialized } from './helpers/raw-socket';
import { createTestServer, describeRedis } from './helpers/server';
import { befriend, buildProject, groupWith, sendMessage, signup } from './helpers/factories';

const HISTORY = 'query($g: ID!) { history(conversation: { groupId: $g }, last: 100) { edges { node { id } } } }';
const ROW = 'query($g: ID!) { conversation(conversation: { groupId: $g }) { unreadCount lastMessage { id } } }';

/**
 * The instances wait longer for a late publish than the default 0.5 s: on a loaded CI machine (two
 * test workers, PostgreSQL and Redis on two cores) a process can stall that long between a commit
 * and its publish. A publish lost here would still show as a gap.
 */
const HOLD = { MESSAGE_ORDER_HOLD: '5s' };

/**
 * Sends to one conversation commit one at a time (its head's row lock), but their answers and
 * events race afterwards: through two instances, or on one when PostgreSQL answers two commits
 * back to back. A client that appends what messageAdded brings must see history's order, and a
 * sidebar that keeps the last conversationUpdated must end where the stored row is.
 */
describeRedis('events of one conversation under concurrent sends', () => {
  it('should deliver messageAdded in history order and never move a row back, across two instances', async () => {
    const a = await createTestServer(HOLD);
    const b = await createTestServer(HOLD, { clean: false });
    const [ada, bo, cy] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const g = await groupWith(a.url, ada, 'Busy', [bo, cy]);
    const added = await listen(b, cy, 'subscription { messageAdded { id } }');
    const updated = await listen(b, cy, 'subscription { conversationUpdated { id unreadCount lastMessage { id } } }');

    // The first message an instance sees of a conversation opens its line there (see InOrder).
    const first = await sendMessage(b.url, bo.token, { groupId: g, content: 'first' });
    await added.nth(1);
    await updated.nth(1);

    const N = 60;
    await Promise.all(Array.from({ length: N }, (_, i) => sendMessage(i % 2 ? a.url : b.url, (i % 2 ? ada : bo).token, { groupId: g, content: `m${i}` })));
    const history = (await ok(gql(a.url, HISTORY, { g }, cy.token))).history.edges.map((e: any) => e.node.id);
    expect(history).toHaveLength(N + 1);
    expect(history[0]).toBe(first.id);

    await added.nth(N + 1);
    // No publish was lost here, so no wait was given up (one would let what waited go out of order).
    expect(b.services.pubsub.order.gaps).toBe(0);
    // ...while each instance held a late one as long as MESSAGE_ORDER_HOLD says.
    expect([a, b].map((x) => x.services.pubsub.order.holdMs)).toEqual([5000, 5000]);
    expect(added.values.map((v: any) => v.messageAdded.id)).toEqual(history);

    // One row per message; the unread count only grows (cy reads nothing), and the last row is the stored one.
    await updated.nth(N + 1);
    const rows = updated.values.map((v: any) => v.conversationUpdated);
    const unread = rows.map((r: any) => r.unreadCount);
    expect(unread).toEqual([...unread].sort((x, y) => x - y));
    const stored = (await ok(gql(a.url, ROW, { g }, cy.token))).conversation;
    expect(stored).toEqual({ unreadCount: N + 1, lastMessage: { id: history[N] } });
    expect(rows).toHaveLength(N + 1);
    expect(rows[N]).toMatchObject(stored);

    // Operators see how often messages waited for an earlier one.
    const metrics = await (await fetch(new URL('/metrics', b.url))).text();
    const reordered = Number(/^parley_messages_reordered_total (\d+)/m.exec(metrics)?.[1]);
    expect(reordered).toBe(b.services.pubsub.order.held);
  });

  it('should order a direct conversation on each user\'s own line, and private project messages among the public ones', async () => {
    const a = await createTestServer(HOLD);
    const b = await createTestServer(HOLD, { clean: false });
    const [ada, bo, cy] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    await befriend(a.url, ada, bo);
    const p = (await buildProject(a.url, ada, { title: 'Order', participants: [bo, cy] })).id;
    // Each user on the other's instance's side: ada's socket on A, bo's and cy's on B.
    const onA = await listen(a, ada, 'subscription { messageAdded { id content } }');
    const onB = await listen(b, bo, 'subscription { messageAdded { id content } }');
    const cyOnB = await listen(b, cy, 'subscription($p: ID!) { messageAdded(conversation: { projectId: $p }) { id content } }', { p });
    const direct = (i: number) => ({ toUserId: i % 2 ? bo.id : ada.id, content: `d${i}` });
    // Each line opens with a first message (see InOrder).
    const first = await sendMessage(a.url, ada.token, direct(1));
    await Promise.all([onA.nth(1), onB.nth(1)]);
    await sendMessage(b.url, cy.token, { projectId: p, content: 'p-first' });
    await Promise.all([onA.nth(2), onB.nth(2), cyOnB.nth(1)]);

    const N = 30;
    await Promise.all(Array.from({ length: N }, (_, i) => sendMessage(i % 2 ? a.url : b.url, (i % 2 ? ada : bo).token, direct(i))));
    // A project: public messages from all three, and private ones between ada and bo.
    const projectSends = Array.from({ length: N }, (_, i) =>
      i % 3 === 0 ? { sender: ada, url: a.url, input: { projectId: p, toUserId: bo.id, content: `p${i}` } } : { sender: i % 3 === 1 ? bo : cy, url: b.url, input: { projectId: p, content: `p${i}` } },
    );
    await Promise.all(projectSends.map((x) => sendMessage(x.url, x.sender.token, x.input)));

    const HISTORY_OF = 'query($c: ConversationInput!) { history(conversation: $c, last: 100) { edges { node { id } } } }';
    const ids = async (url: string, token: string, c: Record<string, string>) => (await ok(gql(url, HISTORY_OF, { c }, token))).history.edges.map((e: any) => e.node.id);
    const directHistory = await ids(a.url, ada.token, { userId: bo.id });
    expect(directHistory[0]).toBe(first.id);
    const adaProject = await ids(a.url, ada.token, { projectId: p });
    const boProject = await ids(b.url, bo.token, { projectId: p });
    const cyProject = await ids(b.url, cy.token, { projectId: p });
    expect([adaProject.length, boProject.length, cyProject.length]).toEqual([N + 1, N + 1, N + 1 - N / 3]);

    // Everything each socket got, in the order history shows it, with nothing given up.
    await Promise.all([onA.nth(2 + N + N), onB.nth(2 + N + N), cyOnB.nth(N + 1 - N / 3)]);
    const got = (sub: { values: any[] }, prefix: string) => sub.values.map((v) => v.messageAdded).filter((m: any) => m.content.startsWith(prefix)).map((m: any) => m.id);
    expect(got(onA, 'd')).toEqual(directHistory);
    expect(got(onB, 'd')).toEqual(directHistory);
    expect(got(onA, 'p')).toEqual(adaProject);
    expect(got(onB, 'p')).toEqual(boProject);
    expect(got(cyOnB, 'p')).toEqual(cyProject);
    expect([a.services.pubsub.order.gaps, b.services.pubsub.order.gaps]).toEqual([0, 0]);
  });

  it("should read back a message whose publish was lost before giving its gap up, and publish a recent one again on its send's retry, once", async () => {
    const hold = { MESSAGE_ORDER_HOLD: '300ms' };
    const a = await createTestServer(hold);
    const b = await createTestServer(hold, { clean: false });
    const [ada, cy] = [await signup(a.url), await signup(a.url)];
    const g = await groupWith(a.url, ada, 'Lossy', [cy]);
    const added = await listen(b, cy, 'subscription { messageAdded { id content mentions { id } } }');
    const send = (content: string, clientMessageId?: string) => sendMessage(a.url, ada.token, { groupId: g, content, clientMessageId });
    const m1 = await send('one');
    await added.nth(1);
    loseNextPublish(a.services.pubsub);
    const m2 = await send(`two @${cy.username}`);
    const m3 = await send('three');
    // m2 reaches B's subscriber from the database, before m3, once m3 waited MESSAGE_ORDER_HOLD for it.
    await added.nth(3);
    expect(added.values.map((v: any) => v.messageAdded.id)).toEqual([m1.id, m2.id, m3.id]);
    expect(added.values[1].messageAdded).toEqual({ id: m2.id, content: `two @${cy.username}`, mentions: [{ id: cy.id }] });
    expect([b.services.pubsub.order.filled, b.services.pubsub.order.gaps]).toEqual([1, 0]);

    // The last message's publish lost: nothing after it shows the gap, but its client's retry publishes it again.
    loseNextPublish(a.services.pubsub);
    const m4 = await send('four', 'four-once');
    expect((await send('four', 'four-once')).id).toBe(m4.id);
    await added.nth(4);
    expect(added.values[3].messageAdded.id).toBe(m4.id);
    // A retry of one delivered already delivers nothing again; the next message comes next.
    expect((await send('four', 'four-once')).id).toBe(m4.id);
    const m5 = await send('five');
    await added.nth(5);
    expect(added.values.map((v: any) => v.messageAdded.id)).toEqual([m1.id, m2.id, m3.id, m4.id, m5.id]);
    const metrics = await (await fetch(new URL('/metrics', b.url))).text();
    expect(metrics).toMatch(/^parley_messages_order_filled_total 1$/m);
  });

  it("should deliver a message whose sender's instance died between its commit and its publish once a retry through another instance finds it, though nothing of its conversation reached the subscriber's instance before", async () => {
    const a = await createTestServer(HOLD);
    const b = await createTestServer(HOLD, { clean: false });
    const [ada, cy] = [await signup(a.url), await signup(a.url)];
    const g = await groupWith(a.url, ada, 'Crash', [cy]);
    const added = await listen(b, cy, 'subscription { messageAdded { id content } }');
    // Stored through A, its publish lost (A died): the client, without an answer, retries through B.
    loseNextPublish(a.services.pubsub);
    const first = await sendMessage(a.url, ada.token, { groupId: g, content: 'lost', clientMessageId: 'crash-1' });
    const retried = await sendMessage(b.url, ada.token, { groupId: g, content: 'lost', clientMessageId: 'crash-1' });
    expect(retried.id).toBe(first.id);
    // B's subscriber gets it from the retry, not from a later message's read of what it missed.
    expect(await added.nth(1)).toEqual({ messageAdded: { id: first.id, content: 'lost' } });
    const next = await sendMessage(a.url, ada.token, { groupId: g, content: 'next' });
    await added.nth(2);
    expect(await added.settle(300)).toHaveLength(2);
    expect(added.values.map((v: any) => v.messageAdded.id)).toEqual([first.id, next.id]);
  });

  it("should read, for a socket that just connected, a message sent just before its line's first one, and deliver it first, once", async () => {
    const a = await createTestServer(HOLD);
    const b = await createTestServer(HOLD, { clean: false });
    const [ada, cy] = [await signup(a.url), await signup(a.url)];
    const g = await groupWith(a.url, ada, 'Opening', [cy]);
    // Cy connects to B: B takes the group's channel now, and has no line for it yet.
    const added = await listen(b, cy, 'subscription { messageAdded { id content } }');
    // m1's publish through A is held (a slow instance) until m2, sent after it through B, was delivered.
    const held = holdNextMessagePublish(a.services.pubsub);
    const m1 = sendMessage(a.url, ada.token, { groupId: g, content: 'one' });
    await held.taken();
    await eventually(async () => (await ok(gql(a.url, HISTORY, { g }, cy.token))).history.edges.length === 1);
    const m2 = await sendMessage(b.url, ada.token, { groupId: g, content: 'two' });
    await added.nth(1);
    held.release();
    await m1;
    const m3 = await sendMessage(a.url, ada.token, { groupId: g, content: 'three' });
    await added.nth(3);
    expect(await added.settle(300)).toHaveLength(3);
    expect(added.values.map((v: any) => v.messageAdded.content)).toEqual(['one', 'two', 'three']);
    expect(added.values.map((v: any) => v.messageAdded.id)).toEqual([(await m1).id, m2.id, m3.id]);
  });
});

describe('a conversation line while no subscription takes its messages', () => {
  it("should keep a connected member's line in place through messages no subscription here took", async () => {
    // The member's socket keeps the group's channel taken, and with it the group's line; a
    // message sent while no messageAdded subscription is open here still takes its place there.
    const s = await createTestServer();
    const [ann, ben] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ann, 'Line', [ben]);
    const sock = await initialized(s.wsUrl, ben.token);
    const sub = (id: string) => sock.send({ id, type: 'subscribe', payload: { query: 'subscription { messageAdded { id } }' } });
    sub('a');
    await running(s, 'messageAdded', 1);
    const first = await sendMessage(s.url, ann.token, { groupId: g, content: 'first' });
    expect((await sock.next('next', 'a')).payload.data.messageAdded.id).toBe(first.id);
    sock.send({ id: 'a', type: 'complete' });
    await running(s, 'messageAdded', 0);
    await sendMessage(s.url, ann.token, { groupId: g, content: 'unheard' });
    sub('b');
    await running(s, 'messageAdded', 1);
    const third = await sendMessage(s.url, ann.token, { groupId: g, content: 'third' });
    // Had the line missed 'unheard', it was a gap there, read back and delivered first to a
    // subscription opened after it.
    expect((await sock.next('next', 'b')).payload.data.messageAdded.id).toBe(third.id);
  });
});
