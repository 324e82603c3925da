import { gql, listen, ok } from './helpers/graphql';
import { createTestServer, describeRedis } from './helpers/server';
import { groupWith, sendMessage, signup } from './helpers/factories';

const HISTORY = 'query($g: ID!) { history(conversation: { groupId: $g }, last: 100) { edges { node { id } } } }';
const ROW = 'query($g: ID!) { conversation(conversation: { groupId: $g }) { unreadCount lastMessage { id } } }';

/**
 * Sends to one conversation commit one at a time (its head's row lock), but their answers and
 * events race afterwards: through two instances, or on one when PostgreSQL answers two commits
 * back to back. A client that appends what messageAdded brings must see history's order, and a
 * sidebar that keeps the last conversationUpdated must end where the stored row is.
 */
describeRedis('events of one conversation under concurrent sends', () => {
  it('should deliver messageAdded in history order and never move a row back, across two instances', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
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
});
