import { print } from 'graphql';
import { codeOf, eventually, gql, listen as listenOn, ok, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, type TestServer } from './helpers/server';
import { befriend, buildProject, lobbyOf, signup, type TestUser, attempt, request, sendMessage } from './helpers/factories';
import { SendMessageDocument, HistoryDocument, CreateGroupDocument, JoinGroupDocument, LeaveGroupDocument } from '../generated/client/graphql';
import { snapshot, sql } from './helpers/db';
import { encodeCursor } from '../src/shared/graphql/connection';
import { messageRepository } from '../src/modules/message/message.repository';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const ADDED = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id content sender { id } group { id } recipient { id } } }';

const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');

const send = sendMessage;

async function listen(s: TestServer, user: TestUser, c?: Record<string, unknown>) {
  const sub = await listenOn<any>(s, user, ADDED, c ? { c } : {});
  return { w: sub.ws, sub };
}

describe('sending and history', () => {
  it('should page a group conversation: newest 10 by default, back with last/before, forward with first/after', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const g = (await request(s.url, CreateGroupDocument, { name: 'Chat' }, a.token)).createGroup.id;
    const sent: string[] = [];
    for (let i = 1; i <= 25; i++) sent.push((await send(s.url, a.token, { groupId: g, content: `m${i}` })).id);
    const c = { groupId: g };
    const newest = (await request(s.url, HistoryDocument, { conversation: c }, a.token)).history;
    expect(newest.totalCount).toBe(25);
    expect(newest.edges.map((e: any) => e.node.content)).toEqual(['m16', 'm17', 'm18', 'm19', 'm20', 'm21', 'm22', 'm23', 'm24', 'm25']);
    expect(newest.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
    expect(newest.pageInfo.startCursor).toBe(newest.edges[0].cursor);
    expect(newest.pageInfo.endCursor).toBe(newest.edges[9].cursor);
    const older = (await request(s.url, HistoryDocument, { conversation: c, last: 10, before: newest.pageInfo.startCursor }, a.token)).history;
    expect(older.edges.map((e: any) => e.node.content)).toEqual(['m6', 'm7', 'm8', 'm9', 'm10', 'm11', 'm12', 'm13', 'm14', 'm15']);
    const oldest = (await request(s.url, HistoryDocument, { conversation: c, last: 10, before: older.pageInfo.startCursor }, a.token)).history;
    expect(oldest.edges.map((e: any) => e.node.content)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(oldest.pageInfo.hasPreviousPage).toBe(false);
    const fromStart = (await request(s.url, HistoryDocument, { conversation: c, first: 3 }, a.token)).history;
    expect(fromStart.edges.map((e: any) => e.node.content)).toEqual(['m1', 'm2', 'm3']);
    expect(fromStart.pageInfo.hasNextPage).toBe(true);
    const catchUp = (await request(s.url, HistoryDocument, { conversation: c, first: 50, after: older.pageInfo.endCursor }, a.token)).history;
    expect(catchUp.edges.map((e: any) => e.node.id)).toEqual(sent.slice(15));
    expect(catchUp.pageInfo.hasNextPage).toBe(false);
    // Well-formed cursors whose time JavaScript accepts and PostgreSQL does not, as well as forged ones.
    const outOfRange = ['-004368-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z'].map((k) => encodeCursor({ k, id: sent[0] }));
    for (const bad of ['forged', Buffer.from('c1:["x","y"]').toString('base64url'), 'a'.repeat(300), ...outOfRange]) {
      const r = await attempt(s.url, HistoryDocument, { conversation: c, before: bad }, a.token);
      expect([codeOf(r), r.errors?.[0].message]).toEqual(['BAD_USER_INPUT', "Invalid cursor in 'before'."]);
    }
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: c, last: 101 }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: c, first: 5, before: newest.pageInfo.startCursor }, a.token))).toBe('BAD_USER_INPUT');
    // `last` given beside first/after is refused, not dropped for a default-sized forward page; the
    // document above sends all four variables, so only those given count.
    for (const mixed of [{ last: 3, after: older.pageInfo.endCursor }, { first: 3, last: 3 }]) {
      const r = await attempt(s.url, HistoryDocument, { conversation: c, ...mixed }, a.token);
      expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'last']);
    }
    const literal = await gql(s.url, `query($g: ID!) { history(conversation: { groupId: $g }, last: 3, after: "${older.pageInfo.endCursor}") { totalCount } }`, { g }, a.token);
    expect(codeOf(literal)).toBe('BAD_USER_INPUT');
    const explicitNull = gql(s.url, `query($g: ID!) { history(conversation: { groupId: $g }, last: null, first: 2) { edges { node { content } } } }`, { g }, a.token);
    expect((await ok(explicitNull)).history.edges.map((e: any) => e.node.content)).toEqual(['m1', 'm2']);
  });

  it('should enforce who may send and read, writing nothing on refusal', async () => {
    const s = await createTestServer();
    const [owner, outsider, friend, stranger] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const pub = (await request(s.url, CreateGroupDocument, { name: 'Open' }, owner.token)).createGroup.id;
    const priv = (await request(s.url, CreateGroupDocument, { name: 'Closed', isPrivate: true }, owner.token)).createGroup.id;
    await befriend(s.url, owner, friend);
    const before = await snapshot(s.env.DATABASE_URL!);
    const cases: [Record<string, unknown>, string, string][] = [
      [{ groupId: pub, content: 'hi' }, outsider.token, 'FORBIDDEN'],
      [{ groupId: priv, content: 'hi' }, outsider.token, 'NOT_FOUND'],
      [{ groupId: '00000000-0000-4000-8000-000000000000', content: 'hi' }, owner.token, 'NOT_FOUND'],
      [{ toUserId: stranger.id, content: 'hi' }, owner.token, 'FORBIDDEN'],
      [{ toUserId: owner.id, content: 'hi' }, owner.token, 'BAD_USER_INPUT'],
      [{ toUserId: '00000000-0000-4000-8000-000000000000', content: 'hi' }, owner.token, 'NOT_FOUND'],
      [{ content: 'nowhere' }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, toUserId: friend.id, content: 'two places' }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: '   ' }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: 'x'.repeat(4001) }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: 'ring \u0007 the bell' }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: '\u001b[2Jcleared' }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: 'c1 \u0085 next line' }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: 'ok', clientMessageId: 'y'.repeat(65) }, owner.token, 'BAD_USER_INPUT'],
      [{ groupId: pub, content: 'anonymous' }, '', 'UNAUTHENTICATED'],
    ];
    for (const [input, token, code] of cases) {
      const r = await attempt(s.url, SendMessageDocument, { input }, token || undefined);
      expect([JSON.stringify(input).slice(0, 60), codeOf(r)]).toEqual([JSON.stringify(input).slice(0, 60), code]);
    }
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: { groupId: pub } }, outsider.token))).toBe('FORBIDDEN');
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: { groupId: priv } }, outsider.token))).toBe('NOT_FOUND');
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: { userId: friend.id } }, stranger.token))).toBe('FORBIDDEN');
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: {} }, owner.token))).toBe('BAD_USER_INPUT');
    // Each says what to name in its own input's words.
    expect((await attempt(s.url, HistoryDocument, { conversation: {} }, owner.token)).errors?.[0].message).toBe('Name exactly one conversation: a groupId, a userId, or a projectId.');
    expect((await attempt(s.url, SendMessageDocument, { input: { groupId: pub, toUserId: friend.id, content: 'x' } }, owner.token)).errors?.[0]).toMatchObject({
      message: 'Name exactly one conversation: a groupId, a toUserId, or a projectId.',
      extensions: { code: 'BAD_USER_INPUT', field: 'input' },
    });
    // Oneself, named by the field the input has (an outside probe: sendMessage was told of a `userId` it never sent).
    const selfField = async (doc: typeof HistoryDocument | typeof SendMessageDocument, vars: Record<string, unknown>) => (await attempt(s.url, doc as any, vars, owner.token)).errors?.[0].extensions?.field;
    expect(await selfField(SendMessageDocument, { input: { toUserId: owner.id, content: 'x' } })).toBe('toUserId');
    expect(await selfField(HistoryDocument, { conversation: { userId: owner.id } })).toBe('userId');
    // An empty id is given, and names nothing: not found as what it was given for (it read as a direct conversation's user).
    const HISTORY_OF = 'query($c: ConversationInput!) { history(conversation: $c) { totalCount } }';
    const SEND_TO = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    for (const [query, variables, what] of [
      [HISTORY_OF, { c: { groupId: '' } }, 'Group'],
      [HISTORY_OF, { c: { projectId: '' } }, 'Project'],
      [SEND_TO, { i: { groupId: '', content: 'x' } }, 'Group'],
      [SEND_TO, { i: { projectId: '', content: 'x' } }, 'Project'],
    ] as const) {
      expect((await gql(s.url, query, variables, owner.token)).errors?.[0]).toMatchObject({ message: `${what} not found.`, extensions: { code: 'NOT_FOUND' } });
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await send(s.url, owner.token, { groupId: pub, content: 'x'.repeat(4000) })).content).toHaveLength(4000);
    expect((await send(s.url, owner.token, { groupId: pub, content: '  trimmed  ' })).content).toBe('trimmed');
    // Tabs and line breaks are text.
    expect((await send(s.url, owner.token, { groupId: pub, content: 'a\tb\r\nc\nd' })).content).toBe('a\tb\r\nc\nd');
  });

  it('should refuse the history of a group that holds messages to whoever is not, or no longer, a member', async () => {
    const s = await createTestServer();
    const [owner, outsider, leaver] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const pub = (await request(s.url, CreateGroupDocument, { name: 'Busy' }, owner.token)).createGroup.id;
    const priv = (await request(s.url, CreateGroupDocument, { name: 'Busy and closed', isPrivate: true }, owner.token)).createGroup.id;
    await request(s.url, JoinGroupDocument, { groupId: pub }, leaver.token);
    await send(s.url, owner.token, { groupId: pub, content: 'open words' });
    await send(s.url, owner.token, { groupId: priv, content: 'closed words' });
    expect((await request(s.url, HistoryDocument, { conversation: { groupId: pub } }, leaver.token)).history.edges).toHaveLength(1);
    await request(s.url, LeaveGroupDocument, { groupId: pub }, leaver.token);
    for (const [g, token, code] of [
      [pub, outsider.token, 'FORBIDDEN'],
      [pub, leaver.token, 'FORBIDDEN'],
      [priv, outsider.token, 'NOT_FOUND'],
      [priv.toUpperCase(), owner.token, undefined],
    ] as const) {
      const r = await attempt(s.url, HistoryDocument, { conversation: { groupId: g }, first: 5 }, token);
      expect([g === priv.toUpperCase() ? 'upper-case id' : g, codeOf(r)]).toEqual([g === priv.toUpperCase() ? 'upper-case id' : g, code]);
      if (!code) expect(r.data?.history.edges.map((e: any) => e.node.content)).toEqual(['closed words']);
    }
  });

  it('should keep direct conversations between two friends', async () => {
    const s = await createTestServer();
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    await befriend(s.url, a, c);
    const m = await send(s.url, a.token, { toUserId: b.id, content: 'psst' });
    expect(m).toMatchObject({ recipient: { id: b.id }, group: null });
    await send(s.url, b.token, { toUserId: a.id, content: 'hey' });
    await send(s.url, a.token, { toUserId: c.id, content: 'for c' });
    const seenByB = (await request(s.url, HistoryDocument, { conversation: { userId: a.id } }, b.token)).history;
    expect(seenByB.edges.map((e: any) => e.node.content)).toEqual(['psst', 'hey']);
    const seenByC = (await request(s.url, HistoryDocument, { conversation: { userId: a.id } }, c.token)).history;
    expect(seenByC.edges.map((e: any) => e.node.content)).toEqual(['for c']);
  });

  it('should return the first message for a retried clientMessageId, even when retries race', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const first = await send(s.url, a.token, { groupId: lobby, content: 'once', clientMessageId: 'abc-1' });
    const again = await send(s.url, a.token, { groupId: lobby, content: 'once', clientMessageId: 'abc-1' });
    expect(again.id).toBe(first.id);
    const race = await Promise.all([1, 2, 3, 4, 5].map(() => attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'race', clientMessageId: 'race-1' } }, a.token)));
    expect(new Set(race.map((r) => r.data!.sendMessage.id)).size).toBe(1);
    const [row] = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from messages where sender_id = $1', [a.id]);
    expect(row.n).toBe(2);
  });

  it('should refuse a clientMessageId reused for another message, and store nothing', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    const lobby = await lobbyOf(s.url, a.token);
    const first = await send(s.url, a.token, { groupId: lobby, content: 'one', clientMessageId: 'k-1' });
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const input of [
      { toUserId: b.id, content: 'one', clientMessageId: 'k-1' },
      { groupId: lobby, content: 'two', clientMessageId: 'k-1' },
    ]) {
      const r = await attempt(s.url, SendMessageDocument, { input }, a.token);
      expect(codeOf(r)).toBe('CONFLICT');
      expect(r.errors![0].extensions!.field).toBe('clientMessageId');
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // A retry is still answered with the first message, and after an edit its new text doesn't make it another one.
    expect((await send(s.url, a.token, { groupId: lobby, content: 'one', clientMessageId: 'k-1' })).id).toBe(first.id);
    await ok(gql(s.url, 'mutation($m: ID!) { editMessage(messageId: $m, content: "one, fixed") { id } }', { m: first.id }, a.token));
    expect((await send(s.url, a.token, { groupId: lobby, content: 'one', clientMessageId: 'k-1' })).id).toBe(first.id);
    // Another file, or a reply where the first was none, is another message too; the same file is a retry.
    const file = (text: string) => ({ fileName: 'notes.txt', base64: Buffer.from(text).toString('base64') });
    const filed = await send(s.url, a.token, { groupId: lobby, attachment: file('first draft'), clientMessageId: 'k-3' });
    expect((await send(s.url, a.token, { groupId: lobby, attachment: file('first draft'), clientMessageId: 'k-3' })).id).toBe(filed.id);
    const retries = [
      { groupId: lobby, attachment: file('second draft, longer'), clientMessageId: 'k-3' },
      // The same name and size, other bytes.
      { groupId: lobby, attachment: file('FIRST DRAFT'), clientMessageId: 'k-3' },
      { groupId: lobby, attachment: { ...file('first draft'), fileName: 'other.txt' }, clientMessageId: 'k-3' },
      { groupId: lobby, clientMessageId: 'k-3', content: 'no file' },
      { groupId: lobby, content: 'one', parentId: first.id, clientMessageId: 'k-1' },
    ];
    for (const input of retries) expect(codeOf(await attempt(s.url, SendMessageDocument, { input }, a.token))).toBe('CONFLICT');
    // A reply's retry names its thread by the root or any reply of it; another thread is another message.
    const [rootOne, rootTwo] = [await send(s.url, a.token, { groupId: lobby, content: 'root one' }), await send(s.url, a.token, { groupId: lobby, content: 'root two' })];
    const sibling = await send(s.url, a.token, { groupId: lobby, content: 'in thread one', parentId: rootOne.id });
    const reply = await send(s.url, a.token, { groupId: lobby, content: 'reply', parentId: rootOne.id, clientMessageId: 'k-4' });
    for (const parentId of [rootOne.id, sibling.id]) expect((await send(s.url, a.token, { groupId: lobby, content: 'reply', parentId, clientMessageId: 'k-4' })).id).toBe(reply.id);
    const crossed = await snapshot(s.env.DATABASE_URL!);
    for (const parentId of [rootTwo.id, '00000000-0000-4000-8000-000000000000', 'not-an-id']) {
      const r = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'reply', parentId, clientMessageId: 'k-4' } }, a.token);
      expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['CONFLICT', 'clientMessageId']);
    }
    // Sent to the conversation too where the first was kept in its thread: another message.
    const also = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'reply', parentId: rootOne.id, alsoInConversation: true, clientMessageId: 'k-4' } }, a.token);
    expect([codeOf(also), also.errors?.[0].extensions?.field]).toEqual(['CONFLICT', 'clientMessageId']);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(crossed);
    // An empty toUserId names no one, on the retry as on the first send.
    const p = (await buildProject(s.url, a, { title: 'Retries' })).id;
    const open = await send(s.url, a.token, { projectId: p, toUserId: '', content: 'to all', clientMessageId: 'k-2' });
    expect((await send(s.url, a.token, { projectId: p, toUserId: '', content: 'to all', clientMessageId: 'k-2' })).id).toBe(open.id);
  });

  it('should hold a retry to what its send carried after the message was edited or deleted', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const edit = (m: string, content: string) => ok(gql(s.url, 'mutation($m: ID!, $c: String!) { editMessage(messageId: $m, content: $c) { id } }', { m, c: content }, a.token));
    const remove = (m: string) => ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m }, a.token));
    const conflict = async (input: Record<string, unknown>) => {
      const r = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, ...input } }, a.token);
      expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['CONFLICT', 'clientMessageId']);
    };
    // Edited twice: the retry is the text sent, not either edit, nor another text.
    const edited = await send(s.url, a.token, { groupId: lobby, content: 'original', clientMessageId: 'e-1' });
    await edit(edited.id, 'changed');
    await edit(edited.id, 'changed again');
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const content of ['changed', 'changed again', 'third']) await conflict({ content, clientMessageId: 'e-1' });
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await send(s.url, a.token, { groupId: lobby, content: '  original ', clientMessageId: 'e-1' })).id).toBe(edited.id);
    // Deleted: its text and file are gone from its row, yet another text or file is another message.
    const file = (text: string) => ({ fileName: 'notes.txt', base64: Buffer.from(text).toString('base64') });
    const filed = await send(s.url, a.token, { groupId: lobby, content: 'with a file', attachment: file('draft'), clientMessageId: 'e-2' });
    await remove(filed.id);
    const plain = await send(s.url, a.token, { groupId: lobby, content: 'del-me', clientMessageId: 'e-3' });
    await remove(plain.id);
    // Edited, then deleted: the first change kept the send.
    const both = await send(s.url, a.token, { groupId: lobby, content: 'first words', clientMessageId: 'e-4' });
    await edit(both.id, 'second words');
    await remove(both.id);
    const deleted = await snapshot(s.env.DATABASE_URL!);
    for (const input of [
      { content: 'with a file', attachment: file('DRAFT'), clientMessageId: 'e-2' },
      { content: 'with a file', attachment: { ...file('draft'), fileName: 'other.txt' }, clientMessageId: 'e-2' },
      { content: 'with a file', clientMessageId: 'e-2' },
      { content: 'other text', attachment: file('draft'), clientMessageId: 'e-2' },
      { content: 'totally different', clientMessageId: 'e-3' },
      { content: 'second words', clientMessageId: 'e-4' },
    ])
      await conflict(input);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(deleted);
    for (const [input, m] of [
      [{ content: 'with a file', attachment: file('draft'), clientMessageId: 'e-2' }, filed],
      [{ content: 'del-me', clientMessageId: 'e-3' }, plain],
      [{ content: 'first words', clientMessageId: 'e-4' }, both],
    ] as const) {
      const again = await send(s.url, a.token, { groupId: lobby, ...input });
      expect([again.id, again.content]).toEqual([m.id, null]);
    }
  });

  it("should answer a retry as a new send would for a sender who lost the conversation: nothing of what happened there since", async () => {
    const s = await createTestServer();
    const [owner, rita, ben, mary, pal] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(gql(s.url, 'mutation { createGroup(name: "Closed door", isPrivate: true) { id } }', {}, owner.token))).createGroup.id;
    for (const u of [rita, ben, mary]) await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g, u: u.id }, owner.token));
    const RETRY = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id reactions { emoji } threadParticipants { id } pinnedBy { id } } }';
    const sent = async (u: TestUser, key: string) => (await ok(gql(s.url, RETRY, { i: { groupId: g, content: `mine ${key}`, clientMessageId: key } }, u.token))).sendMessage;
    const first = { rita: await sent(rita, 'r-1'), ben: await sent(ben, 'b-1') };
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g, u: rita.id }, owner.token));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { banFromGroup(groupId: $g, userId: $u) { id } }', { g, u: ben.id }, owner.token));
    // What members did after they were gone.
    for (const m of [first.rita.id, first.ben.id]) {
      await sendMessage(s.url, mary.token, { groupId: g, parentId: m, content: 'said behind their back' });
      await ok(gql(s.url, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "😂") { id } }', { m }, mary.token));
      await ok(gql(s.url, 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }', { m }, mary.token));
    }
    for (const [u, key] of [[rita, 'r-1'], [ben, 'b-1']] as const) {
      const fresh = await gql(s.url, RETRY, { i: { groupId: g, content: 'new' } }, u.token);
      const retry = await gql(s.url, RETRY, { i: { groupId: g, content: `mine ${key}`, clientMessageId: key } }, u.token);
      expect([codeOf(retry), retry.data?.sendMessage ?? null]).toEqual([codeOf(fresh), null]);
      expect(codeOf(retry)).toBe('NOT_FOUND');
      // Another message under the key is still CONFLICT, as API.md has it, before who may send.
      expect(codeOf(await gql(s.url, RETRY, { i: { groupId: g, content: 'something else', clientMessageId: key } }, u.token))).toBe('CONFLICT');
    }
    // A direct message's retry after the pair stopped being friends: refused as a new one is.
    await befriend(s.url, rita, pal);
    const dm = { toUserId: pal.id, content: 'between us', clientMessageId: 'd-1' };
    await ok(gql(s.url, RETRY, { i: dm }, rita.token));
    await ok(gql(s.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: pal.id }, rita.token));
    const fresh = await gql(s.url, RETRY, { i: { ...dm, clientMessageId: null } }, rita.token);
    expect(codeOf(fresh)).toBeDefined();
    expect(codeOf(await gql(s.url, RETRY, { i: dm }, rita.token))).toBe(codeOf(fresh));
  });

  it("should answer a file's retry that read its message just before the message's deletion with the deleted message, not CONFLICT", async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const input = { groupId: lobby, content: 'with a file', clientMessageId: 'file-1', attachment: { fileName: 'dot.png', base64: PNG.toString('base64') } };
    const first = await sendMessage(s.url, a.token, input);
    // The retry reads the message as it was, then the deletion takes its file before the file is compared.
    const stale = await messageRepository.byClientId(s.database.orm.em.fork(), a.id, 'file-1');
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: first.id }, a.token));
    const read = jest.spyOn(messageRepository, 'byClientId').mockResolvedValueOnce(stale);
    try {
      const again = await ok(gql(s.url, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id deletedAt } }', { i: input }, a.token));
      expect(again.sendMessage).toEqual({ id: first.id, deletedAt: expect.any(String) });
    } finally {
      read.mockRestore();
    }
  });

  it('should keep a message whose publish failed, and count the failure', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const spy = jest.spyOn(s.services.pubsub, 'publishTogether').mockRejectedValue(new Error('redis down'));
    try {
      const m = await send(s.url, a.token, { groupId: lobby, content: 'safe anyway' });
      expect(s.services.messages.publishFailures).toBe(1);
      const h = (await request(s.url, HistoryDocument, { conversation: { groupId: lobby } }, a.token)).history;
      expect(h.edges.map((e: any) => e.node.id)).toEqual([m.id]);
    } finally {
      spy.mockRestore();
    }
  });

  it("should keep a deleted user's messages with a placeholder sender", async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, a.token);
    await send(s.url, a.token, { groupId: lobby, content: 'before I go' });
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: a.password }, a.token));
    const h = (await request(s.url, HistoryDocument, { conversation: { groupId: lobby } }, b.token)).history;
    expect(h.edges[0].node).toMatchObject({ content: 'before I go', sender: { id: a.id, displayName: 'Deleted user' } });
    expect(h.edges[0].node.sender.username).toMatch(/^deleted-/);
  });
});

describe('attachments', () => {
  it('should take in, and read out, only so many files at once (a third of the pool each), the rest in turn, while other requests are served', async () => {
    // DB_POOL_MAX 3: one file in and one file out at a time.
    const s = await createTestServer({ DB_POOL_MAX: '3' });
    const users = await Promise.all(Array.from({ length: 3 }, () => signup(s.url)));
    const lobby = await lobbyOf(s.url, users[0].token);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let inside = 0;
    const hold = <A extends unknown[], R>(real: (...a: A) => Promise<R>, only: (...a: A) => boolean) =>
      (async (...a: A) => {
        if (!only(...a)) return real.apply(messageRepository, a);
        inside++;
        await held;
        try {
          return await real.apply(messageRepository, a);
        } finally {
          inside--;
        }
      }) as (...a: A) => Promise<R>;
    const holding = hold(messageRepository.insert, (_em, _m, file) => file !== null);
    const insert = jest.spyOn(messageRepository, 'insert').mockImplementation(holding);
    try {
      const file = { fileName: 'dot.png', base64: PNG.toString('base64') };
      const sends = users.map((u, i) => sendMessage(s.url, u.token, { groupId: lobby, content: `file ${i}`, attachment: file }));
      await eventually(() => inside === 1);
      // The others wait their turn; a message without a file goes meanwhile.
      await sendMessage(s.url, users[0].token, { groupId: lobby, content: 'no file' });
      expect(inside).toBe(1);
      release();
      const sent = await Promise.all(sends);
      expect(sent.map((m) => m.attachment?.size)).toEqual([PNG.length, PNG.length, PNG.length]);
      expect(s.services.messages.filesAtOncePeak.in).toBe(1);
    } finally {
      insert.mockRestore();
    }
    // Reads out: three users asking for base64 at once, one at a time.
    let out = 0;
    let peak = 0;
    const real = messageRepository.attachmentData;
    const read = jest.spyOn(messageRepository, 'attachmentData').mockImplementation(async (em, id) => {
      peak = Math.max(peak, ++out);
      await new Promise((r) => setTimeout(r, 50));
      try {
        return await real.call(messageRepository, em, id);
      } finally {
        out--;
      }
    });
    try {
      const PAGE = 'query($c: ConversationInput!) { history(conversation: $c, last: 5) { edges { node { attachment { base64 } } } } }';
      const pages = await Promise.all(users.map((u) => ok(gql(s.url, PAGE, { c: { groupId: lobby } }, u.token))));
      for (const p of pages) expect(p.history.edges.filter((e: any) => e.node.attachment?.base64 === PNG.toString('base64'))).toHaveLength(3);
      expect(peak).toBe(1);
    } finally {
      read.mockRestore();
    }
  });

  it('should store a checked file and serve it only to members, as a download', async () => {
    const s = await createTestServer();
    const [a, outsider] = [await signup(s.url), await signup(s.url)];
    const g = (await request(s.url, CreateGroupDocument, { name: 'Files' }, a.token)).createGroup.id;
    const m = await send(s.url, a.token, { groupId: g, content: 'pic', attachment: { fileName: 'dot.png', base64: PNG.toString('base64') } });
    expect(m.attachment).toMatchObject({ fileName: 'dot.png', mimeType: 'image/png', size: PNG.length });
    const base = s.url.replace('/graphql', '');
    // The header-authenticated form, beside the signed link of Attachment.url.
    const plain = `/attachments/${m.attachment!.id}`;
    const res = await fetch(base + plain, { headers: { authorization: `Bearer ${a.token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="dot.png"/);
    expect(Buffer.from(await res.arrayBuffer()).equals(PNG)).toBe(true);
    // A name's every character outside RFC 8187's attr-char is escaped in filename* (encodeURIComponent keeps ' ( ) *);
    // in the ASCII filename, each character not ASCII is one _ (an emoji was two: an outside probe).
    const odd = await send(s.url, a.token, { groupId: g, attachment: { fileName: "l'été 😀 (2).png", base64: PNG.toString('base64') } });
    const oddRes = await fetch(base + `/attachments/${odd.attachment!.id}`, { headers: { authorization: `Bearer ${a.token}` } });
    expect(oddRes.headers.get('content-disposition')).toBe(`attachment; filename="l'_t_ _ (2).png"; filename*=UTF-8''l%27%C3%A9t%C3%A9%20%F0%9F%98%80%20%282%29.png`);
    expect((await fetch(base + plain, { headers: { authorization: `Bearer ${outsider.token}` } })).status).toBe(404);
    expect((await fetch(base + plain)).status).toBe(401);
    // An id that can't be one (a malformed escape) is not found, answered as an unknown one is.
    for (const path of ['/attachments/%E0%A4%A', '/attachments/00000000-0000-4000-8000-000000000000']) {
      const missing = await fetch(base + path, { headers: { authorization: `Bearer ${a.token}` } });
      expect([path, missing.status, ((await missing.json()) as any).errors[0].extensions.code]).toEqual([path, 404, 'NOT_FOUND']);
    }
    const h = (await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c) { edges { node { attachment { base64 } } } } }', { c: { groupId: g } }, a.token))).history;
    expect(h.edges[0].node.attachment.base64).toBe(PNG.toString('base64'));
    // Attachment-only messages are fine; text files too.
    const txt = await send(s.url, a.token, { groupId: g, attachment: { fileName: 'notes.txt', base64: Buffer.from('héllo\n').toString('base64') } });
    expect(txt).toMatchObject({ content: null, attachment: { mimeType: 'text/plain' } });
    // Its download says it is UTF-8 (checked on upload); a file stored with the parameter in its type reads the same.
    const download = await fetch(new URL(txt.attachment!.url, s.url));
    expect([download.headers.get('content-type'), await download.text()]).toEqual(['text/plain; charset=utf-8', 'héllo\n']);
    await sql(s.env.DATABASE_URL!, "update attachments set mime_type = 'text/plain; charset=utf-8' where id = $1", [txt.attachment!.id]);
    const again = (await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c, last: 1) { edges { node { attachment { mimeType } } } } }', { c: { groupId: g } }, a.token))).history;
    expect(again.edges[0].node.attachment.mimeType).toBe('text/plain');
  });

  it('should give an absolute, signed, short-lived link that needs no token, and 404 for one altered or expired', async () => {
    const s = await createTestServer({ ATTACHMENT_URL_TTL: '1s' });
    const a = await signup(s.url);
    const g = (await request(s.url, CreateGroupDocument, { name: 'Files' }, a.token)).createGroup.id;
    const w = wsClient(s.wsUrl, a.token);
    await w.connected;
    const live = subscribe(w, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { attachment { id url } } }', { c: { groupId: g } });
    // A second socket that reached the server under another name (as through another DNS name or proxy).
    const elsewhere = createClient({
      url: s.wsUrl,
      webSocketImpl: class extends WebSocket {
        constructor(address: string, protocols: string[]) {
          super(address, protocols, { headers: { host: `chat.example.net:${s.port}` } });
        }
      },
      retryAttempts: 0,
      connectionParams: { authorization: `Bearer ${a.token}` },
    });
    const otherLive = { values: [] as any[], nth: async (n: number) => eventually(() => otherLive.values[n - 1]) };
    const stopOther = elsewhere.subscribe({ query: 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { attachment { id url } } }', variables: { c: { groupId: g } } }, {
      next: (r) => otherLive.values.push(r.data),
      error: () => undefined,
      complete: () => undefined,
    });
    await eventually(() => s.fanout.active.messageAdded === 2);
    const m = await send(s.url, a.token, { groupId: g, attachment: { fileName: 'dot.png', base64: PNG.toString('base64') } });
    const other = await send(s.url, a.token, { groupId: g, attachment: { fileName: 'notes.txt', base64: Buffer.from('other').toString('base64') } });
    const origin = new URL(s.url).origin;
    const url = new URL(m.attachment!.url);
    // Absolute, at the host the client reached, for an <img src> or <a href> that sends no header.
    expect(`${url.origin}${url.pathname}`).toBe(`${origin}/attachments/${m.attachment!.id}`);
    expect([...url.searchParams.keys()].sort()).toEqual(['expires', 'signature']);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('cache-control')).toMatch(/^private, max-age=\d+$/);
    expect(Buffer.from(await res.arrayBuffer()).equals(PNG)).toBe(true);
    // HEAD answers as GET does, without the bytes (a link checker, a client sizing a download).
    const head = await fetch(url, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-type'), head.headers.get('content-length'), (await head.arrayBuffer()).byteLength]).toEqual([200, 'image/png', String(PNG.length), 0]);
    const put = await fetch(url, { method: 'PUT', body: 'x' });
    expect([put.status, put.headers.get('allow'), ((await put.json()) as any).errors[0].extensions.code]).toEqual([405, 'GET, HEAD', 'BAD_USER_INPUT']);
    // The same over the WebSocket, each socket with the host it reached (one execution is shared per host).
    const pushed = new URL((await live.nth(1)).messageAdded.attachment.url);
    expect(pushed.origin).toBe(origin);
    expect((await fetch(pushed)).status).toBe(200);
    expect(new URL((await otherLive.nth(1)).messageAdded.attachment.url).origin).toBe(`http://chat.example.net:${s.port}`);

    const altered = (change: (u: URL) => void) => {
      const u = new URL(url);
      change(u);
      return u;
    };
    const tampered = [
      // A valid signature for another attachment.
      altered((u) => (u.pathname = `/attachments/${other.attachment!.id}`)),
      altered((u) => u.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600))),
      altered((u) => u.searchParams.set('signature', u.searchParams.get('signature')!.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')))),
      altered((u) => u.searchParams.delete('signature')),
      altered((u) => u.searchParams.delete('expires')),
      altered((u) => u.searchParams.set('expires', 'soon')),
      // The same expiry written another way is another link: one URL per attachment and expiry.
      altered((u) => u.searchParams.set('expires', `0${u.searchParams.get('expires')}`)),
      altered((u) => u.searchParams.set('expires', `${u.searchParams.get('expires')}.0`)),
    ];
    for (const u of tampered) expect([u.href, (await fetch(u)).status]).toEqual([u.href, 404]);
    // Even with a member's token, a bad signature is no fallback to the header.
    expect((await fetch(tampered[0], { headers: { authorization: `Bearer ${a.token}` } })).status).toBe(404);
    // Past ATTACHMENT_URL_TTL (rounded up to a fifth of it) the link is gone; a fresh one works.
    await eventually(async () => (await fetch(url)).status === 404, 5000, 100);
    const fresh = (await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c) { edges { node { attachment { id url } } } } }', { c: { groupId: g } }, a.token))).history;
    const again = fresh.edges.find((e: any) => e.node.attachment.id === m.attachment!.id).node.attachment.url;
    expect((await fetch(again)).status).toBe(200);
    stopOther();
    await elsewhere.dispose();
  });

  it('should build links from PUBLIC_URL, or from X-Forwarded-Proto and -Host only behind a trusted proxy', async () => {
    const linkOf = async (s: TestServer, headers: Record<string, string> = {}) => {
      const a = await signup(s.url);
      const lobby = await lobbyOf(s.url, a.token);
      const res = await fetch(s.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}`, ...headers },
        body: JSON.stringify({ query: print(SendMessageDocument), variables: { input: { groupId: lobby, attachment: { fileName: 'dot.png', base64: PNG.toString('base64') } } } }),
      });
      return ((await res.json()) as any).data.sendMessage.attachment.url as string;
    };
    const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'chat.example.org' };
    const direct = await createTestServer();
    expect(await linkOf(direct, forwarded)).toMatch(new RegExp(`^${new URL(direct.url).origin}/attachments/`));
    await direct.dispose();
    const proxied = await createTestServer({ TRUST_PROXY: 'true' });
    expect(await linkOf(proxied, forwarded)).toMatch(/^https:\/\/chat\.example\.org\/attachments\//);
    // A proxy that appends: the last entry is its own, what comes before it the client's.
    expect(await linkOf(proxied, { 'x-forwarded-proto': 'http, https', 'x-forwarded-host': 'evil.example, chat.example.org' })).toMatch(/^https:\/\/chat\.example\.org\/attachments\//);
    await proxied.dispose();
    const pub = await createTestServer({ PUBLIC_URL: 'https://parley.example.com/' });
    expect(await linkOf(pub, forwarded)).toMatch(/^https:\/\/parley\.example\.com\/attachments\//);
  });

  it('should accept a link on every instance sharing the database, and only with the same secret', async () => {
    const one = await createTestServer();
    const two = await createTestServer({}, { clean: false });
    const a = await signup(one.url);
    const m = await send(one.url, a.token, { groupId: await lobbyOf(one.url, a.token), attachment: { fileName: 'dot.png', base64: PNG.toString('base64') } });
    const onTwo = new URL(m.attachment!.url);
    onTwo.port = String(two.port);
    // No ATTACHMENT_URL_SECRET: both use the secret the first instance stored in the database.
    expect((await fetch(onTwo)).status).toBe(200);
    const configured = await createTestServer({ ATTACHMENT_URL_SECRET: 'a-configured-secret-0123456789' }, { clean: false });
    onTwo.port = String(configured.port);
    expect((await fetch(onTwo)).status).toBe(404);
    const sameSecret = await createTestServer({ ATTACHMENT_URL_SECRET: 'a-configured-secret-0123456789' }, { clean: false });
    const signed = new URL(
      (await ok(gql(configured.url, 'query($id: ID!) { history(conversation: { groupId: $id }) { edges { node { attachment { url } } } } }', { id: await lobbyOf(one.url, a.token) }, a.token))).history.edges[0].node.attachment.url,
    );
    signed.port = String(sameSecret.port);
    expect((await fetch(signed)).status).toBe(200);
  });

  it('should reject bad names, bad base64, mismatched content and oversize files, storing nothing', async () => {
    const s = await createTestServer({ ATTACHMENT_MAX_BYTES: '1024' });
    const a = await signup(s.url);
    const g = (await request(s.url, CreateGroupDocument, { name: 'Files' }, a.token)).createGroup.id;
    const before = await snapshot(s.env.DATABASE_URL!);
    const png = PNG.toString('base64');
    const cases: [{ fileName: string; base64: string }, string][] = [
      [{ fileName: 'a.jpg.php', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: 'evil\u0000.png', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: '../../etc/passwd.png', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: 'dir\\x.png', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: 'noext', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: 'x.exe', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: 'x.png', base64: 'not base64!!' }, 'BAD_USER_INPUT'],
      [{ fileName: 'x.png', base64: '' }, 'BAD_USER_INPUT'],
      [{ fileName: 'x.jpg', base64: png }, 'BAD_USER_INPUT'],
      [{ fileName: 'x.pdf', base64: Buffer.from('hello').toString('base64') }, 'BAD_USER_INPUT'],
      [{ fileName: 'x.txt', base64: Buffer.from([0x00, 0x01, 0xff]).toString('base64') }, 'BAD_USER_INPUT'],
      [{ fileName: 'big.png', base64: Buffer.concat([PNG, Buffer.alloc(2000)]).toString('base64') }, 'PAYLOAD_TOO_LARGE'],
      // 256 characters (code points: each emoji is one).
      [{ fileName: '📎'.repeat(252) + '.png', base64: png }, 'BAD_USER_INPUT'],
    ];
    for (const [attachment, code] of cases) {
      const r = await attempt(s.url, SendMessageDocument, { input: { groupId: g, content: 'x', attachment } }, a.token);
      expect([attachment.fileName, codeOf(r)]).toEqual([attachment.fileName, code]);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // 255 are allowed, however many UTF-16 units they take.
    const longest = await send(s.url, a.token, { groupId: g, attachment: { fileName: '📎'.repeat(251) + '.png', base64: png } });
    expect(longest.attachment!.fileName).toBe('📎'.repeat(251) + '.png');
  });
});

describe('delivery', () => {
  it('should deliver a conversation to its subscribers and everything of theirs to unfiltered ones', async () => {
    const s = await createTestServer();
    const [a, b, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await request(s.url, CreateGroupDocument, { name: 'Room' }, a.token)).createGroup.id;
    await request(s.url, JoinGroupDocument, { groupId: g }, b.token);
    await befriend(s.url, a, b);
    const lobby = await lobbyOf(s.url, a.token);
    const bRoom = await listen(s, b, { groupId: g });
    const bAll = await listen(s, b);
    const outAll = await listen(s, outsider);
    await send(s.url, a.token, { groupId: g, content: 'room' });
    await send(s.url, a.token, { toUserId: b.id, content: 'direct' });
    await send(s.url, a.token, { groupId: lobby, content: 'lobby' });
    await bAll.sub.nth(3);
    expect(bAll.sub.values.map((v) => v.messageAdded.content)).toEqual(['room', 'direct', 'lobby']);
    expect(bRoom.sub.values.map((v) => v.messageAdded.content)).toEqual(['room']);
    // The lobby message was sent last: the first the outsider gets, with nothing before it.
    await outAll.sub.nth(1);
    expect(outAll.sub.values.map((v) => v.messageAdded.content)).toEqual(['lobby']);
  });

  it('should refuse to subscribe to a conversation the viewer may not read', async () => {
    const s = await createTestServer();
    const [a, outsider] = [await signup(s.url), await signup(s.url)];
    const priv = (await request(s.url, CreateGroupDocument, { name: 'Closed', isPrivate: true }, a.token)).createGroup.id;
    const w = wsClient(s.wsUrl, outsider.token);
    await w.connected;
    const sub = subscribe<any>(w, ADDED, { c: { groupId: priv } });
    await sub.done;
    expect(JSON.stringify(sub.errors)).toMatch(/NOT_FOUND/);
  });

  it('should stop delivering to a member who leaves, on sockets opened before', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const g = (await request(s.url, CreateGroupDocument, { name: 'Room' }, a.token)).createGroup.id;
    await request(s.url, JoinGroupDocument, { groupId: g }, b.token);
    const filtered = await listen(s, b, { groupId: g });
    const all = await listen(s, b);
    await send(s.url, a.token, { groupId: g, content: 'before' });
    await all.sub.nth(1);
    await request(s.url, LeaveGroupDocument, { groupId: g }, b.token);
    await send(s.url, a.token, { groupId: g, content: 'after' });
    // A lobby message as a barrier: once the unfiltered subscription has it, 'after' would have reached
    // both (one instance hands each event to every subscription at once).
    await send(s.url, a.token, { groupId: await lobbyOf(s.url, a.token), content: 'barrier' });
    await all.sub.nth(2);
    expect(all.sub.values.map((v) => v.messageAdded.content)).toEqual(['before', 'barrier']);
    expect(filtered.sub.values.map((v) => v.messageAdded.content)).toEqual(['before']);
  });

  it('should let a client that was disconnected catch up on every message with first/after', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, a.token);
    const live = await listen(s, b, { groupId: lobby });
    await send(s.url, a.token, { groupId: lobby, content: 'seen live' });
    await live.sub.nth(1);
    const cursor = (await request(s.url, HistoryDocument, { conversation: { groupId: lobby }, last: 1 }, b.token)).history.pageInfo.endCursor;
    await live.w.dispose();
    const missed: string[] = [];
    for (let i = 0; i < 30; i++) missed.push((await send(s.url, a.token, { groupId: lobby, content: `missed ${i}` })).id);
    const caught: string[] = [];
    let after = cursor;
    for (;;) {
      const page = (await request(s.url, HistoryDocument, { conversation: { groupId: lobby }, first: 7, after }, b.token)).history;
      caught.push(...page.edges.map((e: any) => e.node.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(caught).toEqual(missed);
  });
});
