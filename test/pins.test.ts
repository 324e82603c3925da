import { codeOf, gql, listen, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { befriend, buildProject, groupWith, request, sendMessage, signup } from './helpers/factories';
import { PinMessageDocument, PinnedMessagesDocument } from '../generated/client/graphql';
import { snapshot, sql, whileHolding } from './helpers/db';

const PIN = 'mutation($m: ID!) { pinMessage(messageId: $m) { id pinnedAt pinnedBy { id } } }';
const UNPIN = 'mutation($m: ID!) { unpinMessage(messageId: $m) { id pinnedAt pinnedBy { id } } }';
const PINNED = 'query($c: ConversationInput!) { conversation(conversation: $c) { pinnedMessages { id content pinnedAt pinnedBy { id } } } }';
const EVENTS = 'subscription($c: ConversationInput) { messageEvent(conversation: $c) { kind conversationId message { id pinnedAt pinnedBy { id } } } }';

describe('pins', () => {
  it('should deliver a new message with pinnedAt null without asking the database for its pin', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ada, 'Pins live', [bo]);
    const sub = await listen(s, bo, 'subscription { messageAdded { content pinnedAt pinnedBy { id } } }');
    const asked = jest.spyOn(s.services.pins, 'pinsOf');
    for (let i = 0; i < 3; i++) await sendMessage(s.url, ada.token, { groupId: g, content: `fresh ${i}` });
    await sub.nth(3);
    expect(sub.values.map((v) => v.messageAdded)).toEqual([0, 1, 2].map((i) => ({ content: `fresh ${i}`, pinnedAt: null, pinnedBy: null })));
    expect(asked).not.toHaveBeenCalled();
  });

  it('should let any member of a group pin and unpin, tell every messageEvent subscriber, and list pins newest first', async () => {
    const s = await createTestServer();
    const [alice, bob, carol, eve] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Pins', [bob, carol]);
    const m1 = await sendMessage(s.url, alice.token, { groupId: g, content: 'the wifi password' });
    const m2 = await sendMessage(s.url, carol.token, { groupId: g, content: 'the agenda' });
    const events = await listen(s, carol, EVENTS, { c: { groupId: g } });
    const before = await snapshot(s.env.DATABASE_URL!);
    // Not a member, or no such message: the same answer.
    expect(codeOf(await gql(s.url, PIN, { m: m1.id }, eve.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, PIN, { m: '00000000-0000-4000-8000-000000000000' }, bob.token))).toBe('NOT_FOUND');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);

    const pinned = (await request(s.url, PinMessageDocument, { messageId: m1.id }, bob.token)).pinMessage;
    expect(pinned).toMatchObject({ id: m1.id, pinnedBy: { id: bob.id } });
    expect(pinned.pinnedAt).toEqual(expect.any(String));
    // Twice changes nothing.
    expect((await ok(gql(s.url, PIN, { m: m1.id }, alice.token))).pinMessage).toEqual({ id: m1.id, pinnedAt: pinned.pinnedAt, pinnedBy: { id: bob.id } });
    await ok(gql(s.url, PIN, { m: m2.id }, alice.token));
    const e1 = (await events.nth(1)).messageEvent;
    expect(e1).toEqual({ kind: 'PINNED', conversationId: m1.conversationId, message: { id: m1.id, pinnedAt: pinned.pinnedAt, pinnedBy: { id: bob.id } } });
    expect((await events.nth(2)).messageEvent).toMatchObject({ kind: 'PINNED', message: { id: m2.id, pinnedBy: { id: alice.id } } });

    const list = (await request(s.url, PinnedMessagesDocument, { conversation: { groupId: g } }, carol.token)).conversation!.pinnedMessages;
    expect(list.map((m) => [m.id, m.pinnedBy?.id])).toEqual([
      [m2.id, alice.id],
      [m1.id, bob.id],
    ]);
    // History shows the pin too.
    const history = (await ok(gql(s.url, '{ history(conversation: { groupId: "' + g + '" }) { edges { node { id pinnedAt } } } }', {}, carol.token))).history.edges;
    expect(history.map((e: any) => e.node)).toEqual([
      { id: m1.id, pinnedAt: pinned.pinnedAt },
      { id: m2.id, pinnedAt: expect.any(String) },
    ]);

    expect((await ok(gql(s.url, UNPIN, { m: m1.id }, carol.token))).unpinMessage).toEqual({ id: m1.id, pinnedAt: null, pinnedBy: null });
    expect((await events.nth(3)).messageEvent).toEqual({ kind: 'UNPINNED', conversationId: m1.conversationId, message: { id: m1.id, pinnedAt: null, pinnedBy: null } });
    // Unpinning what is not pinned changes nothing and tells no one; a barrier event shows none came.
    expect((await ok(gql(s.url, UNPIN, { m: m1.id }, carol.token))).unpinMessage.pinnedAt).toBeNull();
    await ok(gql(s.url, UNPIN, { m: m2.id }, carol.token));
    expect((await events.nth(4)).messageEvent).toMatchObject({ kind: 'UNPINNED', message: { id: m2.id } });
    expect(events.values).toHaveLength(4);
    expect((await ok(gql(s.url, PINNED, { c: { groupId: g } }, bob.token))).conversation.pinnedMessages).toEqual([]);
  });

  it('should let either friend pin in a direct conversation, and only the owner in a project (never a private message)', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const d = await sendMessage(s.url, alice.token, { toUserId: bob.id, content: 'address' });
    expect((await ok(gql(s.url, PIN, { m: d.id }, bob.token))).pinMessage.pinnedBy).toEqual({ id: bob.id });
    expect(codeOf(await gql(s.url, PIN, { m: d.id }, carol.token))).toBe('NOT_FOUND');
    expect((await ok(gql(s.url, PINNED, { c: { userId: bob.id } }, alice.token))).conversation.pinnedMessages.map((m: any) => m.id)).toEqual([d.id]);

    const p = await buildProject(s.url, alice, { participants: [bob, carol] });
    const open = await sendMessage(s.url, bob.token, { projectId: p.id, content: 'brief' });
    const priv = await sendMessage(s.url, bob.token, { projectId: p.id, toUserId: alice.id, content: 'between us' });
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, PIN, { m: open.id }, bob.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(s.url, PIN, { m: priv.id }, carol.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, PIN, { m: priv.id }, alice.token))).toBe('BAD_USER_INPUT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    await ok(gql(s.url, PIN, { m: open.id }, alice.token));
    expect(codeOf(await gql(s.url, UNPIN, { m: open.id }, carol.token))).toBe('FORBIDDEN');
    expect((await ok(gql(s.url, PINNED, { c: { projectId: p.id } }, carol.token))).conversation.pinnedMessages.map((m: any) => m.id)).toEqual([open.id]);
    // A message of a sender the viewer blocks is one they can't see: NOT_FOUND before who may pin, as for reactions.
    const later = await sendMessage(s.url, bob.token, { projectId: p.id, content: 'after' });
    await ok(gql(s.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: bob.id }, carol.token));
    const blocked = await snapshot(s.env.DATABASE_URL!);
    expect([codeOf(await gql(s.url, PIN, { m: later.id }, carol.token)), codeOf(await gql(s.url, UNPIN, { m: open.id }, carol.token))]).toEqual(['NOT_FOUND', 'NOT_FOUND']);
    expect(codeOf(await gql(s.url, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id } }', { m: later.id }, carol.token))).toBe('NOT_FOUND');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(blocked);
  });

  it("should leave a blocked user's pinned messages out of the blocker's pinnedMessages, and no one else's", async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Pinned and blocked', [bob, carol]);
    const [fromBob, fromAlice] = [await sendMessage(s.url, bob.token, { groupId: g, content: 'by bob' }), await sendMessage(s.url, alice.token, { groupId: g, content: 'by alice' })];
    for (const m of [fromBob, fromAlice]) await ok(gql(s.url, PIN, { m: m.id }, alice.token));
    await ok(gql(s.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: bob.id }, carol.token));
    const pinned = async (u: { token: string }) => (await ok(gql(s.url, PINNED, { c: { groupId: g } }, u.token))).conversation.pinnedMessages.map((m: any) => m.id);
    expect(await pinned(carol)).toEqual([fromAlice.id]);
    expect(await pinned(alice)).toEqual([fromAlice.id, fromBob.id]);
    await ok(gql(s.url, 'mutation($u: ID!) { unblockUser(userId: $u) }', { u: bob.id }, carol.token));
    expect(await pinned(carol)).toEqual([fromAlice.id, fromBob.id]);
  });

  it('should hold at most 50 pins per conversation, a deleted message counting and showing nowhere', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Full', [bob]);
    const other = await groupWith(s.url, alice, 'Other', []);
    const ids: string[] = [];
    for (let i = 0; i < 51; i++) ids.push((await sendMessage(s.url, alice.token, { groupId: g, content: `note ${i}` })).id);
    await Promise.all(ids.slice(0, 50).map((m) => ok(gql(s.url, PIN, { m }, bob.token))));
    const before = await snapshot(s.env.DATABASE_URL!);
    const full = await gql(s.url, PIN, { m: ids[50] }, bob.token);
    expect([codeOf(full), full.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'messageId']);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // The limit is per conversation.
    const elsewhere = await sendMessage(s.url, alice.token, { groupId: other, content: 'elsewhere' });
    await ok(gql(s.url, PIN, { m: elsewhere.id }, alice.token));

    // A deleted message's pin is gone from the list and the count; the deleted message can't be pinned again.
    const events = await listen(s, bob, EVENTS, { c: { groupId: g } });
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: ids[0] }, alice.token));
    expect((await events.nth(1)).messageEvent).toEqual({ kind: 'DELETED', conversationId: expect.any(String), message: { id: ids[0], pinnedAt: null, pinnedBy: null } });
    const list = (await ok(gql(s.url, PINNED, { c: { groupId: g } }, bob.token))).conversation.pinnedMessages;
    expect(list).toHaveLength(49);
    expect(list.map((m: any) => m.id)).not.toContain(ids[0]);
    expect(codeOf(await gql(s.url, PIN, { m: ids[0] }, bob.token))).toBe('BAD_USER_INPUT');
    // ...nor unpinned (nothing is pinned to show): refused, nothing written, no one told.
    const deleted = await snapshot(s.env.DATABASE_URL!);
    const unpin = await gql(s.url, 'mutation($m: ID!) { unpinMessage(messageId: $m) { id } }', { m: ids[0] }, bob.token);
    expect([codeOf(unpin), unpin.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'messageId']);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(deleted);
    await ok(gql(s.url, PIN, { m: ids[50] }, bob.token));
    expect((await events.nth(2)).messageEvent).toMatchObject({ kind: 'PINNED', message: { id: ids[50] } });
    expect(codeOf(await gql(s.url, PIN, { m: ids[50] }, bob.token))).toBeUndefined();
    expect((await ok(gql(s.url, PINNED, { c: { groupId: g } }, bob.token))).conversation.pinnedMessages[0].id).toBe(ids[50]);
  });

  it('should refuse a pin or an unpin that waited on its message being deleted, and write no pin to the tombstone', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Pin against deletion', [bob]);
    const [m, pinned] = [await sendMessage(s.url, alice.token, { groupId: g, content: 'going' }), await sendMessage(s.url, alice.token, { groupId: g, content: 'pinned, going' })];
    await ok(gql(s.url, PIN, { m: pinned.id }, bob.token));
    const events = await listen(s, bob, EVENTS, { c: { groupId: g } });
    // A deletion holds the row, not yet committed, while bob's pin (which read the message before it) waits.
    const tombstone = 'update messages set content = null, deleted_at = now(), version = version + 1 where id = $1';
    const pin = await whileHolding(s.env.DATABASE_URL!, [[tombstone, [m.id]]], () => gql(s.url, PIN, { m: m.id }, bob.token));
    expect([codeOf(pin), pin.errors?.[0].message]).toEqual(['BAD_USER_INPUT', 'A deleted message cannot be pinned.']);
    const unpin = await whileHolding(s.env.DATABASE_URL!, [[tombstone, [pinned.id]]], () => gql(s.url, UNPIN, { m: pinned.id }, bob.token));
    expect([codeOf(unpin), unpin.errors?.[0].message]).toEqual(['BAD_USER_INPUT', 'A deleted message cannot be unpinned.']);
    // No pin written after the deletion, and the deleted one's row kept as the deletion left it.
    expect(await sql(s.env.DATABASE_URL!, 'select message_id from message_pins where conversation_key = (select conversation_key from messages where id = $1)', [m.id])).toEqual([{ message_id: pinned.id }]);
    // Taken away meanwhile (as its group's deletion does): NOT_FOUND, as for any message gone.
    const gone = await sendMessage(s.url, alice.token, { groupId: g, content: 'taken away' });
    expect(codeOf(await whileHolding(s.env.DATABASE_URL!, [['delete from messages where id = $1', [gone.id]]], () => gql(s.url, PIN, { m: gone.id }, bob.token)))).toBe('NOT_FOUND');
    // Subscribers were told of no pin (the held deletions told nothing: they were written by hand).
    await ok(gql(s.url, PIN, { m: (await sendMessage(s.url, alice.token, { groupId: g, content: 'barrier' })).id }, bob.token));
    expect((await events.nth(1)).messageEvent.kind).toBe('PINNED');
    expect(events.values).toHaveLength(1);
  });
});
