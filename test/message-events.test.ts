import { codeOf, eventually, frameLog, gql, listen, ok, running, sleep, wsClient } from './helpers/graphql';
import { holdNextMessagePublish, holdNextPublishOf } from './helpers/publish';
import { Topic } from '../src/shared/pubsub/topics';
import { createTestServer, describeRedis } from './helpers/server';
import { befriend, buildGroup, groupWith, sendMessage, signup, request, type TestUser } from './helpers/factories';
import { HistoryDocument } from '../generated/client/graphql';
import { snapshot, sql, whileHolding } from './helpers/db';
import { messageRepository } from '../src/modules/message/message.repository';
import { threadRepository } from '../src/modules/message/thread.repository';

const EDIT = 'mutation($m: ID!, $t: String!) { editMessage(messageId: $m, content: $t) { id content editedAt } }';
const DELETE = 'mutation($m: ID!) { deleteMessage(messageId: $m) }';
const ADD = 'mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) { id reactions { emoji count reactedByMe } } }';
const REMOVE = 'mutation($m: ID!, $e: String!) { removeReaction(messageId: $m, emoji: $e) { id reactions { emoji count reactedByMe } } }';
const EVENTS = 'subscription($c: ConversationInput) { messageEvent(conversation: $c) { kind conversationId message { id content editedAt deletedAt reactions { emoji count reactedByMe } } } }';
const LAST = '{ conversations(first: 5) { edges { node { kind lastMessage { id content deletedAt } } } } }';
const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');

/**
 * Runs `act` with another call let in as it reads what it answers: the next `obj[method]` call
 * starts `crossing` and gives it 300 ms first (one that needs the message's row, which `act` holds,
 * waits for its commit). Returns `act`'s answer and `crossing`'s, still on its way.
 */
async function crossedAsItReads<A>(obj: Record<string, any>, method: string, crossing: () => Promise<any>, act: () => Promise<A>): Promise<[A, Promise<any>]> {
  const real = obj[method].bind(obj);
  let crossed: Promise<any> | undefined;
  const spy = jest.spyOn(obj, method).mockImplementationOnce(async (...args: unknown[]) => {
    crossed = crossing();
    await sleep(300);
    return real(...args);
  });
  try {
    const answer = await act();
    return [answer, crossed!];
  } finally {
    spy.mockRestore();
  }
}

describe('editing, deleting and reacting', () => {
  it('should let the sender edit, show it in history and every messageEvent subscriber, and refuse anyone else or an empty edit', async () => {
    const s = await createTestServer();
    const [alice, bob, eve] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Edits', [bob]);
    const secret = await groupWith(s.url, eve, 'Secret', []);
    const hidden = await sendMessage(s.url, eve.token, { groupId: secret, content: 'eve only' });
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'helo' });
    const events = await listen(s, bob, EVENTS, { c: { groupId: g } });
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, EDIT, { m: m.id, t: 'mine now' }, bob.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(s.url, EDIT, { m: m.id, t: '   ' }, alice.token))).toBe('BAD_USER_INPUT');
    // Unknown and invisible get the same answer, so ids can't be probed.
    const unknown = await gql(s.url, EDIT, { m: '00000000-0000-4000-8000-000000000000', t: 'x' }, alice.token);
    const invisible = await gql(s.url, EDIT, { m: hidden.id, t: 'x' }, alice.token);
    expect([codeOf(unknown), codeOf(invisible)]).toEqual(['NOT_FOUND', 'NOT_FOUND']);
    expect(invisible.errors![0].message).toBe(unknown.errors![0].message);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);

    const edited = (await ok(gql(s.url, EDIT, { m: m.id, t: ' hello ' }, alice.token))).editMessage;
    expect(edited).toMatchObject({ id: m.id, content: 'hello' });
    expect(edited.editedAt).toEqual(expect.any(String));
    const event = (await events.nth(1)).messageEvent;
    expect(event).toMatchObject({ kind: 'EDITED', conversationId: m.conversationId, message: { id: m.id, content: 'hello', editedAt: edited.editedAt } });
    const node = (await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 10 }, bob.token)).history.edges[0].node;
    expect(node).toMatchObject({ id: m.id, content: 'hello', editedAt: edited.editedAt, deletedAt: null, conversationId: m.conversationId });
    expect((await ok(gql(s.url, LAST, {}, bob.token))).conversations.edges[0].node.lastMessage).toMatchObject({ id: m.id, content: 'hello' });
    // The same text again is no edit: nothing written, no event (the next one subscribers get is the next real edit).
    const same = await snapshot(s.env.DATABASE_URL!);
    expect((await ok(gql(s.url, EDIT, { m: m.id, t: 'hello\n' }, alice.token))).editMessage).toEqual(edited);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(same);
    await ok(gql(s.url, EDIT, { m: m.id, t: 'hello!' }, alice.token));
    expect((await events.nth(2)).messageEvent).toMatchObject({ kind: 'EDITED', message: { content: 'hello!' } });
  });

  it('should compare an edit with the text as it is once its row is locked: an edit committed meanwhile is not answered from before it', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Racing edits', [bob]);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'first' });
    // Another edit holds the row with new text, not yet committed, while this one asks for the old text back.
    const back = whileHolding(s.env.DATABASE_URL!, [[`update messages set content = 'second', edited_at = now(), version = version + 1 where id = $1`, [m.id]]], () =>
      gql(s.url, EDIT, { m: m.id, t: 'first' }, alice.token),
    );
    // Applied after the other one, as its answer says: not a no-op read from before it.
    expect((await ok(back)).editMessage).toMatchObject({ content: 'first', editedAt: expect.any(String) });
    expect(await sql(s.env.DATABASE_URL!, 'select content from messages where id = $1', [m.id])).toEqual([{ content: 'first' }]);
  });

  it("should tell a direct message's peer that only its sender deletes it, naming no group's rights", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const m = await sendMessage(s.url, alice.token, { toUserId: bob.id, content: 'mine to delete' });
    const refused = await gql(s.url, DELETE, { m: m.id }, bob.token);
    expect([codeOf(refused), refused.errors![0].message]).toEqual(['FORBIDDEN', 'Only the sender can delete this message.']);
  });

  it("should delete as a tombstone (the sender or the group's owner), drop the attachment's bytes, and answer a retry with the deleted message", async () => {
    const s = await createTestServer();
    const [owner, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, owner, 'Moderated', [bob, carol]);
    const input = { groupId: g, content: 'look', attachment: { fileName: 'dot.png', base64: PNG.toString('base64') }, clientMessageId: 'once' };
    const m = await sendMessage(s.url, bob.token, input);
    const attachmentId = (await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 10 }, bob.token)).history.edges[0].node.attachment!.id;
    expect((await ok(gql(s.url, EDIT, { m: m.id, t: 'look again' }, bob.token))).editMessage.editedAt).toEqual(expect.any(String));
    const events = await listen(s, carol, EVENTS);
    const refused = await gql(s.url, DELETE, { m: m.id }, carol.token);
    expect([codeOf(refused), refused.errors![0].message]).toEqual(['FORBIDDEN', "Only the sender, or the group's owner or an admin, can delete a message."]);
    expect((await ok(gql(s.url, DELETE, { m: m.id }, owner.token))).deleteMessage).toBe(true);

    const node = (await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 10 }, carol.token)).history.edges[0].node;
    // Nothing of what it said, nor that it was edited.
    expect(node).toMatchObject({ id: m.id, createdAt: m.createdAt, sender: { id: bob.id }, content: null, attachment: null, editedAt: null });
    expect(node.deletedAt).toEqual(expect.any(String));
    expect((await events.nth(1)).messageEvent).toMatchObject({ kind: 'DELETED', message: { id: m.id, content: null, editedAt: null, deletedAt: node.deletedAt } });
    expect(await sql(s.env.DATABASE_URL!, 'select id from attachments where id = $1', [attachmentId])).toEqual([]);
    // A tombstone an earlier release left with its edit's time shows none either.
    await sql(s.env.DATABASE_URL!, 'update messages set edited_at = now() where id = $1', [m.id]);
    expect((await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 10 }, carol.token)).history.edges[0].node.editedAt).toBeNull();
    const download = await fetch(s.url.replace('/graphql', `/attachments/${attachmentId}`), { headers: { authorization: `Bearer ${bob.token}` } });
    expect(download.status).toBe(404);
    expect((await ok(gql(s.url, LAST, {}, carol.token))).conversations.edges[0].node.lastMessage).toMatchObject({ id: m.id, content: null, deletedAt: node.deletedAt });
    // The retry of the deleted message's send returns it, deleted; nothing new is stored.
    const retry = (await ok(gql(s.url, 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id content deletedAt } }', { input }, bob.token))).sendMessage;
    expect(retry).toEqual({ id: m.id, content: null, deletedAt: node.deletedAt });
    // Gone is gone: editing or reacting to it is refused.
    expect(codeOf(await gql(s.url, EDIT, { m: m.id, t: 'back' }, bob.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, ADD, { m: m.id, e: '👍' }, bob.token))).toBe('BAD_USER_INPUT');
  });

  it('should take a flag, a keycap and every emoji sequence as one emoji each, and no emoji with invisible marks after it', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const g = await groupWith(s.url, alice, 'Flags', []);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'flags' });
    // Flags, keycaps, a subdivision's flag (tags), skin tones, ZWJ sequences with and without U+FE0F.
    // The last, Unicode 16's face with bags under eyes: a recent emoji this runtime's tables know.
    const good = ['\u{1F1EB}\u{1F1F7}', '1\ufe0f\u20e3', '#\u20e3', '\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}', '👍🏽', '🏳️‍🌈', '👁️‍🗨️', '🧑🏻‍🤝‍🧑🏿', '\u{1FAE9}'];
    for (const e of good) await ok(gql(s.url, ADD, { m: m.id, e }, alice.token));
    // Each in its one form: a keycap with U+FE0F.
    const stored = good.map((e) => (e === '#\u20e3' ? '#\ufe0f\u20e3' : e));
    expect((await ok(gql(s.url, ADD, { m: m.id, e: '\u{1F1EB}\u{1F1F7}' }, alice.token))).addReaction.reactions.map((r: { emoji: string }) => r.emoji).sort()).toEqual([...stored].sort());
    // An emoji with something invisible after it is one grapheme that looks like the emoji: not a reaction of its own.
    // A skin tone on a pictograph that takes none (❤🏽, 😀🏽): no picker offers it, and it would count apart from ❤️.
    // A reserved code point of the emoji blocks (a box: an outside probe), alone or joined.
    for (const bad of ['👍\u034f', '👍\u200d', '👍\u{E0061}', '👍\ufe0e', '👍\u0301', '👍\u20e3', '👍\ufe0f\ufe0f', '\u{1F3F4}\u{E0067}', '❤🏽', '😀🏽', '❤\ufe0f🏽', '\u{1FAFF}', '\u{1FC00}', '\u{1FFFD}', '\u{1FC00}\u200d\u{1FC01}', '👍\u200d\u{1FAFF}']) {
      expect([bad, codeOf(await gql(s.url, ADD, { m: m.id, e: bad }, alice.token))]).toEqual([bad, 'BAD_USER_INPUT']);
    }
    // A flag no picker offers: two letters naming no region, or a black flag whose tags spell no
    // subdivision (it would look like 🏴 and carry hidden text: an outside probe).
    const tags = (s: string) => `\u{1F3F4}${[...s].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join('')}\u{E007F}`;
    for (const bad of ['\u{1F1E6}\u{1F1E6}', '\u{1F1FD}\u{1F1FD}', tags('dm me 5550100'), tags('zz'), tags('gbeng1')]) {
      expect([bad, codeOf(await gql(s.url, ADD, { m: m.id, e: bad }, alice.token))]).toEqual([bad, 'BAD_USER_INPUT']);
    }
    expect((await ok(gql(s.url, ADD, { m: m.id, e: tags('gbwls') }, alice.token))).addReaction.reactions).toHaveLength(good.length + 1);
    await ok(gql(s.url, REMOVE, { m: m.id, e: tags('gbwls') }, alice.token));
    // One that an earlier release took is still removable.
    await sql(s.env.DATABASE_URL!, 'insert into message_reactions (message_id, user_id, emoji, created_at) values ($1, $2, $3, now()), ($1, $2, $4, now())', [m.id, alice.id, '👍\u034f', '\u{1F1E6}\u{1F1E6}']);
    await ok(gql(s.url, REMOVE, { m: m.id, e: '\u{1F1E6}\u{1F1E6}' }, alice.token));
    const left = (await ok(gql(s.url, REMOVE, { m: m.id, e: '👍\u034f' }, alice.token))).removeReaction.reactions.map((r: { emoji: string }) => r.emoji);
    expect(left.sort()).toEqual([...stored].sort());
    expect(codeOf(await gql(s.url, REMOVE, { m: m.id, e: 'a' }, alice.token))).toBe('BAD_USER_INPUT');
  });

  it('should count reactions per emoji, idempotently, with reactedByMe per viewer, live and in history', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const m = await sendMessage(s.url, alice.token, { toUserId: bob.id, content: 'react to me' });
    const aliceSees = await listen(s, alice, EVENTS);
    const bobSees = await listen(s, bob, EVENTS, { c: { userId: alice.id } });
    const before = await snapshot(s.env.DATABASE_URL!);
    // A lone regional indicator or keycap mark is one grapheme, and no emoji.
    for (const bad of ['', 'a', '👍👍', '👍 ', 'ab', ':+1:', '\u{1F1EB}', '\u20e3', '\u{1F1EB}\u20e3', 'a\u20e3']) {
      expect([bad, codeOf(await gql(s.url, ADD, { m: m.id, e: bad }, bob.token))]).toEqual([bad, 'BAD_USER_INPUT']);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);

    await ok(gql(s.url, ADD, { m: m.id, e: '👍' }, bob.token));
    const twice = (await ok(gql(s.url, ADD, { m: m.id, e: '👍' }, bob.token))).addReaction;
    expect(twice.reactions).toEqual([{ emoji: '👍', count: 1, reactedByMe: true }]);
    // One grapheme each, however many code points.
    const family = '👨‍👩‍👧';
    await ok(gql(s.url, ADD, { m: m.id, e: family }, alice.token));
    await ok(gql(s.url, ADD, { m: m.id, e: '👍' }, alice.token));
    const h = async (token: string) => (await request(s.url, HistoryDocument, { conversation: { userId: token === alice.token ? bob.id : alice.id }, last: 10 }, token)).history.edges[0].node.reactions;
    expect(await h(alice.token)).toEqual([
      { emoji: '👍', count: 2, reactedByMe: true },
      { emoji: family, count: 1, reactedByMe: true },
    ]);
    expect(await h(bob.token)).toEqual([
      { emoji: '👍', count: 2, reactedByMe: true },
      { emoji: family, count: 1, reactedByMe: false },
    ]);
    const removed = (await ok(gql(s.url, REMOVE, { m: m.id, e: '👍' }, bob.token))).removeReaction;
    // Ordered by first use among the reactions left: Alice's 👍 came after her family.
    expect(removed.reactions).toEqual([
      { emoji: family, count: 1, reactedByMe: false },
      { emoji: '👍', count: 1, reactedByMe: false },
    ]);
    expect((await ok(gql(s.url, REMOVE, { m: m.id, e: '👍' }, bob.token))).removeReaction.reactions).toEqual(removed.reactions);
    // Four changes, one event each; reactedByMe as each subscriber sees it.
    // Then an edit, as a barrier: once it arrives, an event for the repeated add or remove would have too.
    await ok(gql(s.url, EDIT, { m: m.id, t: 'reacted to' }, alice.token));
    await aliceSees.nth(5);
    await bobSees.nth(5);
    expect(aliceSees.values.map((v) => v.messageEvent.kind)).toEqual([...Array(4).fill('REACTIONS_CHANGED'), 'EDITED']);
    expect(aliceSees.values[3].messageEvent.message.reactions).toEqual([
      { emoji: family, count: 1, reactedByMe: true },
      { emoji: '👍', count: 1, reactedByMe: true },
    ]);
    expect(bobSees.values[3].messageEvent.message.reactions).toEqual(removed.reactions);
    expect(bobSees.values).toHaveLength(5);
  });

  it('should take at most 20 different emoji on a message, refusing the next at once or raced, while those it has are still added', async () => {
    const s = await createTestServer({ RATE_LIMIT_REACTION: '200/1m' });
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, alice, { members: [bob] });
    const m = (await sendMessage(s.url, alice.token, { groupId: group.id, content: 'react' })).id;
    const REACT = 'mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) { reactions { emoji count } } }';
    const emoji = [...'😀😁😂🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗🤩🤔🤨😐😑'];
    for (const e of emoji.slice(0, 18)) await ok(gql(s.url, REACT, { m, e }, alice.token));
    // Four new ones at once for the last two kinds: two taken, two refused.
    const raced = await Promise.all(emoji.slice(18, 22).map((e) => gql(s.url, REACT, { m, e }, bob.token)));
    expect(raced.map((r) => (r.errors ? codeOf(r) : 'ok')).sort()).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT', 'ok', 'ok']);
    const refused = await gql(s.url, REACT, { m, e: emoji[23] }, alice.token);
    expect([codeOf(refused), refused.errors![0].extensions!.field, refused.errors![0].message]).toEqual(['BAD_USER_INPUT', 'emoji', 'A message takes at most 20 different reactions; add one of those it has.']);
    // One it has is still taken, by someone who hadn't.
    const more = (await ok(gql(s.url, REACT, { m, e: emoji[0] }, bob.token))).addReaction.reactions;
    expect(more).toHaveLength(20);
    expect(more.find((r: { emoji: string }) => r.emoji === emoji[0]).count).toBe(2);
  });

  // An outside probe, under edits, reactions and a deletion at once: EDITED carrying the tombstone,
  // after DELETED. A change's message is read in its transaction, under the row's lock: a deletion
  // arriving meanwhile waits for its commit, and is told after it.
  it.each([
    ['a reaction', 'REACTIONS_CHANGED', (url: string, m: string, u: { alice: TestUser; bob: TestUser }) => gql(url, ADD, { m, e: '👍' }, u.bob.token)],
    ['an edit', 'EDITED', (url: string, m: string, u: { alice: TestUser; bob: TestUser }) => gql(url, EDIT, { m, t: 'soon gone, edited' }, u.alice.token)],
  ] as const)('should tell %s as it committed, and a deletion that waited on its row after it: DELETED last', async (_what, kind, change) => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'React, then gone', [bob]);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'soon gone' });
    const events = await listen(s, alice, EVENTS, { c: { groupId: g } });
    const [answer, deleting] = await crossedAsItReads(threadRepository, 'changed', () => gql(s.url, DELETE, { m: m.id }, alice.token), () => ok(change(s.url, m.id, { alice, bob })));
    expect(await ok(deleting)).toEqual({ deleteMessage: true });
    // The change's answer is the message as the change left it, not the tombstone committed after.
    expect(JSON.stringify(answer)).not.toMatch(/"content":null/);
    await ok(gql(s.url, EDIT, { m: (await sendMessage(s.url, alice.token, { groupId: g, content: 'barrier' })).id, t: 'barrier, edited' }, alice.token));
    await eventually(() => events.values.some((v: any) => v.messageEvent.message.content === 'barrier, edited'));
    const told = events.values.filter((v: any) => v.messageEvent.message.id === m.id).map((v: any) => v.messageEvent.kind);
    // The change's own event, unless it came after the deletion's (then dropped as older); DELETED last.
    expect([[kind, 'DELETED'], ['DELETED']]).toContainEqual(told);
  });

  it('should refuse a removal of a reaction that waited on the message being deleted, as one made after it', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Remove, then gone', [bob]);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'soon gone' });
    await ok(gql(s.url, ADD, { m: m.id, e: '👍' }, bob.token));
    // The removal arrives while the deletion holds the message's row: it waits, then finds it deleted.
    const [, removing] = await crossedAsItReads(threadRepository, 'changed', () => gql(s.url, REMOVE, { m: m.id, e: '👍' }, bob.token), () => ok(gql(s.url, DELETE, { m: m.id }, alice.token)));
    const answer = await removing;
    expect([codeOf(answer), answer.errors?.[0].message]).toEqual(['BAD_USER_INPUT', 'A deleted message takes no reactions.']);
    const after = await gql(s.url, REMOVE, { m: m.id, e: '👍' }, bob.token);
    expect([codeOf(after), after.errors?.[0].message]).toEqual(['BAD_USER_INPUT', 'A deleted message takes no reactions.']);
  });

  it('should add and remove one emoji at once, from two tabs, without a deadlock', async () => {
    const s = await createTestServer({ RATE_LIMIT_REACTION: '500/1m' });
    const alice = await signup(s.url);
    const g = await groupWith(s.url, alice, 'Tabs', []);
    const m = (await sendMessage(s.url, alice.token, { groupId: g, content: 'react' })).id;
    const deadlocks = async () => Number((await sql(s.env.DATABASE_URL!, 'select deadlocks from pg_stat_database where datname = current_database()'))[0].deadlocks);
    const before = await deadlocks();
    for (let i = 0; i < 15; i++) {
      const both = await Promise.all([gql(s.url, ADD, { m, e: '👍' }, alice.token), gql(s.url, REMOVE, { m, e: '👍' }, alice.token), gql(s.url, ADD, { m, e: '👍' }, alice.token)]);
      for (const r of both) expect(r.errors).toBeUndefined();
    }
    // PostgreSQL counts its deadlocks as it breaks them (the statistics arrive a moment later).
    await sleep(700);
    expect((await deadlocks()) - before).toBe(0);
  });

  it('should refuse a reaction that waited on its message being deleted, and leave the tombstone without reactions', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Racing a deletion', [bob]);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'going' });
    // A deletion holds the row, not yet committed, while bob's reaction (which read the message before it) waits.
    const refused = await whileHolding(s.env.DATABASE_URL!, [[`update messages set content = null, deleted_at = now(), version = version + 1 where id = $1`, [m.id]]], () =>
      gql(s.url, ADD, { m: m.id, e: '👍' }, bob.token),
    );
    expect([codeOf(refused), refused.errors![0].message]).toEqual(['BAD_USER_INPUT', 'A deleted message takes no reactions.']);
    expect(await sql(s.env.DATABASE_URL!, 'select emoji from message_reactions where message_id = $1', [m.id])).toEqual([]);
    const node = (await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 1 }, bob.token)).history.edges[0].node;
    expect(node).toMatchObject({ id: m.id, deletedAt: expect.any(String), reactions: [] });
    // Its row taken away meanwhile (as its group's deletion does): NOT_FOUND, as for any message gone.
    const gone = await sendMessage(s.url, alice.token, { groupId: g, content: 'taken away' });
    expect(codeOf(await whileHolding(s.env.DATABASE_URL!, [['delete from messages where id = $1', [gone.id]]], () => gql(s.url, ADD, { m: gone.id, e: '👍' }, bob.token)))).toBe('NOT_FOUND');
  });

  it('should tell a deletion once when a second one waited on the first (two instances, one row)', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Deleted twice', [bob]);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'going' });
    const events = await listen<any>(s, bob, 'subscription { messageEvent { kind message { id deletedAt } } }');
    // The first deletion (through another instance) holds the row, its tombstone written, not yet committed.
    const first = `update messages set content = null, deleted_at = '2026-01-01T00:00:00Z', version = version + 1 where id = $1`;
    const second = await whileHolding(s.env.DATABASE_URL!, [[first, [m.id]]], () => gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: m.id }, alice.token));
    expect(second.data).toEqual({ deleteMessage: true });
    // Nothing written twice, and nothing told: the first one's own instance tells it (here, the test: no one).
    // Before, the second wrote the tombstone again and every subscriber got a second DELETED.
    expect(await sql(s.env.DATABASE_URL!, 'select deleted_at from messages where id = $1', [m.id])).toEqual([{ deleted_at: new Date('2026-01-01T00:00:00Z') }]);
    await sleep(300);
    expect(events.values).toEqual([]);
  });

  it('should count one heart however the keyboard spelled it (with or without U+FE0F)', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Hearts', [bob]);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'love it' });
    await ok(gql(s.url, ADD, { m: m.id, e: '\u2764' }, alice.token));
    const both = (await ok(gql(s.url, ADD, { m: m.id, e: '\u2764\ufe0f' }, bob.token))).addReaction.reactions;
    expect(both).toEqual([{ emoji: '\u2764\ufe0f', count: 2, reactedByMe: true }]);
    // An emoji-presentation pictograph is kept bare; removing by the other spelling removes it.
    await ok(gql(s.url, ADD, { m: m.id, e: '\u{1f44d}\ufe0f' }, bob.token));
    const removed = (await ok(gql(s.url, REMOVE, { m: m.id, e: '\u2764' }, bob.token))).removeReaction.reactions;
    expect(removed).toEqual([
      { emoji: '\u2764\ufe0f', count: 1, reactedByMe: false },
      { emoji: '\u{1f44d}', count: 1, reactedByMe: true },
    ]);
    // Sequences, keycaps and skin tones too: 🏳‍🌈 is 🏳️‍🌈, ❤‍🔥 is ❤️‍🔥, 1⃣ is 1️⃣, 👍🏽 with U+FE0F is 👍🏽, and so is
    // ☝🏽 with U+FE0F before its tone (as some keyboards put it), whoever spelled which.
    const n = await sendMessage(s.url, alice.token, { groupId: g, content: 'sequences' });
    for (const [u, e] of [[alice, '\u{1F3F3}\u200d\u{1F308}'], [bob, '\u{1F3F3}\ufe0f\u200d\u{1F308}'], [alice, '\u2764\u200d\u{1F525}'], [bob, '\u2764\ufe0f\u200d\u{1F525}'], [alice, '1\u20e3'], [bob, '1\ufe0f\u20e3'], [alice, '\u{1F44D}\u{1F3FD}'], [bob, '\u{1F44D}\u{1F3FD}\ufe0f'], [alice, '\u261D\u{1F3FD}'], [bob, '\u261D\ufe0f\u{1F3FD}']] as const) {
      await ok(gql(s.url, ADD, { m: n.id, e }, u.token));
    }
    const counted = (await ok(gql(s.url, ADD, { m: n.id, e: '1\u20e3' }, bob.token))).addReaction.reactions;
    expect(counted).toEqual([
      { emoji: '\u{1F3F3}\ufe0f\u200d\u{1F308}', count: 2, reactedByMe: true },
      { emoji: '\u2764\ufe0f\u200d\u{1F525}', count: 2, reactedByMe: true },
      { emoji: '1\ufe0f\u20e3', count: 2, reactedByMe: true },
      { emoji: '\u{1F44D}\u{1F3FD}', count: 2, reactedByMe: true },
      { emoji: '\u261D\u{1F3FD}', count: 2, reactedByMe: true },
    ]);
    // One an earlier release stored in another form is removed by either spelling.
    const legacy = await sendMessage(s.url, alice.token, { groupId: g, content: 'stored before' });
    await sql(s.env.DATABASE_URL!, 'insert into message_reactions (message_id, user_id, emoji, created_at) values ($1, $2, $3, now())', [legacy.id, bob.id, '1\u20e3']);
    expect((await ok(gql(s.url, REMOVE, { m: legacy.id, e: '1\u20e3' }, bob.token))).removeReaction.reactions).toEqual([]);
  });

  it('should rate-limit edits and reactions per user', async () => {
    const s = await createTestServer({ RATE_LIMIT_EDIT: '2/1m', RATE_LIMIT_REACTION: '2/1m' });
    const alice = await signup(s.url);
    const g = await groupWith(s.url, alice, 'Limits', []);
    const m = await sendMessage(s.url, alice.token, { groupId: g, content: 'x' });
    for (let i = 0; i < 2; i++) await ok(gql(s.url, EDIT, { m: m.id, t: `v${i}` }, alice.token));
    expect(codeOf(await gql(s.url, EDIT, { m: m.id, t: 'v3' }, alice.token))).toBe('RATE_LIMITED');
    await ok(gql(s.url, ADD, { m: m.id, e: '🎉' }, alice.token));
    await ok(gql(s.url, REMOVE, { m: m.id, e: '🎉' }, alice.token));
    expect(codeOf(await gql(s.url, ADD, { m: m.id, e: '🎉' }, alice.token))).toBe('RATE_LIMITED');
    expect((await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 10 }, alice.token)).history.edges[0].node).toMatchObject({ content: 'v1', reactions: [] });
  });
});

/** Two instances on one Redis, Alice and Bob in a group, and Alice's message there, sent through A. */
async function twoInstancesAndAMessage(group: string, content: string) {
  const a = await createTestServer();
  const b = await createTestServer({}, { clean: false });
  const [alice, bob] = [await signup(a.url), await signup(a.url)];
  const g = await groupWith(a.url, alice, group, [bob]);
  const m = await sendMessage(a.url, alice.token, { groupId: g, content });
  return { a, b, alice, bob, g, m };
}

describeRedis('message events on two instances', () => {
  it('should deliver an edit, a reaction and a deletion made on B to a subscriber on A once each', async () => {
    const { a, b, alice, bob, g, m } = await twoInstancesAndAMessage('Both', 'one');
    const later = await sendMessage(a.url, alice.token, { groupId: g, content: 'later' });
    const events = await listen(a, bob, EVENTS);
    await ok(gql(b.url, EDIT, { m: m.id, t: 'two' }, alice.token));
    await ok(gql(b.url, ADD, { m: m.id, e: '👀' }, alice.token));
    await ok(gql(b.url, DELETE, { m: m.id }, alice.token));
    // An edit of another message as a barrier: once it arrives, a duplicate of the three would have too.
    await ok(gql(b.url, EDIT, { m: later.id, t: 'last' }, alice.token));
    await events.nth(4);
    expect(events.values.map((v) => v.messageEvent.kind)).toEqual(['EDITED', 'REACTIONS_CHANGED', 'DELETED', 'EDITED']);
    expect(events.values[1].messageEvent.message.reactions).toEqual([{ emoji: '👀', count: 1, reactedByMe: false }]);
  });

  it("should end a sidebar row on the last message's newest text when two edits' rows arrive the other way round", async () => {
    const { a, b, alice, bob, m } = await twoInstancesAndAMessage('Edits crossing', 'draft');
    const rows = await listen(b, bob, 'subscription { conversationUpdated { lastMessage { id content } } }');
    // A's sidebar row of the first edit is held (a slow instance), while B's of the second goes out.
    const hold = holdNextPublishOf(a.services.pubsub, Topic.ConversationUpdated);
    const first = gql(a.url, EDIT, { m: m.id, t: 'first edit' }, alice.token);
    await eventually(() => hold.held());
    await ok(gql(b.url, EDIT, { m: m.id, t: 'second edit' }, alice.token));
    await rows.nth(1);
    hold.release();
    await ok(first);
    // The held row is older than the one shown: dropped, whichever came last.
    await sleep(300);
    expect(rows.values.map((v: any) => v.conversationUpdated.lastMessage.content)).toEqual(['second edit']);
    hold.restore();
  });

  it("should tell a member the mention badge an edit changed when its row arrives after a newer edit's that changed no one's mentions", async () => {
    const { a, b, alice, bob, g, m } = await twoInstancesAndAMessage('Badges crossing', 'draft');
    const rows = await listen(b, bob, 'subscription { conversationUpdated { unreadMentionCount lastMessage { content } } }');
    const seen = () => rows.values.map((v: any) => [v.conversationUpdated.unreadMentionCount, v.conversationUpdated.lastMessage.content]);
    await ok(gql(a.url, EDIT, { m: m.id, t: `hi @${bob.username}` }, alice.token));
    await rows.nth(1);
    // The edit taking the mention back is held on A; the next one, which changes no mentions, goes out from B.
    const hold = holdNextPublishOf(a.services.pubsub, Topic.ConversationUpdated);
    const unmention = gql(a.url, EDIT, { m: m.id, t: 'hi' }, alice.token);
    await eventually(() => hold.held());
    await ok(gql(b.url, EDIT, { m: m.id, t: 'hi!' }, alice.token));
    await rows.nth(2);
    hold.release();
    await ok(unmention);
    // The held row is older: its text is not shown, but Bob's badge it carried is, with the newest text.
    expect((await rows.nth(3)).conversationUpdated).toEqual({ unreadMentionCount: 0, lastMessage: { content: 'hi!' } });
    await rows.settle(300);
    expect(seen()).toEqual([[1, `hi @${bob.username}`], [1, 'hi!'], [0, 'hi!']]);
    expect((await ok(gql(b.url, 'query($c: ConversationInput!) { conversation(conversation: $c) { unreadMentionCount } }', { c: { groupId: g } }, bob.token))).conversation.unreadMentionCount).toBe(0);
    hold.restore();
  });
});

/**
 * Each reaction's event carries the message's reactions as read after its commit; two commits
 * close together can be read, and their events published, in either order. A client that keeps the
 * last messageEvent must end with what a query shows.
 */
describeRedis('message events under concurrent reactions', () => {
  it('should end every subscriber on the message as it is stored, across two instances', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const users = await Promise.all(Array.from({ length: 32 }, () => signup(a.url)));
    const [owner, watcher] = users;
    const g = await groupWith(a.url, owner, 'Reacting', users.slice(1));
    const m = await sendMessage(a.url, owner.token, { groupId: g, content: 'react to me' });
    const events = await listen(b, watcher, EVENTS, { c: { groupId: g } });
    const reactors = users.slice(2);
    await Promise.all(reactors.map((u, i) => ok(gql(i % 2 ? a.url : b.url, ADD, { m: m.id, e: i % 3 ? '👍' : '🎉' }, u.token))));
    const stored = (await request(a.url, HistoryDocument, { conversation: { groupId: g } }, watcher.token)).history.edges[0].node;
    const counts = (r: { emoji: string; count: number }[]) => r.map((x) => `${x.emoji}${x.count}`).sort();
    expect(counts(stored.reactions)).toEqual(['🎉10', '👍20']);
    // The last event shows what is stored (an older copy that came late was dropped, not shown last)...
    await eventually(() => {
      expect(counts(events.values[events.values.length - 1]?.messageEvent.message.reactions ?? [])).toEqual(counts(stored.reactions));
      return true;
    });
    await events.settle(300);
    expect(counts(events.values[events.values.length - 1].messageEvent.message.reactions)).toEqual(counts(stored.reactions));
    // ...and no event shows fewer reactions than one before it: they only grew, each change told
    // once (read after its commit, changes close together each told the newer: an outside probe).
    const totals = events.values.map((v: any) => v.messageEvent.message.reactions.reduce((n: number, r: { count: number }) => n + r.count, 0));
    expect(totals).toEqual([...totals].sort((x, y) => x - y));
    expect(new Set(totals).size).toBe(totals.length);
  });

  it('should tell each of two edits at once its own text, once, and answer each with its own', async () => {
    const { a, b, alice, bob, g, m } = await twoInstancesAndAMessage('Racing edits', 'draft');
    const watchers = [await listen(a, bob, EVENTS, { c: { groupId: g } }), await listen(b, bob, EVENTS)];
    const texts: string[] = [];
    for (let round = 0; round < 6; round++) {
      const [one, two] = [`r${round} one`, `r${round} two`];
      texts.push(one, two);
      const answers = await Promise.all([ok(gql(a.url, EDIT, { m: m.id, t: one }, alice.token)), ok(gql(b.url, EDIT, { m: m.id, t: two }, alice.token))]);
      expect(answers.map((x) => x.editMessage.content)).toEqual([one, two]);
    }
    const stored = (await request(a.url, HistoryDocument, { conversation: { groupId: g } }, bob.token)).history.edges[0].node.content;
    for (const w of watchers) {
      await eventually(() => w.values[w.values.length - 1]?.messageEvent.message.content === stored);
      await w.settle(300);
      const told = w.values.map((v: any) => v.messageEvent.message.content);
      // Never the same edit twice (an older one arriving late is dropped, so some may be missing).
      expect(new Set(told).size).toBe(told.length);
      expect(told.every((t: string) => texts.includes(t))).toBe(true);
      expect(told[told.length - 1]).toBe(stored);
    }
  });
});

describeRedis('pins crossing edits on two instances', () => {
  it('should answer a pin or reaction that changed nothing with the message as it found it, whatever crossed it', async () => {
    const { a, b, alice, bob, m } = await twoInstancesAndAMessage('Crossing answers', 'cross me');
    const PIN = 'mutation($m: ID!) { pinMessage(messageId: $m) { pinnedAt } }';
    const UNPIN = 'mutation($m: ID!) { unpinMessage(messageId: $m) { pinnedAt } }';
    const mine = (r: any) => r.reactions.some((x: { emoji: string; reactedByMe: boolean }) => x.emoji === '👍' && x.reactedByMe);
    // Read after its transaction, a pin that found the message pinned answered it unpinned when an
    // unpin committed meanwhile, and an add that found the reaction there answered without it (an outside probe).
    const wrong: string[] = [];
    for (let round = 0; round < 12; round++) {
      await ok(gql(a.url, PIN, { m: m.id }, alice.token));
      await ok(gql(a.url, ADD, { m: m.id, e: '👍' }, alice.token));
      const [pinned, unpinned, added, removed] = await Promise.all([
        ok(gql(a.url, PIN, { m: m.id }, alice.token)),
        ok(gql(b.url, UNPIN, { m: m.id }, bob.token)),
        ok(gql(b.url, ADD, { m: m.id, e: '👍' }, alice.token)),
        ok(gql(a.url, REMOVE, { m: m.id, e: '👍' }, alice.token)),
      ]);
      if (pinned.pinMessage.pinnedAt === null) wrong.push(`${round}: pin answered unpinned`);
      if (unpinned.unpinMessage.pinnedAt !== null) wrong.push(`${round}: unpin answered pinned`);
      if (!mine(added.addReaction)) wrong.push(`${round}: add answered without it`);
      if (mine(removed.removeReaction)) wrong.push(`${round}: removal answered with it`);
    }
    expect(wrong).toEqual([]);
  });

  it("should answer and tell each of several edits at once with its own text's mentions", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const users = await Promise.all(Array.from({ length: 5 }, () => signup(a.url)));
    const [owner, ...members] = users;
    const g = await groupWith(a.url, owner, 'Mention edits', members);
    const m = await sendMessage(a.url, owner.token, { groupId: g, content: 'who?' });
    const events = await listen(b, members[0], 'subscription { messageEvent { message { content mentions { username } } } }');
    const QUERY = 'mutation($m: ID!, $t: String!) { editMessage(messageId: $m, content: $t) { content mentions { username } } }';
    // Loaded after the commit, a mention list could be another edit's (an outside probe: 15-28 of 80 answers).
    const wrong: string[] = [];
    for (let round = 0; round < 8; round++) {
      const answers = await Promise.all(members.map((u, i) => ok(gql(i % 2 ? a.url : b.url, QUERY, { m: m.id, t: `r${round} @${u.username} only` }, owner.token))));
      answers.forEach((x, i) => {
        if (x.editMessage.mentions.map((u: { username: string }) => u.username).join() !== members[i].username) wrong.push(`${round}: ${x.editMessage.content} answered ${JSON.stringify(x.editMessage.mentions)}`);
      });
    }
    expect(wrong).toEqual([]);
    await events.settle(500);
    const told = events.values.map((v: any) => v.messageEvent.message).filter((x: any) => !x.content.endsWith(`@${x.mentions.map((u: { username: string }) => u.username).join()} only`));
    expect(told).toEqual([]);
  });

  it('should answer an edit to the text it has with the message as it found it, though a reaction came right behind it', async () => {
    const { a, b, alice, bob, m } = await twoInstancesAndAMessage('Same text', 'same');
    const SAME = 'mutation($m: ID!, $t: String!) { editMessage(messageId: $m, content: $t) { content editedAt reactions { emoji } } }';
    const [answer, crossing] = await crossedAsItReads(threadRepository, 'changed', () => gql(b.url, ADD, { m: m.id, e: '👍' }, bob.token), () => ok(gql(a.url, SAME, { m: m.id, t: ' same ' }, alice.token)));
    expect(answer.editMessage).toEqual({ content: 'same', editedAt: null, reactions: [] });
    expect((await ok(crossing)).addReaction.reactions).toEqual([{ emoji: '👍', count: 1, reactedByMe: true }]);
  });

  it('should answer a pin that found the message pinned as pinned, though an unpin came right behind it', async () => {
    const { a, b, alice, bob, m } = await twoInstancesAndAMessage('Pinned already', 'pinned');
    await ok(gql(a.url, 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }', { m: m.id }, alice.token));
    // The unpin arrives as the pin reads the message's pin: it waits for the pin's row lock, so the
    // pin reads what it found. Read after its transaction, it answered the unpin's state.
    const unpin = () => gql(b.url, 'mutation($m: ID!) { unpinMessage(messageId: $m) { pinnedAt } }', { m: m.id }, bob.token);
    const [answer, crossing] = await crossedAsItReads(a.services.pins, 'pinsOf', unpin, () => ok(gql(a.url, 'mutation($m: ID!) { pinMessage(messageId: $m) { pinnedAt } }', { m: m.id }, alice.token)));
    expect(answer.pinMessage.pinnedAt).not.toBeNull();
    expect((await ok(crossing)).unpinMessage.pinnedAt).toBeNull();
  });

  it('should tell each pin, unpin and reaction made at once its own state, never one state twice in a row', async () => {
    const { a, b, alice, bob, m } = await twoInstancesAndAMessage('Pins and reactions', 'pin me');
    const events = await listen(b, bob, 'subscription { messageEvent { kind message { id pinnedAt reactions { emoji count } } } }');
    const PIN = 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }';
    const UNPIN = 'mutation($m: ID!) { unpinMessage(messageId: $m) { id } }';
    const emoji = ['👍', '🎉', '👀', '🔥', '✅', '🙏', '🚀', '💡', '🌟', '🍕', '🎯', '🧪'];
    for (let round = 0; round < 6; round++) {
      await Promise.all([
        ok(gql(a.url, PIN, { m: m.id }, alice.token)),
        ...emoji.slice(round * 2, round * 2 + 2).map((e, i) => ok(gql(i ? a.url : b.url, ADD, { m: m.id, e }, bob.token))),
      ]);
      await ok(gql(b.url, UNPIN, { m: m.id }, bob.token));
    }
    await eventually(() => events.values.filter((v: any) => v.messageEvent.kind === 'UNPINNED').length === 6 || events.values.length >= 30);
    await events.settle(300);
    // Read after their commits, a pin and a reaction close together both told the newer state
    // (once as PINNED, once as REACTIONS_CHANGED), and the older never. A state may come back (an
    // unpin after a pin), but never twice in a row.
    const states = events.values.map((v: any) => JSON.stringify([v.messageEvent.message.pinnedAt, v.messageEvent.message.reactions]));
    expect(states.filter((state: string, i: number) => i > 0 && state === states[i - 1])).toEqual([]);
    expect(events.values[events.values.length - 1].messageEvent).toMatchObject({ kind: 'UNPINNED', message: { pinnedAt: null } });
  });

  it.each([
    ['PINNED', 'pinMessage'],
    ['UNPINNED', 'unpinMessage'],
  ])("should still tell %s, with the newest text, when it arrives after an edit made just after it", async (kind, mutation) => {
    const { a, b, alice, bob, m } = await twoInstancesAndAMessage('Pins crossing', 'draft');
    if (kind === 'UNPINNED') await ok(gql(a.url, 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }', { m: m.id }, alice.token));
    const events = await listen(b, bob, 'subscription { messageEvent { kind message { content pinnedAt } } }');
    // A's event of the pin (or unpin) is held (a slow instance); B's of the edit just after it goes out.
    const hold = holdNextPublishOf(a.services.pubsub, Topic.MessageEvent);
    const pinning = gql(a.url, `mutation($m: ID!) { ${mutation}(messageId: $m) { id } }`, { m: m.id }, alice.token);
    await eventually(() => hold.held());
    await ok(gql(b.url, EDIT, { m: m.id, t: 'edited' }, alice.token));
    await events.nth(1);
    hold.release();
    await ok(pinning);
    // Older than the edit, it still goes, as the message now is (a client keeps its pinned bar from these).
    const told = (await events.nth(2)).messageEvent;
    expect(told.kind).toBe(kind);
    expect(told.message.content).toBe('edited');
    expect(told.message.pinnedAt === null).toBe(kind === 'UNPINNED');
    await events.settle(300);
    expect(events.values.map((v) => v.messageEvent.kind)).toEqual(['EDITED', kind]);
    hold.restore();
  });
});

describe('message events behind their message', () => {
  it("should deliver an edit or deletion of a message still held in its line (one before it on its way) after the message, not before it", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Held', [bob]);
    // One socket, both subscriptions: the order of its frames is what a client applies.
    const w = wsClient(s.wsUrl, bob.token);
    await w.connected;
    const { log, on } = frameLog(w);
    const c = { c: { groupId: g } };
    on('subscription($c: ConversationInput) { messageAdded(conversation: $c) { content } }', (d) => `added ${d.messageAdded.content}`, c);
    on('subscription($c: ConversationInput) { messageEvent(conversation: $c) { kind message { content } } }', (d) => `${d.messageEvent.kind} ${d.messageEvent.message.content}`, c);
    await running(s, 'messageAdded', 1);
    await running(s, 'messageEvent', 1);
    await sendMessage(s.url, alice.token, { groupId: g, content: 'one' });
    await eventually(() => log.length === 1);
    // The second message's publish is late (a slow instance): the third waits for it in the line.
    const hold = holdNextMessagePublish(s.services.pubsub);
    const second = sendMessage(s.url, alice.token, { groupId: g, content: 'two' });
    await hold.taken();
    const third = await sendMessage(s.url, alice.token, { groupId: g, content: 'three' });
    await ok(gql(s.url, EDIT, { m: third.id, t: 'three, fixed' }, alice.token));
    await ok(gql(s.url, DELETE, { m: third.id }, alice.token));
    await sleep(50);
    hold.release();
    await second;
    await eventually(() => log.length === 5);
    expect(log).toEqual(['added one', 'added two', 'added three', 'EDITED three, fixed', 'DELETED null']);
    w.client.dispose();
  });
});

describe('membership changes behind the messages before them', () => {
  it("should deliver messages held in their line (one before them late) before the group's deletion or a leave takes the group from its members", async () => {
    const s = await createTestServer();
    const [owner, member, watcher] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    for (const end of ['leave', 'delete'] as const) {
      const g = await groupWith(s.url, owner, `Held ${end}`, [member, watcher]);
      const sockets = [];
      const logs: string[][] = [];
      for (const u of end === 'leave' ? [watcher, member] : [watcher]) {
        const w = wsClient(s.wsUrl, u.token);
        await w.connected;
        const { log, on } = frameLog(w);
        on('subscription { messageAdded { content } }', (d) => `added ${d.messageAdded.content}`);
        on('subscription { groupEvent { kind groupId } }', (d) => (d.groupEvent.groupId === g ? d.groupEvent.kind : 'other'));
        sockets.push(w);
        logs.push(log);
      }
      await running(s, 'messageAdded', sockets.length);
      await running(s, 'groupEvent', sockets.length);
      await sendMessage(s.url, owner.token, { groupId: g, content: 'one' });
      await eventually(() => logs.every((l) => l.includes('added one')));
      // The second message's publish is late (a slow instance): the third waits for it in its line.
      const hold = holdNextMessagePublish(s.services.pubsub);
      const second = sendMessage(s.url, owner.token, { groupId: g, content: 'two' });
      await hold.taken();
      await sendMessage(s.url, owner.token, { groupId: g, content: 'three' });
      // Sent before it, so delivered before it to everyone who was a member then, the leaver too.
      if (end === 'leave') await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, member.token));
      else await ok(gql(s.url, 'mutation($g: ID!) { deleteGroup(groupId: $g) }', { g }, owner.token));
      await sleep(50);
      hold.release();
      await second;
      await eventually(() => logs.every((l) => l.filter((x) => x !== 'other').length >= 4));
      await sleep(100);
      for (const log of logs) expect(log.filter((l) => l !== 'other')).toEqual(['added one', 'added two', 'added three', end === 'leave' ? 'MEMBER_LEFT' : 'DELETED']);
      for (const w of sockets) w.client.dispose();
      await running(s, 'messageAdded', 0);
    }
  });
});

describe("a new conversation's first message", () => {
  it('should reach a socket before the group events that follow it (a leave, the deletion), not after', async () => {
    const s = await createTestServer();
    const [owner, member, watcher] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    for (const end of ['leave', 'delete'] as const) {
      const g = await groupWith(s.url, owner, `First ${end}`, [member, watcher]);
      const w = wsClient(s.wsUrl, watcher.token);
      await w.connected;
      const { log, on } = frameLog(w);
      on('subscription { messageAdded { content group { id } } }', (d) => `added ${d.messageAdded.content} ${d.messageAdded.group ? 'in its group' : 'in no group'}`);
      on('subscription { groupEvent { kind groupId } }', (d) => (d.groupEvent.groupId === g ? d.groupEvent.kind : 'other'));
      await running(s, 'messageAdded', 1);
      await running(s, 'groupEvent', 1);
      // The group's first message, then at once its sender leaves, or the owner deletes the group.
      const sender = end === 'leave' ? member : owner;
      await sendMessage(s.url, sender.token, { groupId: g, content: 'first' });
      if (end === 'leave') await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, member.token));
      else await ok(gql(s.url, 'mutation($g: ID!) { deleteGroup(groupId: $g) }', { g }, owner.token));
      await eventually(() => log.length >= 2);
      await sleep(100);
      expect(log.filter((l) => l !== 'other')).toEqual(['added first in its group', end === 'leave' ? 'MEMBER_LEFT' : 'DELETED']);
      w.client.dispose();
      await running(s, 'messageAdded', 0);
    }
  });
});
