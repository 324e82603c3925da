import { codeOf, gql, listen, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { buildGroup, buildProject, sendMessage, signup, type TestUser } from './helpers/factories';
import { sql } from './helpers/db';

const PAGE = 'edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }';
const VARS = '$first: Int, $after: String, $last: Int, $before: String';
const ARGS = 'first: $first, after: $after, last: $last, before: $before';

interface Page {
  edges: { cursor: string; node: { id: string } }[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}
type Fetch = (vars: Record<string, unknown>) => Promise<Page>;

/** Every id, walked `size` at a time forward (first/after) and back (last/before); each page's edges in the connection's order. */
async function walk(fetch: Fetch, size: number): Promise<{ forward: string[]; backward: string[] }> {
  const forward: string[] = [];
  for (let after: string | null = null, pages = 0; ; pages++) {
    const p: Page = await fetch({ first: size, after });
    expect(p.pageInfo.hasPreviousPage).toBe(after !== null);
    forward.push(...p.edges.map((e) => e.node.id));
    if (p.edges.length) expect([p.pageInfo.startCursor, p.pageInfo.endCursor]).toEqual([p.edges[0].cursor, p.edges[p.edges.length - 1].cursor]);
    if (!p.pageInfo.hasNextPage) break;
    expect(p.edges).toHaveLength(size);
    after = p.pageInfo.endCursor;
    expect(pages).toBeLessThan(50);
  }
  const backward: string[] = [];
  for (let before: string | null = null, pages = 0; ; pages++) {
    const p: Page = await fetch({ last: size, before });
    expect(p.pageInfo.hasNextPage).toBe(before !== null);
    backward.unshift(...p.edges.map((e) => e.node.id));
    if (!p.pageInfo.hasPreviousPage) break;
    expect(p.edges).toHaveLength(size);
    before = p.pageInfo.startCursor;
    expect(pages).toBeLessThan(50);
  }
  return { forward, backward };
}

describe('connections', () => {
  it('should page every connection both ways, first/after and last/before giving the same order', async () => {
    const s = await createTestServer();
    const users: TestUser[] = [];
    for (let i = 0; i < 5; i++) users.push(await signup(s.url));
    const [alice] = users;
    const groups = [];
    for (let i = 0; i < 4; i++) groups.push(await buildGroup(s.url, alice, { name: `Paging ${'DcbA'[i]}`, members: users.slice(1) }));
    for (const g of [groups[2], groups[0], groups[3]]) await sendMessage(s.url, alice.token, { groupId: g.id, content: `banana bread ${g.id}` });
    await sendMessage(s.url, users[1].token, { groupId: groups[1].id, content: 'banana split' });
    await sendMessage(s.url, users[2].token, { groupId: groups[1].id, content: 'bananas, bananas' });
    const project = await buildProject(s.url, users[1], { participants: [alice] });
    for (const title of ['One', 'Two', 'Three', 'Four']) await ok(gql(s.url, 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id } }', { p: project.id, t: title }, users[1].token));
    // Four mentions of alice and four threads of hers with unread replies.
    for (let i = 0; i < 4; i++) await sendMessage(s.url, users[1 + (i % 2)].token, { groupId: groups[i].id, content: `@${alice.username} look ${i}` });
    for (let i = 0; i < 4; i++) {
      const root = await sendMessage(s.url, alice.token, { groupId: groups[0].id, content: `thread ${i}` });
      await sendMessage(s.url, users[1].token, { groupId: groups[0].id, content: `reply ${i}`, parentId: root.id });
    }

    const connection = (query: string, field: string, extra: Record<string, unknown> = {}, pick?: (p: any) => Page): Fetch => async (vars) => {
      const data = await ok(gql(s.url, query, { ...extra, ...vars }, alice.token));
      const page = field.split('.').reduce((o, k) => o[k], data);
      return pick ? pick(page) : page;
    };
    const cases: [string, Fetch][] = [
      ['users', connection(`query(${VARS}) { users(${ARGS}) { ${PAGE} } }`, 'users')],
      ['groups', connection(`query(${VARS}) { groups(${ARGS}) { ${PAGE} } }`, 'groups')],
      ['Group.members', connection(`query($g: ID!, ${VARS}) { group(id: $g) { members(${ARGS}) { ${PAGE} } } }`, 'group.members', { g: groups[0].id })],
      ['conversations', connection(`query(${VARS}) { conversations(${ARGS}) { ${PAGE} } }`, 'conversations')],
      ['onlineUsers', connection(`query(${VARS}) { onlineUsers(${ARGS}) { ${PAGE} } }`, 'onlineUsers')],
      [
        'searchMessages',
        connection(`query(${VARS}) { searchMessages(query: "banana", ${ARGS}) { edges { cursor node { message { id } } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`, 'searchMessages', {}, (p) => ({
          ...p,
          edges: p.edges.map((e: any) => ({ cursor: e.cursor, node: e.node.message })),
        })),
      ],
      ['projectActions', connection(`query(${VARS}) { projectActions(${ARGS}) { ${PAGE} } }`, 'projectActions')],
      ['history', connection(`query($g: ID!, ${VARS}) { history(conversation: { groupId: $g }, ${ARGS}) { ${PAGE} } }`, 'history', { g: groups[1].id })],
      ['mentions', connection(`query(${VARS}) { mentions(${ARGS}) { ${PAGE} } }`, 'mentions')],
      ['threads', connection(`query(${VARS}) { threads(${ARGS}) { ${PAGE} } }`, 'threads')],
    ];
    for (const [name, fetch] of cases) {
      const all = (await fetch({ first: 100 })).edges.map((e) => e.node.id);
      const newest = (await fetch({ last: 100 })).edges.map((e) => e.node.id);
      expect([name, newest]).toEqual([name, all]);
      expect([name, all.length]).toEqual([name, expect.any(Number)]);
      expect(all.length).toBeGreaterThanOrEqual(name === 'history' ? 2 : 4);
      for (const size of [1, 2, 3]) {
        const { forward, backward } = await walk(fetch, size);
        expect([name, size, forward, backward]).toEqual([name, size, all, all]);
      }
    }
  });

  it('should refuse first/after and last/before together', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const page = (await ok(gql(s.url, '{ groups(first: 1) { pageInfo { endCursor } } }', {}, alice.token))).groups.pageInfo;
    for (const q of [
      '{ groups(first: 1, last: 1) { totalCount } }',
      `{ groups(after: "${page.endCursor}", last: 1) { totalCount } }`,
      `{ conversations(first: 5, before: "${page.endCursor}") { totalCount } }`,
      '{ onlineUsers(first: 5, last: 5) { totalCount } }',
      '{ users(first: 5, last: 5) { totalCount } }',
      '{ projectActions(first: 5, last: 5) { totalCount } }',
      '{ mentions(first: 5, last: 5) { totalCount } }',
      '{ threads(first: 5, last: 5) { totalCount } }',
      `{ mentions(after: "${page.endCursor}", last: 1) { totalCount } }`,
      `{ threads(first: 1, before: "${page.endCursor}") { totalCount } }`,
      `{ mentions(before: "${page.endCursor}") { totalCount } }`,
      `{ threads(before: "${page.endCursor}") { totalCount } }`,
      '{ threads(after: "bm9wZQ") { totalCount } }',
      '{ mentions(last: 101) { totalCount } }',
    ]) {
      expect([q, codeOf(await gql(s.url, q, {}, alice.token))]).toEqual([q, 'BAD_USER_INPUT']);
    }
    // A cursor of another connection's kind is bad input in `before` too.
    expect(codeOf(await gql(s.url, `{ conversations(before: "${page.endCursor}") { totalCount } }`, {}, alice.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, '{ onlineUsers(last: 101) { totalCount } }', {}, alice.token))).toBe('BAD_USER_INPUT');
  });

  it("should say what lies beyond another list's cursor (history, thread, projectActions with a projectId), not that a cursor was given", async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const [e, g, l] = [await buildGroup(s.url, alice, {}), await buildGroup(s.url, alice, {}), await buildGroup(s.url, alice, {})];
    const early = await sendMessage(s.url, alice.token, { groupId: e.id, content: 'early' });
    const sent = [];
    for (const content of ['m0', 'm1', 'm2']) sent.push(await sendMessage(s.url, alice.token, { groupId: g.id, content }));
    const late = await sendMessage(s.url, alice.token, { groupId: l.id, content: 'late' });
    const cursorOf = async (groupId: string, id: string) => {
      const page: Page = (await ok(gql(s.url, `query($g: ID!) { history(conversation: { groupId: $g }) { ${PAGE} } }`, { g: groupId }, alice.token))).history;
      return page.edges.find((x) => x.node.id === id)!.cursor;
    };
    const history = async (args: Record<string, unknown>): Promise<[string[], boolean, boolean]> => {
      const page: Page = (await ok(gql(s.url, `query($g: ID!, ${VARS}) { history(conversation: { groupId: $g }, ${ARGS}) { ${PAGE} } }`, { g: g.id, ...args }, alice.token))).history;
      return [page.edges.map((x) => x.node.id), page.pageInfo.hasPreviousPage, page.pageInfo.hasNextPage];
    };
    const ids = sent.map((m) => m.id);
    // Another conversation's cursor: a time, with nothing of this one beyond it.
    expect(await history({ before: await cursorOf(l.id, late.id) })).toEqual([ids, false, false]);
    expect(await history({ after: await cursorOf(e.id, early.id) })).toEqual([ids, false, false]);
    expect(await history({ last: 2, before: await cursorOf(l.id, late.id) })).toEqual([ids.slice(1), true, false]);
    // This conversation's own cursors: their rows lie beyond the page, the newest and oldest too.
    const own = await Promise.all(ids.map((id) => cursorOf(g.id, id)));
    expect(await history({ before: own[2] })).toEqual([ids.slice(0, 2), false, true]);
    expect(await history({ after: own[0] })).toEqual([ids.slice(1), true, false]);
    expect(await history({ after: own[2] })).toEqual([[], true, false]);
    expect(await history({ before: own[0] })).toEqual([[], false, true]);

    // Another conversation's message of the same millisecond: the page's side of the cursor holds
    // this conversation's own, which lies on the page, not beyond it (ids decide, as in the keyset).
    const [x, y] = [await buildGroup(s.url, alice, {}), await buildGroup(s.url, alice, {})];
    const [mx, my] = [await sendMessage(s.url, alice.token, { groupId: x.id, content: 'x' }), await sendMessage(s.url, alice.token, { groupId: y.id, content: 'y' })];
    await sql(s.env.DATABASE_URL!, 'update messages set created_at = (select created_at from messages where id = $1) where id = $2', [mx.id, my.id]);
    const [lo, hi] = [{ m: mx, g: x }, { m: my, g: y }].sort((a, b) => (a.m.id < b.m.id ? -1 : 1));
    const inGroup = async (groupId: string, args: Record<string, unknown>): Promise<[string[], boolean, boolean]> => {
      const page: Page = (await ok(gql(s.url, `query($g: ID!, ${VARS}) { history(conversation: { groupId: $g }, ${ARGS}) { ${PAGE} } }`, { g: groupId, ...args }, alice.token))).history;
      return [page.edges.map((e) => e.node.id), page.pageInfo.hasPreviousPage, page.pageInfo.hasNextPage];
    };
    expect(await inGroup(hi.g.id, { after: await cursorOf(lo.g.id, lo.m.id) })).toEqual([[hi.m.id], false, false]);
    expect(await inGroup(lo.g.id, { before: await cursorOf(hi.g.id, hi.m.id) })).toEqual([[lo.m.id], false, false]);

    // A thread given another thread's cursor.
    const [r1, r2] = [await sendMessage(s.url, alice.token, { groupId: g.id, content: 'root 1' }), await sendMessage(s.url, alice.token, { groupId: g.id, content: 'root 2' })];
    const reply1 = await sendMessage(s.url, alice.token, { groupId: g.id, content: 'reply 1', parentId: r1.id });
    const reply2 = await sendMessage(s.url, alice.token, { groupId: g.id, content: 'reply 2', parentId: r2.id });
    const threadPage = async (root: string, args: Record<string, unknown>): Promise<Page> =>
      (await ok(gql(s.url, `query($m: ID!, ${VARS}) { thread(messageId: $m, ${ARGS}) { ${PAGE} } }`, { m: root, ...args }, alice.token))).thread;
    const laterCursor = (await threadPage(r2.id, {})).edges[0].cursor;
    const foreign = await threadPage(r1.id, { before: laterCursor });
    expect([foreign.edges.map((x) => x.node.id), foreign.pageInfo.hasPreviousPage, foreign.pageInfo.hasNextPage]).toEqual([[reply1.id], false, false]);
    const ownThread = await threadPage(r2.id, { before: laterCursor });
    expect([ownThread.edges.length, ownThread.pageInfo.hasNextPage]).toEqual([0, true]);
    expect(reply2.id).toBe((await threadPage(r2.id, {})).edges[0].node.id);

    // The inbox's cursor, given with a projectId: project B's entries are all after A's.
    const a = await buildProject(s.url, alice, {});
    const b = await buildProject(s.url, alice, {});
    await ok(gql(s.url, 'mutation($p: ID!) { renameProject(projectId: $p, title: "B again") { id } }', { p: b.id }, alice.token));
    await ok(gql(s.url, 'mutation($p: ID!) { renameProject(projectId: $p, title: "A again") { id } }', { p: a.id }, alice.token));
    const inbox: Page = (await ok(gql(s.url, `{ projectActions(last: 100) { ${PAGE} } }`, {}, alice.token))).projectActions;
    expect(inbox.edges.length).toBeGreaterThanOrEqual(2);
    const actions = async (args: Record<string, unknown>): Promise<Page> =>
      (await ok(gql(s.url, `query($p: ID, ${VARS}) { projectActions(projectId: $p, ${ARGS}) { ${PAGE} } }`, { p: b.id, ...args }, alice.token))).projectActions;
    const lastOfA = inbox.edges[inbox.edges.length - 1].cursor;
    const ofB = await actions({ before: lastOfA });
    expect([ofB.edges.length > 0, ofB.pageInfo.hasNextPage]).toEqual([true, false]);
    const fromOwn = await actions({ before: ofB.edges[ofB.edges.length - 1].cursor });
    expect(fromOwn.pageInfo.hasNextPage).toBe(true);
  });

  it('should not tell of a row beyond a cursor whose own row went since (a mention deleted, a member gone)', async () => {
    const s = await createTestServer();
    const [alice, bob, carol] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await buildGroup(s.url, alice, { members: [bob, carol] });
    const m1 = await sendMessage(s.url, alice.token, { groupId: g.id, content: `@${bob.username} one` });
    const m2 = await sendMessage(s.url, alice.token, { groupId: g.id, content: `@${bob.username} two` });
    const mentions = async (args: Record<string, unknown>): Promise<Page> => (await ok(gql(s.url, `query(${VARS}) { mentions(${ARGS}) { ${PAGE} } }`, args, bob.token))).mentions;
    const first = await mentions({ first: 1 });
    expect(first.edges.map((e) => e.node.id)).toEqual([m2.id]);
    // Still there: it lies before the next page.
    expect((await mentions({ first: 10, after: first.pageInfo.endCursor })).pageInfo.hasPreviousPage).toBe(true);
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: m2.id }, alice.token));
    const rest = await mentions({ first: 10, after: first.pageInfo.endCursor });
    expect([rest.edges.map((e) => e.node.id), rest.pageInfo.hasPreviousPage, rest.pageInfo.hasNextPage]).toEqual([[m1.id], false, false]);

    const members = async (args: Record<string, unknown>): Promise<Page> =>
      (await ok(gql(s.url, `query($g: ID!, ${VARS}) { group(id: $g) { members(${ARGS}) { ${PAGE} } } }`, { g: g.id, ...args }, alice.token))).group.members;
    const newest = await members({ last: 1 });
    expect(newest.edges.map((e) => e.node.id)).toEqual([carol.id]);
    expect((await members({ last: 10, before: newest.pageInfo.startCursor })).pageInfo.hasNextPage).toBe(true);
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: g.id }, carol.token));
    const older = await members({ last: 10, before: newest.pageInfo.startCursor });
    expect([older.edges.map((e) => e.node.id), older.pageInfo.hasPreviousPage, older.pageInfo.hasNextPage]).toEqual([[alice.id, bob.id], false, false]);

    // The sidebar, group and user searches and message search, each with its first row gone after its page.
    const dave = await signup(s.url);
    const tag = `zq${process.pid}`;
    const [g1, g2] = [await buildGroup(s.url, dave, { name: `${tag} a` }), await buildGroup(s.url, dave, { name: `${tag} b` })];
    const h2 = await sendMessage(s.url, dave.token, { groupId: g2.id, content: `${tag} two` });
    const h1 = await sendMessage(s.url, dave.token, { groupId: g1.id, content: `${tag} one` });
    const conn = async (field: string, args: Record<string, unknown>, head = '', extra = ''): Promise<Page> =>
      (await ok(gql(s.url, `query(${VARS}${head}) { ${field}(${extra}${ARGS}) { ${field === 'searchMessages' ? PAGE.replace('node { id }', 'node { id: message { id } }') : PAGE} } }`, args, dave.token)))[field];
    const named = (field: string, args: Record<string, unknown>) => conn(field, { ...args, q: tag }, field === 'searchMessages' ? ', $q: String!' : ', $q: String', field === 'searchMessages' ? 'query: $q, ' : 'search: $q, ');
    const u1 = await signup(s.url, { username: `${tag}_1` });
    const u2 = await signup(s.url, { username: `${tag}_2` });
    // Each list's first row: g1 (newest activity; first by name), h1 (newest), u1.
    const [side, groups, hits, users] = [await conn('conversations', { first: 1 }), await named('groups', { first: 1 }), await named('searchMessages', { first: 1 }), await named('users', { first: 1 })];
    const ids = (p: Page) => p.edges.map((e) => (typeof e.node.id === 'string' ? e.node.id : (e.node.id as { id: string }).id));
    expect([ids(side), ids(groups), ids(hits), ids(users)]).toEqual([[`g:${g1.id}`], [g1.id], [h1.id], [u1.id]]);
    expect((await conn('conversations', { first: 10, after: side.pageInfo.endCursor })).pageInfo.hasPreviousPage).toBe(true);
    expect((await named('searchMessages', { first: 10, after: hits.pageInfo.endCursor })).pageInfo.hasPreviousPage).toBe(true);
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: h1.id }, dave.token));
    await ok(gql(s.url, 'mutation($g: ID!) { deleteGroup(groupId: $g) }', { g: g1.id }, dave.token));
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: u1.password }, u1.token));
    const after = (p: Page) => [ids(p), p.pageInfo.hasPreviousPage, p.pageInfo.hasNextPage];
    const sidebar = await conn('conversations', { first: 10, after: side.pageInfo.endCursor });
    expect(after(sidebar)).toEqual([[`g:${g2.id}`, ids(sidebar)[1]], false, false]);
    expect(after(await named('groups', { first: 10, after: groups.pageInfo.endCursor }))).toEqual([[g2.id], false, false]);
    expect(after(await named('searchMessages', { first: 10, after: hits.pageInfo.endCursor }))).toEqual([[h2.id], false, false]);
    expect(after(await named('users', { first: 10, after: users.pageInfo.endCursor }))).toEqual([[u2.id], false, false]);

    // onlineUsers: its first user goes offline (a logout: at once).
    const everyone = [alice, bob, carol, dave, u2];
    const onlinePage = async (viewer: TestUser, args: Record<string, unknown>): Promise<Page> => (await ok(gql(s.url, `query(${VARS}) { onlineUsers(${ARGS}) { ${PAGE} } }`, args, viewer.token))).onlineUsers;
    const firstOnline = await onlinePage(dave, { first: 1 });
    const gone = everyone.find((u) => u.id === ids(firstOnline)[0])!;
    const viewer = everyone.find((u) => u !== gone)!;
    expect((await onlinePage(viewer, { first: 10, after: firstOnline.pageInfo.endCursor })).pageInfo.hasPreviousPage).toBe(true);
    await ok(gql(s.url, 'mutation { logout }', {}, gone.token));
    const others = await onlinePage(viewer, { first: 10, after: firstOnline.pageInfo.endCursor });
    expect([others.edges.length, others.pageInfo.hasPreviousPage]).toEqual([everyone.length - 1, false]);
  });

  it('should refuse an empty cursor in every connection, as any cursor it did not issue (not read as none)', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const group = await buildGroup(s.url, alice, {});
    const root = await sendMessage(s.url, alice.token, { groupId: group.id, content: 'root' });
    const g = group.id;
    const fields = [
      `history(conversation: { groupId: "${g}" }, X)`,
      `thread(messageId: "${root.id}", X)`,
      'conversations(X)',
      'searchMessages(query: "root", X)',
      'projectActions(X)',
      'users(X)',
      'groups(X)',
      'onlineUsers(X)',
      'mentions(X)',
      'threads(X)',
    ];
    for (const f of fields) {
      for (const arg of ['after: ""', 'before: ""', 'first: 1, before: ""', 'last: 1, after: ""']) {
        const q = `{ ${f.replace('X', arg)} { totalCount } }`;
        const r = await gql(s.url, q, {}, alice.token);
        expect([q, codeOf(r)]).toEqual([q, 'BAD_USER_INPUT']);
      }
    }
    const members = await gql(s.url, `{ group(id: "${g}") { members(after: "") { totalCount } } }`, {}, alice.token);
    expect(codeOf(members)).toBe('BAD_USER_INPUT');
  });
});

describe("a message's cursor", () => {
  it("should be history's cursor of it, in a send's answer and a pushed copy alike, so first/after catches up from the last message pushed", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const c = { groupId: (await buildGroup(s.url, alice, { members: [bob] })).id };
    const pushed = await listen(s, alice, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id cursor } }', { c });
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id cursor } }';
    const sent = [];
    for (const content of ['one', 'two', 'three', 'four']) sent.push((await ok(gql(s.url, SEND, { i: { ...c, content } }, bob.token))).sendMessage);
    await pushed.nth(4);
    const HISTORY = `query($c: ConversationInput!, ${VARS}) { history(conversation: $c, ${ARGS}) { ${PAGE} } }`;
    const page = (await ok(gql(s.url, HISTORY, { c, last: 10 }, alice.token))).history as Page;
    expect(page.edges.map((e) => [e.node.id, e.cursor])).toEqual(sent.map((m) => [m.id, m.cursor]));
    expect(pushed.values.map((v) => v.messageAdded)).toEqual(sent);
    // The last one pushed: what came after it, oldest first; after the newest, nothing.
    const after = (await ok(gql(s.url, HISTORY, { c, first: 10, after: pushed.values[1].messageAdded.cursor }, alice.token))).history as Page;
    expect(after.edges.map((e) => e.node.id)).toEqual([sent[2].id, sent[3].id]);
    expect(after.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
    const none = (await ok(gql(s.url, HISTORY, { c, first: 10, after: sent[3].cursor }, alice.token))).history as Page;
    expect(none.edges).toEqual([]);
  });

  it("should be taken by thread too, so a client streaming a thread catches up from the last reply pushed to it", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const c = { groupId: (await buildGroup(s.url, alice, { members: [bob] })).id };
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id cursor } }';
    const root = (await ok(gql(s.url, SEND, { i: { ...c, content: 'root' } }, alice.token))).sendMessage;
    const pushed = await listen(s, alice, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id cursor } }', { c: { ...c, threadId: root.id } });
    const replies = [];
    for (const content of ['one', 'two', 'three', 'four']) replies.push((await ok(gql(s.url, SEND, { i: { ...c, content, parentId: root.id } }, bob.token))).sendMessage);
    await pushed.nth(4);
    const THREAD = `query($m: ID!, ${VARS}) { thread(messageId: $m, ${ARGS}) { ${PAGE} } }`;
    const read = async (args: Record<string, unknown>) => ((await ok(gql(s.url, THREAD, { m: root.id, ...args }, alice.token))).thread as Page).edges.map((e) => e.node.id);
    // Before, a reply's cursor was history's and thread refused it (an outside probe).
    expect(await read({ first: 10, after: pushed.values[1].messageAdded.cursor })).toEqual([replies[2].id, replies[3].id]);
    expect(await read({ last: 10, before: replies[2].cursor })).toEqual([replies[0].id, replies[1].id]);
    expect(await read({ first: 10, after: replies[3].cursor })).toEqual([]);
    // The thread's own cursors as before, and a cursor of another list still refused.
    const own = ((await ok(gql(s.url, THREAD, { m: root.id, last: 10 }, alice.token))).thread as Page).edges;
    expect(await read({ first: 10, after: own[0].cursor })).toEqual(replies.slice(1).map((r) => r.id));
    const threads = (await ok(gql(s.url, '{ threads { edges { cursor } } }', {}, alice.token))).threads.edges;
    expect(codeOf(await gql(s.url, THREAD, { m: root.id, first: 1, after: threads[0].cursor }, alice.token))).toBe('BAD_USER_INPUT');
  });
});
