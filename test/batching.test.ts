import pg from 'pg';
import { gql, listen, ok, sleep } from './helpers/graphql';
import { checkDeadlocksLast, sql, waitedOnBy } from './helpers/db';
import { createTestServer, describeRedis } from './helpers/server';
import { buildGroup, buildProject, groupWith, sendMessage, signup, type TestUser } from './helpers/factories';
import { messageRepository } from '../src/modules/message/message.repository';
import { threadRepository } from '../src/modules/message/thread.repository';

const HISTORY = 'query($g: ID!) { history(conversation: { groupId: $g }, last: 100) { edges { node { id content createdAt sender { id } } } } }';
const ROW = 'query($g: ID!) { conversation(conversation: { groupId: $g }) { unreadCount lastReadMessageId lastMessage { id } } }';
const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id content } }';

interface Stored {
  id: string;
  sender_id: string;
  seq: string;
  pos: string;
  created_at: Date;
}

/** The conversation's messages as stored, in position order, and its head. */
async function stored(url: string, key: string): Promise<{ rows: Stored[]; head: { seq: string; pos: string; last_message_id: string; activity_at: Date; last_at: Date } }> {
  const rows = await sql<Stored>(url, 'select id, sender_id, seq, pos, created_at from messages where conversation_key = $1 order by pos', [key]);
  const [head] = await sql(url, 'select seq, pos, last_message_id, activity_at, last_at from conversation_heads where conversation_key = $1', [key]);
  return { rows, head };
}

/**
 * Sends that arrive while their lane's previous statement runs commit together (group commit),
 * to one group or to many. Whatever the batching, each conversation must read as if each had been sent alone:
 * consecutive seqs and positions, distinct increasing times, each sender's marker on their own
 * last message, every answer its own message, and one bad send failing alone.
 */
describe('sends to one conversation under load', () => {
  it('should commit concurrent sends together and store them as single sends would', async () => {
    const s = await createTestServer();
    const users: TestUser[] = [];
    for (let i = 0; i < 4; i++) users.push(await signup(s.url));
    const g = await groupWith(s.url, users[0], 'Busy', users.slice(1));
    const N = 80;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => sendMessage(s.url, users[i % 4].token, { groupId: g, content: `m${i} "quoted" \\ {braces}, é` })));
    // Every answer is its own message.
    expect(answers.map((a) => a.content)).toEqual(Array.from({ length: N }, (_, i) => `m${i} "quoted" \\ {braces}, é`));
    expect(new Set(answers.map((a) => a.id)).size).toBe(N);
    // Some went together (the first of each run goes alone), and operators see how many.
    expect(s.services.messages.batchedSends).toBeGreaterThan(0);
    const metrics = await (await fetch(new URL('/metrics', s.url))).text();
    expect(Number(/^parley_messages_batched_total (\d+)/m.exec(metrics)?.[1])).toBe(s.services.messages.batchedSends);
    expect(Number(/^parley_messages_sent_total (\d+)/m.exec(metrics)?.[1])).toBe(N);

    const { rows, head } = await stored(s.env.DATABASE_URL!, `g:${g}`);
    expect(rows).toHaveLength(N);
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(rows.map((r) => Number(r.pos))).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    for (let i = 1; i < N; i++) expect(rows[i].created_at.getTime()).toBeGreaterThan(rows[i - 1].created_at.getTime());
    expect(head).toMatchObject({ seq: String(N), pos: String(N), last_message_id: rows[N - 1].id });
    expect(head.last_at.getTime()).toBe(rows[N - 1].created_at.getTime());
    expect(head.activity_at.getTime()).toBe(rows[N - 1].created_at.getTime());

    // History reads them in that order, each with its own sender and text.
    const history = (await ok(gql(s.url, HISTORY, { g }, users[1].token))).history.edges.map((e: any) => e.node);
    expect(history.map((m: any) => m.id)).toEqual(rows.map((r) => r.id));
    const byId = new Map(answers.map((a, i) => [a.id, i]));
    for (const m of history) expect(m.sender.id).toBe(users[byId.get(m.id)! % 4].id);

    // Each sender has read up to their own last message: unread is what came after it.
    for (const u of users) {
      const last = rows.map((r) => r.sender_id).lastIndexOf(u.id);
      const row = (await ok(gql(s.url, ROW, { g }, u.token))).conversation;
      expect(row).toEqual({ unreadCount: N - 1 - last, lastReadMessageId: rows[last].id, lastMessage: { id: rows[N - 1].id } });
    }
  });

  it('should fail one bad send alone and answer a retry raced into the same batch with the first message', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ada, 'Retries', [bo]);
    // A run of sends keeps a statement going, so what follows waits and goes together.
    const load = Array.from({ length: 30 }, (_, i) => sendMessage(s.url, ada.token, { groupId: g, content: `load ${i}` }));
    // Two retries of one message, in flight together: one is stored, both answers name it.
    const retries = [0, 1].map(() => sendMessage(s.url, bo.token, { groupId: g, content: 'once', clientMessageId: 'retry-1' }));
    const [first, second] = await Promise.all(retries);
    await Promise.all(load);
    expect(second.id).toBe(first.id);
    const [{ n }] = await sql(s.env.DATABASE_URL!, "select count(*)::int as n from messages where client_message_id = 'retry-1'");
    expect(n).toBe(1);
    const { rows } = await stored(s.env.DATABASE_URL!, `g:${g}`);
    expect(rows).toHaveLength(31);
    expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));

    // The same clientMessageId for other text in the same burst: CONFLICT for that one only.
    const burst = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => gql(s.url, SEND, { i: { groupId: g, content: `more ${i}` } }, ada.token)),
      gql(s.url, SEND, { i: { groupId: g, content: 'other text', clientMessageId: 'retry-1' } }, bo.token),
    ]);
    expect(burst.slice(0, 10).every((r) => !r.errors && r.data.sendMessage.id)).toBe(true);
    expect(burst[10].errors?.[0].extensions?.code).toBe('CONFLICT');
    expect((await stored(s.env.DATABASE_URL!, `g:${g}`)).rows).toHaveLength(41);
  });

  it('should refuse a send by a non-member or a left member inside a batch alone, with its code, writing nothing', async () => {
    const s = await createTestServer();
    const [ada, bo, cy, dee] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const open = await groupWith(s.url, ada, 'Open', [bo, cy]);
    const closed = (await buildGroup(s.url, ada, { name: 'Closed', isPrivate: true, members: [bo] })).id;
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: open }, cy.token));
    const before = s.services.messages.batchedSends;
    // Members' sends keep each group's statement going; the refused ones arrive among them.
    const outsiders: [string, TestUser, string][] = [
      [open, cy, 'FORBIDDEN'],
      [open, dee, 'FORBIDDEN'],
      [closed, cy, 'NOT_FOUND'],
      [closed, dee, 'NOT_FOUND'],
    ];
    const sends = [open, closed].flatMap((g) => Array.from({ length: 24 }, (_, i) => gql(s.url, SEND, { i: { groupId: g, content: `ok ${i}` } }, (i % 2 ? ada : bo).token)));
    const refused = Array.from({ length: 3 }, (_, round) =>
      outsiders.map(([g, u, code]) => gql(s.url, SEND, { i: { groupId: g, content: `refused ${round}`, clientMessageId: `out-${round}-${u.id}` } }, u.token).then((r) => [r, code] as const)),
    ).flat();
    const answers = await Promise.all(sends);
    expect(answers.every((r) => !r.errors && r.data.sendMessage.id)).toBe(true);
    for (const [r, code] of await Promise.all(refused)) {
      expect(r.errors?.[0].extensions?.code).toBe(code);
    }
    expect(s.services.messages.batchedSends).toBeGreaterThan(before);
    // Nothing of the refused sends is stored, and each group reads as its members' sends alone.
    const url = s.env.DATABASE_URL!;
    const [{ n }] = await sql(url, 'select count(*)::int as n from messages where sender_id = any($1::uuid[])', [[cy.id, dee.id]]);
    expect(n).toBe(0);
    for (const g of [open, closed]) {
      const { rows, head } = await stored(url, `g:${g}`);
      expect(rows).toHaveLength(24);
      expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
      expect(head).toMatchObject({ seq: '24', pos: '24', last_message_id: rows[23].id });
    }
  });

  it('should commit sends to many groups at once together, each group reading as its own sends alone', async () => {
    const s = await createTestServer();
    const [ada, bo, cy, dee] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const G = 24;
    const groups: string[] = [];
    for (let i = 0; i < G; i++) groups.push(await groupWith(s.url, ada, `Spread ${i}`, [bo, cy]));
    const before = s.services.messages.batchedSends;
    // Bo then Cy in each group, every group at once; Dee, no member, among them.
    const sends = groups.flatMap((g, i) => [
      sendMessage(s.url, bo.token, { groupId: g, content: `bo ${i}` }),
      sleep(1).then(() => sendMessage(s.url, cy.token, { groupId: g, content: `cy ${i}` })),
    ]);
    const outsider = gql(s.url, SEND, { i: { groupId: groups[5], content: 'not a member' } }, dee.token);
    const answers = await Promise.all(sends);
    expect(answers.map((a) => a.content)).toEqual(groups.flatMap((_, i) => [`bo ${i}`, `cy ${i}`]));
    expect((await outsider).errors?.[0].extensions?.code).toBe('FORBIDDEN');
    // Sends of different groups went together: at most a lane's first send went alone.
    expect(s.services.messages.batchedSends - before).toBeGreaterThan(0);

    const url = s.env.DATABASE_URL!;
    const [{ n }] = await sql(url, 'select count(*)::int as n from messages where sender_id = $1', [dee.id]);
    expect(n).toBe(0);
    for (const [i, g] of groups.entries()) {
      const { rows, head } = await stored(url, `g:${g}`);
      expect(rows.map((r) => Number(r.seq))).toEqual([1, 2]);
      expect(rows[1].created_at.getTime()).toBeGreaterThan(rows[0].created_at.getTime());
      expect(new Set(rows.map((r) => r.id))).toEqual(new Set([answers[2 * i].id, answers[2 * i + 1].id]));
      expect(head).toMatchObject({ seq: '2', pos: '2', last_message_id: rows[1].id });
      // Whoever sent last has read both; the other sender one; Ada, who sent nothing, neither.
      const first = rows[0].sender_id === bo.id ? bo : cy;
      const last = first === bo ? cy : bo;
      for (const [u, unread, marker] of [
        [ada, 2, null],
        [first, 1, rows[0].id],
        [last, 0, rows[1].id],
      ] as const) {
        const row = (await ok(gql(s.url, ROW, { g }, u.token))).conversation;
        expect(row).toEqual({ unreadCount: unread, lastReadMessageId: marker, lastMessage: { id: rows[1].id } });
      }
    }
    // Ada's sidebar: every group, newest message first, as the heads order them.
    const heads = await sql(url, "select conversation_key from conversation_heads where conversation_key = any($1) order by activity_at desc, conversation_key desc", [groups.map((g) => `g:${g}`)]);
    const page = (await ok(gql(s.url, 'query { conversations(first: 30) { edges { node { id kind group { id } } } } }', {}, ada.token))).conversations.edges.map((e: any) => e.node);
    const sidebar = page.filter((c: any) => c.kind === 'GROUP' && groups.includes(c.group.id)).map((c: any) => `g:${c.group.id}`);
    expect(sidebar).toEqual(heads.map((h) => h.conversation_key));
  });

  it('should batch open project messages and keep private ones out of the batch', async () => {
    const s = await createTestServer();
    const [ada, bo, cy] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await buildProject(s.url, ada, { title: 'Batched', participants: [bo, cy] })).id;
    const sends = await Promise.all(
      Array.from({ length: 30 }, (_, i) => sendMessage(s.url, (i % 2 ? ada : bo).token, i % 5 === 4 ? { projectId: p, toUserId: cy.id, content: `private ${i}` } : { projectId: p, content: `open ${i}` })),
    );
    expect(new Set(sends.map((m) => m.id)).size).toBe(30);
    const rows = await sql(s.env.DATABASE_URL!, 'select pos, recipient_id from messages where conversation_key = $1 order by pos', [`p:${p}`]);
    expect(rows.map((r) => Number(r.pos))).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(rows.filter((r) => r.recipient_id === cy.id)).toHaveLength(6);
    // Cy sees all 30; Ada sees the 24 open ones and her own private ones (3).
    const page = (id: TestUser) => ok(gql(s.url, 'query($p: ID!) { history(conversation: { projectId: $p }, last: 100) { edges { node { id } } } }', { p }, id.token));
    expect((await page(cy)).history.edges).toHaveLength(30);
    expect((await page(ada)).history.edges).toHaveLength(24 + 3);
  });
});

describe('replies under load', () => {
  const THREAD = `query($m: ID!) { thread(messageId: $m, first: 100) { totalCount edges { node { id parentId sender { id } } } } }`;
  const ROOT = `query($g: ID!) { history(conversation: { groupId: $g }, last: 10) { edges { node { id replyCount lastReplyAt threadParticipants { id } } } } }`;

  it('should commit replies in many groups together, each thread and head as its replies alone, refused ones alone with their codes', async () => {
    const s = await createTestServer();
    const [ada, bo, cy, dee] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const G = 8;
    const groups: string[] = [];
    const roots: string[] = [];
    for (let k = 0; k < G; k++) {
      groups.push(await groupWith(s.url, ada, `Threads ${k}`, [bo, cy]));
      roots.push((await sendMessage(s.url, ada.token, { groupId: groups[k], content: `root ${k}` })).id);
    }
    const gone = (await sendMessage(s.url, bo.token, { groupId: groups[0], content: 'to be deleted' })).id;
    await ok(gql(s.url, 'mutation($id: ID!) { deleteMessage(messageId: $id) }', { id: gone }, bo.token));
    const before = s.services.messages.batchedSends;
    const batches = jest.spyOn(threadRepository, 'insertReplyBatch');
    // Three rounds of a reply to every group at once, by turns of members; refused ones among them.
    const R = 3;
    const repliers = [bo, cy, ada];
    // The second round's replies mention ada.
    const text = (r: number) => (r === 1 ? `@${ada.username} reply ${r}` : `reply ${r}`);
    const replies = Array.from({ length: R }, (_, r) => groups.map((g, k) => gql(s.url, SEND, { i: { groupId: g, parentId: roots[k], content: text(r) } }, repliers[r].token))).flat();
    const refused: [Promise<any>, string][] = [
      [gql(s.url, SEND, { i: { groupId: groups[1], parentId: roots[1], content: 'outsider' } }, dee.token), 'FORBIDDEN'],
      [gql(s.url, SEND, { i: { groupId: groups[0], parentId: gone, content: 'to a deleted one' } }, cy.token), 'BAD_USER_INPUT'],
      [gql(s.url, SEND, { i: { groupId: groups[2], parentId: roots[3], content: 'to another group' } }, cy.token), 'BAD_USER_INPUT'],
    ];
    const answers = await Promise.all(replies);
    expect(answers.every((r) => !r.errors && r.data.sendMessage.id)).toBe(true);
    for (const [r, code] of refused) expect((await r).errors?.[0].extensions?.code).toBe(code);
    expect(s.services.messages.batchedSends).toBeGreaterThan(before);
    // The replies that mention ada went in batches too, one reply per conversation in each.
    const batched = batches.mock.calls.map(([, items]) => items);
    batches.mockRestore();
    expect(batched.some((items) => items.some((x) => x.mentions?.names.includes(ada.username.toLowerCase())))).toBe(true);
    for (const items of batched) expect(new Set(items.map((x) => x.conversationKey)).size).toBe(items.length);

    const url = s.env.DATABASE_URL!;
    const [{ n }] = await sql(url, "select count(*)::int as n from messages where content in ('outsider', 'to a deleted one', 'to another group')");
    expect(n).toBe(0);
    // Each mentioning reply stored its mention once, kept in its thread (not the timeline's badge).
    const mentions = await sql(url, 'select m.content, x.in_timeline from message_mentions x join messages m on m.id = x.message_id where x.user_id = $1', [ada.id]);
    expect(mentions).toEqual(groups.map(() => ({ content: text(1), in_timeline: false })));
    for (const [k, g] of groups.entries()) {
      // The thread holds its three replies in the order they were stored; positions run on from the root's.
      const thread = (await ok(gql(s.url, THREAD, { m: roots[k] }, ada.token))).thread;
      expect(thread.totalCount).toBe(R);
      const stored = await sql(url, 'select id, pos, created_at from messages where conversation_key = $1 order by pos', [`g:${g}`]);
      expect(stored.map((m) => Number(m.pos))).toEqual(Array.from({ length: stored.length }, (_, i) => i + 1));
      expect(thread.edges.map((e: any) => e.node.id)).toEqual(stored.filter((m) => m.id !== roots[k] && m.id !== gone).map((m) => m.id));
      expect(thread.edges.every((e: any) => e.node.parentId === roots[k])).toBe(true);
      const [head] = await sql(url, 'select seq, pos, last_at from conversation_heads where conversation_key = $1', [`g:${g}`]);
      expect(Number(head.pos)).toBe(stored.length);
      expect(head.last_at.getTime()).toBe(stored[stored.length - 1].created_at.getTime());
      // The root counts them, last at the last one's time, with everyone who took part; the timeline holds only the root(s).
      const timeline = (await ok(gql(s.url, ROOT, { g }, bo.token))).history.edges.map((e: any) => e.node);
      const root = timeline.find((m: any) => m.id === roots[k]);
      expect(timeline).toHaveLength(k === 0 ? 2 : 1);
      expect(root.replyCount).toBe(R);
      expect(new Date(root.lastReplyAt).getTime()).toBe(stored[stored.length - 1].created_at.getTime());
      expect(root.threadParticipants.map((u: any) => u.id).sort()).toEqual([ada.id, bo.id, cy.id].sort());
    }
  });
});

describe('mentions under load', () => {
  it('should commit sends that mention someone together, each badge and list as the same sends alone would leave them', async () => {
    const s = await createTestServer();
    const [ada, bo, cy] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const users = [ada, bo, cy];
    const G = 6;
    const groups: string[] = [];
    for (let k = 0; k < G; k++) groups.push(await groupWith(s.url, ada, `Mentions ${k}`, [bo, cy]));
    const before = s.services.messages.batchedSends;
    const batches = jest.spyOn(messageRepository, 'insertBatch');
    // Per group, in turns: ada mentions bo; bo mentions cy and ada; cy says something plain.
    const R = 4;
    const plan = (r: number, k: number) => [
      { by: ada, content: `@${bo.username} look ${r}`, mentions: [bo.id] },
      { by: bo, content: `@${cy.username} @${ada.username} see ${r}`, mentions: [ada.id, cy.id] },
      { by: cy, content: `plain ${r}`, mentions: [] },
    ][(r + k) % 3];
    const sends = Array.from({ length: R * 3 }, (_, r) => groups.map((g, k) => ({ g, ...plan(r, k) }))).flat();
    const answers = await Promise.all(
      sends.map((x) => gql(s.url, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id mentions { id } } }', { i: { groupId: x.g, content: x.content } }, x.by.token)),
    );
    expect(s.services.messages.batchedSends).toBeGreaterThan(before);
    // Sends that mention someone went in batches (the mention CTEs in the batch's statement), beside plain ones.
    const batched = batches.mock.calls.map(([, items, , mentions]) => ({ items, mentions }));
    batches.mockRestore();
    expect(batched.some((c) => c.mentions && c.items.some((x) => x.mentions?.names.length))).toBe(true);
    // Every answer names whom its text mentions.
    answers.forEach((r, i) => expect(r.data.sendMessage.mentions.map((u: any) => u.id).sort()).toEqual([...sends[i].mentions].sort()));

    const url = s.env.DATABASE_URL!;
    const ROW = 'query($g: ID!) { conversation(conversation: { groupId: $g }) { unreadMentionCount } }';
    for (const g of groups) {
      // In stored order: each member's unread mentions are those after their own last message.
      const stored = await sql(url, 'select id, sender_id from messages where conversation_key = $1 order by pos', [`g:${g}`]);
      const mentioned = await sql(url, 'select message_id, user_id from message_mentions where conversation_key = $1', [`g:${g}`]);
      for (const u of users) {
        const last = stored.map((m) => m.sender_id).lastIndexOf(u.id);
        const after = new Set(stored.slice(last + 1).map((m) => m.id));
        const unread = mentioned.filter((m) => m.user_id === u.id && after.has(m.message_id)).length;
        expect((await ok(gql(s.url, ROW, { g }, u.token))).conversation.unreadMentionCount).toBe(unread);
      }
    }
    // Everyone's mentions list holds each mention once.
    for (const u of users) {
      const total = sends.filter((x) => x.mentions.includes(u.id)).length;
      expect((await ok(gql(s.url, '{ mentions(first: 100) { totalCount } }', {}, u.token))).mentions.totalCount).toBe(total);
    }
  });
});

describe('a conversation waiting on a row lock', () => {
  it('should hold up only the sends that were in its lane: sends to other groups go on meanwhile', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const stuck = await groupWith(s.url, ada, 'Locked', [bo]);
    const others = [];
    for (let i = 0; i < 6; i++) others.push(await groupWith(s.url, ada, `Free ${i}`, [bo]));
    await sendMessage(s.url, ada.token, { groupId: stuck, content: 'before' });
    // Another transaction holds the group's head, as a deletion in progress would.
    const other = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('select 1 from conversation_heads where conversation_key = $1 for update', [`g:${stuck}`]);
      let answered = false;
      const waiting = sendMessage(s.url, ada.token, { groupId: stuck, content: 'waits' }).then((m) => ((answered = true), m));
      // Past LANE_STUCK_MS: the lane is stuck, and the other groups' sends take another.
      await sleep(300);
      const sent = await Promise.race([
        Promise.all(others.map((g, i) => sendMessage(s.url, bo.token, { groupId: g, content: `free ${i}` }))),
        sleep(3000).then(() => 'held up' as const),
      ]);
      expect(sent === 'held up' ? sent : sent.map((m) => m.content)).toEqual(others.map((_, i) => `free ${i}`));
      expect(answered).toBe(false);
      await other.query('commit');
      expect((await waiting).content).toBe('waits');
    } finally {
      await other.end();
    }
  });
});

describe('deadlock victims', () => {
  it('should be run again and succeed, stored once, when PostgreSQL aborts it for a deadlock', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ada, 'Deadlock', [bo]);
    const key = `g:${g}`;
    await sendMessage(s.url, ada.token, { groupId: g, content: 'first' });
    // Another transaction takes Bo's row (a send writes every member's sort key in a small group)...
    const other = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await other.connect();
    try {
      await checkDeadlocksLast(other);
      await other.query('begin');
      await other.query('update conversation_members set read_at = read_at where conversation_key = $1 and user_id = $2', [key, bo.id]);
      // ...Ada's send takes the head, then waits for Bo's row...
      const sending = gql(s.url, SEND, { i: { groupId: g, content: 'second' } }, ada.token);
      await waitedOnBy(other);
      await sleep(50);
      // ...and the other transaction now waits for the head: a cycle. The send's deadlock check
      // (deadlock_timeout, 1 s) runs first, finds the cycle and PostgreSQL aborts it.
      const locking = other.query('update conversation_heads set seq = seq where conversation_key = $1', [key]);
      await locking;
      await other.query('commit');
      const answer = await sending;
      expect(answer.errors).toBeUndefined();
      expect(answer.data.sendMessage.content).toBe('second');
    } finally {
      await other.end();
    }
    const { rows, head } = await stored(s.env.DATABASE_URL!, key);
    expect(rows.map((r) => Number(r.seq))).toEqual([1, 2]);
    expect(head.seq).toBe('2');
  });
});

describe('a transaction chosen as a deadlock victim', () => {
  it('should run a leave again, and leave once, when PostgreSQL aborts it for a deadlock', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, ada, 'Leaving', [bo]);
    const other = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await other.connect();
    try {
      await checkDeadlocksLast(other);
      await other.query('begin');
      // Bo's conversation row first; the leave takes the group's row, then waits for Bo's...
      await other.query('update conversation_members set read_at = read_at where conversation_key = $1 and user_id = $2', [`g:${g}`, bo.id]);
      const leaving = gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, bo.token);
      await waitedOnBy(other);
      await sleep(50);
      // ...which this transaction now wants: the leave's deadlock check runs first, so it is the victim.
      await other.query('select id from groups where id = $1 for update', [g]);
      await other.query('commit');
      const answer = await leaving;
      expect(answer.errors).toBeUndefined();
      expect(answer.data.leaveGroup).toBe(true);
    } finally {
      await other.end();
    }
    const members = (await ok(gql(s.url, 'query($g: ID!) { group(id: $g) { memberCount } }', { g }, ada.token))).group;
    expect(members.memberCount).toBe(1);
    const [{ n }] = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from conversation_members where conversation_key = $1', [`g:${g}`]);
    expect(n).toBe(1);
  });
});

describeRedis('batched sends through two instances', () => {
  it('should deliver every batched message once, in history order, to a subscriber on the other instance', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [ada, bo, cy] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const g = await groupWith(a.url, ada, 'Fan', [bo, cy]);
    const added = await listen(b, cy, 'subscription { messageAdded { id } }');
    const updated = await listen(b, cy, 'subscription { conversationUpdated { unreadCount lastMessage { id } } }');
    const own = await listen(b, ada, 'subscription { conversationUpdated { unreadCount lastReadMessageId lastMessage { id sender { id } } } }');
    await sendMessage(a.url, ada.token, { groupId: g, content: 'open the line' });
    await added.nth(1);
    await updated.nth(1);
    await own.nth(1);
    const N = 60;
    await Promise.all(Array.from({ length: N }, (_, i) => sendMessage(a.url, (i % 2 ? ada : bo).token, { groupId: g, content: `m${i}` })));
    expect(a.services.messages.batchedSends).toBeGreaterThan(0);
    const history = (await ok(gql(a.url, HISTORY, { g }, cy.token))).history.edges.map((e: any) => e.node.id);
    await added.nth(N + 1);
    expect(added.values.map((v: any) => v.messageAdded.id)).toEqual(history);
    await updated.nth(N + 1);
    // Cy's unread count grows by one with each message, as it would with single sends.
    expect(updated.values.map((v: any) => v.conversationUpdated.unreadCount)).toEqual(Array.from({ length: N + 1 }, (_, i) => i + 1));
    expect(updated.values[N].conversationUpdated.lastMessage.id).toBe(history[N]);
    // Ada's own row after each of her messages: read up to that very message, as a single send leaves it.
    await own.nth(N + 1);
    const mine = own.values.map((v: any) => v.conversationUpdated).filter((r: any) => r.lastMessage.sender.id === ada.id);
    expect(mine).toHaveLength(N / 2 + 1);
    for (const r of mine) expect(r).toMatchObject({ unreadCount: 0, lastReadMessageId: r.lastMessage.id });
  });
});
