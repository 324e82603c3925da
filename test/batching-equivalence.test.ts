import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { sql } from './helpers/db';
import { createTestServer, type TestServer } from './helpers/server';
import { groupWith, sendMessage, signup, type TestUser } from './helpers/factories';
import { messageRepository } from '../src/modules/message/message.repository';
import { conversationRepository } from '../src/modules/conversation/conversation.repository';
import { threadRepository } from '../src/modules/message/thread.repository';
import { mentionRepository } from '../src/modules/message/mention.repository';

/**
 * recordBatch/insertBatch must leave the database exactly as the same messages sent one after
 * another through recordMessage/insert, and return per message what a single send returns. Both
 * conversations start from the same state with their head's last_at an hour ahead, so that every
 * message of both paths is stamped last_at + 1 ms after the one before (times compare exactly).
 */
const T0 = Date.now() + 3_600_000;

/** A returned row's fields compared as they are (the rest: ids as positions, times as offsets). */
const MESSAGE_FIELDS = ['content', 'attachment_id', 'project_id', 'recipient_id', 'client_message_id', 'edited_at', 'deleted_at', 'version', 'parent_id', 'also_in_conversation', 'reply_count', 'last_reply_at', 'file_name', 'mime_type', 'size', 'sender_username', 'sender_display_name'];

interface Scenario {
  name: string;
  fanout: number;
  senders: number[]; // indices into users
  memberSort: boolean;
  sortAt: number | null; // every member's sort_at before, as an offset from T0 (null: null)
  clearedAt: number | null;
  dropRowOf?: number; // a sender without a conversation_members row (as in a lobby)
  noHead?: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: 'small, repeated senders', fanout: 32, senders: [1, 2, 1, 1, 3], memberSort: true, sortAt: 0, clearedAt: null },
  { name: 'crossing the bound inside the batch', fanout: 3, senders: [1, 2, 1], memberSort: true, sortAt: -5, clearedAt: null },
  { name: 'large, steady', fanout: 3, senders: [1, 2, 2], memberSort: false, sortAt: -7, clearedAt: -100 },
  { name: 'large, keys null', fanout: 3, senders: [2, 1], memberSort: false, sortAt: null, clearedAt: -100 },
  { name: 'shrunk back to small', fanout: 32, senders: [1, 4, 1], memberSort: false, sortAt: null, clearedAt: -100 },
  { name: 'a sender without a member row', fanout: 32, senders: [2, 1, 2], memberSort: true, sortAt: 0, clearedAt: null, dropRowOf: 2 },
  { name: 'a sender without a member row, large', fanout: 3, senders: [2, 1, 2], memberSort: true, sortAt: 0, clearedAt: null, dropRowOf: 2 },
  { name: 'first messages (no head yet), large', fanout: 3, senders: [1, 2, 1], memberSort: false, sortAt: null, clearedAt: null, noHead: true },
];

let s: TestServer;
let users: TestUser[];

beforeEach(async () => {
  s = await createTestServer();
  users = [];
  for (let i = 0; i < 5; i++) users.push(await signup(s.url));
});

async function prepare(sc: Scenario, name: string): Promise<string> {
  const g = await groupWith(s.url, users[0], name, users.slice(1));
  const key = `g:${g}`;
  const url = s.env.DATABASE_URL!;
  if (!sc.noHead) {
    await sendMessage(s.url, users[0].token, { groupId: g, content: 'first' });
    await sql(url, 'update messages set created_at = $2 where conversation_key = $1', [key, new Date(T0)]);
    await sql(url, 'update conversation_heads set last_at = $2, activity_at = $2, member_sort = $3, sort_cleared_at = $4 where conversation_key = $1', [
      key,
      new Date(T0),
      sc.memberSort,
      sc.clearedAt === null ? null : new Date(T0 + sc.clearedAt),
    ]);
    await sql(url, 'update conversation_members set last_read_at = case when last_read_message_id is null then null else $2::timestamptz end where conversation_key = $1', [key, new Date(T0)]);
  }
  await sql(url, 'update conversation_members set sort_at = $2, joined_at = $3 where conversation_key = $1', [key, sc.sortAt === null ? null : new Date(T0 + sc.sortAt), new Date(T0 - 10_000)]);
  if (sc.dropRowOf !== undefined) await sql(url, 'delete from conversation_members where conversation_key = $1 and user_id = $2', [key, users[sc.dropRowOf].id]);
  return g;
}

const em = () => s.database.orm.em.fork() as EntityManager;

async function singles(g: string, sc: Scenario) {
  const out = [];
  for (const [i, u] of sc.senders.entries()) {
    const id = randomUUID();
    const key = `g:${g}`;
    out.push(
      await messageRepository.insert(
        em(),
        { id, conversationKey: key, senderId: users[u].id, content: `c${i}`, groupId: g, projectId: null, recipientId: null, clientMessageId: null },
        null,
        conversationRepository.recordMessage({ id, key, kind: 'GROUP', senderId: users[u].id, recipientId: null, privateInProject: false, sortFanout: sc.fanout }),
      ),
    );
  }
  return out;
}

type Item = Parameters<typeof messageRepository.insertBatch>[1][number];

/**
 * The scenarios' messages in one statement, taken from each conversation in turn (their order
 * kept within each); `extra` goes in after the first turn.
 */
async function batch(gs: string[], scs: Scenario[], extra: Item[] = []) {
  const items = scs.map((sc, k) => sc.senders.map((u, i) => ({ id: randomUUID(), conversationKey: `g:${gs[k]}`, groupId: gs[k], projectId: null, senderId: users[u].id, content: `c${i}`, clientMessageId: null })));
  const turns = Math.max(...items.map((x) => x.length));
  const mixed: Item[] = Array.from({ length: turns }, (_, t) => items.flatMap((x) => (t < x.length ? [x[t]] : []))).flat();
  mixed.splice(scs.length, 0, ...extra);
  const rows = await messageRepository.insertBatch(em(), mixed, conversationRepository.recordBatch({ sortFanout: scs[0].fanout }));
  const byId = new Map(rows.map((r) => [r.id, r]));
  // Per conversation, its rows in the order its messages were given.
  return items.map((x) => x.map((m) => byId.get(m.id)));
}

/** Everything stored for the conversation, ids as positions and times as offsets from the first batch message. */
async function state(g: string, returned: any[], exactTimes: boolean) {
  const key = `g:${g}`;
  const url = s.env.DATABASE_URL!;
  const msgs = await sql(url, 'select id, seq, pos, sender_id, content, created_at, recipient_seq, attachment_id from messages where conversation_key = $1 order by pos', [key]);
  const pos = new Map(msgs.map((m) => [m.id, Number(m.pos)]));
  const idOf = (id: string | null) => (id === null ? null : `#${pos.get(id)}`);
  const base = exactTimes ? T0 : new Date(msgs[0].created_at).getTime();
  const t = (d: Date | string | null) => (d === null ? null : exactTimes ? new Date(d).getTime() - base : 'time');
  const uname = (id: string) => `u${users.findIndex((u) => u.id === id)}`;
  const [h] = await sql(url, 'select * from conversation_heads where conversation_key = $1', [key]);
  const members = await sql(url, 'select * from conversation_members where conversation_key = $1 order by user_id', [key]);
  return {
    head: { seq: h.seq, pos: h.pos, last: idOf(h.last_message_id), activity: t(h.activity_at), last_at: t(h.last_at), member_sort: h.member_sort, cleared: t(h.sort_cleared_at) },
    messages: msgs.map((m) => ({ seq: m.seq, pos: m.pos, sender: uname(m.sender_id), content: m.content, at: t(m.created_at), recipient_seq: m.recipient_seq, attachment_id: m.attachment_id })),
    members: members.map((m) => ({
      user: uname(m.user_id),
      read_seq: m.read_seq,
      private_read: m.private_read,
      private_seq: m.private_seq,
      last_read: idOf(m.last_read_message_id),
      last_read_at: t(m.last_read_at),
      read_at_set: m.read_at !== null,
      sort_at: t(m.sort_at),
    })),
    returned: returned.map((r) => ({
      id: idOf(r.id),
      pos: r.pos,
      created_at: t(r.created_at),
      // The message as history reads it (a batch fills in what its items say and what a new message holds).
      message: {
        ...Object.fromEntries(MESSAGE_FIELDS.map((f) => [f, r[f]])),
        conversation_key: r.conversation_key === key,
        group_id: r.group_id === g,
        sender_id: uname(r.sender_id),
        sender_created_at: t(r.sender_created_at),
      },
      head: [String(r.head_seq), idOf(r.head_message_id), t(r.head_at)],
      sender: r.sender_state && {
        ...r.sender_state,
        user_id: uname(r.sender_state.user_id),
        last_read_message_id: idOf(r.sender_state.last_read_message_id),
        last_read_at: t(r.sender_state.last_read_at),
        joined_at: t(r.sender_state.joined_at),
      },
      recipient: r.recipient_state,
    })),
  };
}

describe('a batch of sends against the same sends one by one', () => {
  for (const sc of SCENARIOS) {
    it(`should store and answer alike: ${sc.name}`, async () => {
      const a = await prepare(sc, `${sc.name} single`);
      const b = await prepare(sc, `${sc.name} batch`);
      const one = await singles(a, sc);
      const [many] = await batch([b], [sc]);
      const exact = !sc.noHead;
      expect(await state(b, many, exact)).toEqual(await state(a, one, exact));
    });
  }

  // A send the gate refuses is left out of the batch, and the rest of its conversation is numbered without it.
  it("should leave out a non-member's message and a slow-mode group's plain members", async () => {
    const sc = SCENARIOS[0];
    const outsider = await signup(s.url);
    const a = await prepare(sc, 'gated single');
    const b = await prepare(sc, 'gated batch');
    const slow = await prepare(sc, 'gated slow');
    await sql(s.env.DATABASE_URL!, 'update groups set slow_mode_seconds = 60 where id = $1', [slow]);
    const headBefore = await sql(s.env.DATABASE_URL!, 'select * from conversation_heads where conversation_key = $1', [`g:${slow}`]);
    const item = (g: string, senderId: string, content: string) => ({ id: randomUUID(), conversationKey: `g:${g}`, groupId: g, projectId: null, senderId, content, clientMessageId: null });
    const refused = [item(b, outsider.id, 'not a member'), item(slow, users[1].id, 'slow 1'), item(slow, users[2].id, 'slow 2')];
    const one = await singles(a, sc);
    const [many] = await batch([b], [sc], refused);
    expect(many.every(Boolean)).toBe(true);
    expect(await state(b, many, true)).toEqual(await state(a, one, true));
    const url = s.env.DATABASE_URL!;
    expect(await sql(url, 'select id from messages where id = any($1::uuid[])', [refused.map((r) => r.id)])).toEqual([]);
    expect(await sql(url, 'select * from conversation_heads where conversation_key = $1', [`g:${slow}`])).toEqual(headBefore);
  });

  // A lane's batch holds several conversations: each must end as if its messages came alone.
  for (const fanout of [32, 3]) {
    it(`should store and answer alike with several conversations in one statement (bound ${fanout})`, async () => {
      const scs = SCENARIOS.filter((sc) => sc.fanout === fanout);
      expect(scs.length).toBeGreaterThan(2);
      const single: string[] = [];
      const batched: string[] = [];
      for (const sc of scs) {
        single.push(await prepare(sc, `${sc.name} single`));
        batched.push(await prepare(sc, `${sc.name} batch`));
      }
      const many = await batch(batched, scs);
      for (const [k, sc] of scs.entries()) {
        const one = await singles(single[k], sc);
        const exact = !sc.noHead;
        expect(await state(batched[k], many[k], exact)).toEqual(await state(single[k], one, exact));
      }
    });
  }
});

/**
 * insertReplyBatch must leave each conversation as the same reply sent alone through insertReply
 * (gated, as a group's reply is), and answer what it answers; the replies it can't take (a second
 * one in a conversation, a non-member's, a plain member's in slow mode, one to a deleted message)
 * come back without rows and write nothing. Times as above: heads an hour ahead.
 */
describe('a batch of replies against the same replies one by one', () => {
  interface Thread {
    name: string;
    sender: number;
    /** Replies before the measured one: senders, in order. */
    before: number[];
    /** The measured reply answers the last earlier reply (it attaches to the root). */
    toReply?: boolean;
    /** Whom the measured reply mentions by name (indices). */
    mentions?: number[];
  }
  const THREADS: Thread[] = [
    { name: 'first reply', sender: 2, before: [] },
    { name: 'the root author replies', sender: 1, before: [3] },
    { name: 'to a reply', sender: 4, before: [2, 3], toReply: true, mentions: [1, 0] },
    { name: 'a follower again', sender: 3, before: [3, 2], mentions: [2] },
  ];
  const url = () => s.env.DATABASE_URL!;

  /** A group whose root (by users[1]) has `t.before` replies; everything stamped relative to T0. */
  async function thread(t: Thread, name: string): Promise<{ g: string; root: string; parent: string }> {
    const g = await groupWith(s.url, users[0], name, users.slice(1));
    const root = (await sendMessage(s.url, users[1].token, { groupId: g, content: 'root' })).id;
    let parent = root;
    for (const u of t.before) parent = (await sendMessage(s.url, users[u].token, { groupId: g, content: 'earlier', parentId: root })).id;
    const key = `g:${g}`;
    // Each message a second apart before T0, in the order sent; the followers as they came.
    await sql(url(), `update messages m set created_at = $2::timestamptz - (x.n * interval '1 second') from (select id, row_number() over (order by pos desc) as n from messages where conversation_key = $1) x where x.id = m.id`, [key, new Date(T0)]);
    await sql(url(), `update messages r set last_reply_at = (select max(created_at) from messages c where c.parent_id = r.id) where r.conversation_key = $1 and r.reply_count > 0`, [key]);
    await sql(url(), `update thread_members t set joined_at = $1::timestamptz - interval '1 hour' + (select count(*) from users u where u.id < t.user_id) * interval '1 second', read_at = case when read_at is null then null else $1::timestamptz end where root_id = $2`, [new Date(T0), root]);
    await sql(url(), 'update conversation_heads set last_at = $2, activity_at = $2 where conversation_key = $1', [key, new Date(T0)]);
    return { g, root, parent: t.toReply ? parent : root };
  }

  const item = (x: { g: string; parent: string }, sender: number, content: string, mentions?: number[]) => ({
    id: randomUUID(),
    conversationKey: `g:${x.g}`,
    groupId: x.g,
    projectId: null,
    senderId: users[sender].id,
    content,
    clientMessageId: null,
    parentId: x.parent,
    mentions: mentions ? { names: mentions.map((i) => users[i].username.toLowerCase()), ids: [] } : null,
  });

  /** What the conversation holds and the reply returned, ids as names and times as offsets from T0. */
  async function replyState(x: { g: string; root: string }, returned: any, replyId: string) {
    const key = `g:${x.g}`;
    const name = (id: string | null) => (id === null ? null : id === x.root ? 'root' : id === replyId ? 'reply' : users.findIndex((u) => u.id === id) >= 0 ? `u${users.findIndex((u) => u.id === id)}` : 'earlier');
    const t = (d: Date | string | null) => (d === null ? null : new Date(d).getTime() - T0);
    const [h] = await sql(url(), 'select seq, pos, last_at, activity_at, last_message_id from conversation_heads where conversation_key = $1', [key]);
    const msgs = await sql(url(), 'select id, seq, pos, sender_id, content, created_at, parent_id, reply_count, last_reply_at, version from messages where conversation_key = $1 order by pos', [key]);
    const followers = await sql(url(), 'select user_id, joined_at, replied, read_at from thread_members where root_id = $1 order by user_id', [x.root]);
    const mentions = await sql(url(), 'select message_id, user_id, in_timeline from message_mentions where conversation_key = $1 order by user_id', [key]);
    return {
      head: { seq: h.seq, pos: h.pos, last_at: t(h.last_at), activity: t(h.activity_at), last: name(h.last_message_id) },
      messages: msgs.map((m) => ({ id: name(m.id), seq: m.seq, pos: m.pos, sender: name(m.sender_id), content: m.content, at: t(m.created_at), parent: name(m.parent_id), replies: m.reply_count, last_reply: t(m.last_reply_at), version: m.version })),
      followers: followers.map((f) => ({ user: name(f.user_id), joined: t(f.joined_at), replied: f.replied, read: t(f.read_at) })),
      mentions: mentions.map((m) => ({ message: name(m.message_id), user: name(m.user_id), in_timeline: m.in_timeline })),
      returned: {
        id: name(returned.id),
        pos: returned.pos,
        at: t(returned.created_at),
        parent: name(returned.parent_id),
        root: { id: name(returned.root.id), replies: returned.root.reply_count, last_reply: t(returned.root.last_reply_at), version: returned.root.version, reactions: returned.root.reaction_list },
        before: returned.participants_before.map((p: any) => ({ user: name(p.id), joined: t(p.joined_at) })),
        owner: name(returned.gate_owner_id),
        mentioned: (returned.mentioned ?? []).map((u: any) => name(u.id)),
        counts: returned.mention_counts ?? null,
        group: typeof returned.gate_group_name,
      },
    };
  }

  it('should store and answer alike, and leave out what a check refuses', async () => {
    const single: { g: string; root: string; parent: string }[] = [];
    const batched: typeof single = [];
    for (const t of THREADS) {
      single.push(await thread(t, `${t.name} single`));
      batched.push(await thread(t, `${t.name} batch`));
    }
    const ones = [];
    for (const [k, t] of THREADS.entries()) {
      const r = item(single[k], t.sender, `reply ${k}`, t.mentions);
      ones.push({ id: r.id, row: await threadRepository.insertReply(em(), { ...r, recipientId: null }, null, { groupId: r.groupId, slow: false }, r.mentions) });
    }
    // Refused: a second reply in a conversation, a non-member's, a plain member's in slow mode, one to a deleted message.
    const outsider = await signup(s.url);
    const slow = await thread(THREADS[0], 'slow batch');
    await sql(url(), 'update groups set slow_mode_seconds = 60 where id = $1', [slow.g]);
    const deleted = await thread(THREADS[0], 'deleted batch');
    await sql(url(), 'update messages set deleted_at = now(), content = null where id = $1', [deleted.root]);
    const items = THREADS.map((t, k) => item(batched[k], t.sender, `reply ${k}`, t.mentions));
    const refused = [item(batched[0], 3, 'second'), { ...item(batched[1], 2, 'outsider'), senderId: outsider.id }, item(slow, 2, 'slow'), item(deleted, 2, 'deleted')];
    const heads = await sql(url(), 'select * from conversation_heads where conversation_key = any($1::text[]) order by conversation_key', [[`g:${slow.g}`, `g:${deleted.g}`]]);
    const rows = await threadRepository.insertReplyBatch(em(), [items[0], refused[0], items[1], refused[1], refused[2], items[2], refused[3], items[3]]);
    expect(rows.map((r) => r.id).sort()).toEqual(items.map((i) => i.id).sort());
    // The replies that mention someone name them, and those become followers (not repliers).
    expect(rows.find((r) => r.id === items[2].id)!.mentioned!.map((u) => u.id).sort()).toEqual([users[0].id, users[1].id].sort());
    for (const [k] of THREADS.entries()) {
      const mine = rows.find((r) => r.id === items[k].id)!;
      expect(mine.gate_group_name).toBe(`${THREADS[k].name} batch`);
      expect(await replyState(batched[k], mine, items[k].id)).toEqual(await replyState(single[k], ones[k].row, ones[k].id));
    }
    expect(await sql(url(), 'select id from messages where id = any($1::uuid[])', [refused.map((r) => r.id)])).toEqual([]);
    expect(await sql(url(), 'select * from conversation_heads where conversation_key = any($1::text[]) order by conversation_key', [[`g:${slow.g}`, `g:${deleted.g}`]])).toEqual(heads);
  });
});

/**
 * Sends that mention someone, batched (insertBatch with mentionRepository.onSend('batch')), must
 * store the same mentions and answer the same lists and badges as the same sends one by one. The
 * badges are the subtle part: a member's marker moves when they send, so mentions before their own
 * message in the batch are read; one blocking the sender is mentioned but not counted; a member without a row
 * counts 1.
 */
describe('a batch of sends with mentions against the same sends one by one', () => {
  const url = () => s.env.DATABASE_URL!;
  /** [sender, mentioned users (indices; 9 an unknown name), mentioned ids (indices)]; null: no '@' in it. */
  const SENDS: [number, number[], number[] | null][] = [
    [1, [2], []],
    [2, [], null],
    [1, [2, 3, 9], []],
    [3, [2, 4], []],
    [4, [4, 1], [3]],
    [1, [2, 3], []],
  ];

  async function prepared(name: string): Promise<string> {
    const g = await groupWith(s.url, users[0], name, users.slice(1));
    const key = `g:${g}`;
    // Unread mentions of users[3] before (two), and users[4] has no member row (as in a lobby).
    await sendMessage(s.url, users[0].token, { groupId: g, content: `@${users[3].username} first` });
    await sendMessage(s.url, users[0].token, { groupId: g, content: `@${users[3].username} second` });
    await sql(url(), 'update messages set created_at = created_at - interval \'1 hour\' where conversation_key = $1', [key]);
    await sql(url(), 'update message_mentions set created_at = created_at - interval \'1 hour\' where conversation_key = $1', [key]);
    await sql(url(), 'update conversation_heads set last_at = $2, activity_at = $2 where conversation_key = $1', [key, new Date(T0)]);
    await sql(url(), 'update conversation_members set joined_at = $2, last_read_at = null where conversation_key = $1', [key, new Date(T0 - 10_000)]);
    await sql(url(), 'delete from conversation_members where conversation_key = $1 and user_id = $2', [key, users[4].id]);
    return g;
  }

  const targets = ([, names, ids]: [number, number[], number[] | null]) =>
    ids && { names: names.map((i) => (i === 9 ? 'nobody_here' : users[i].username.toLowerCase())), ids: ids.map((i) => users[i].id) };

  async function state(g: string, returned: any[]) {
    const key = `g:${g}`;
    const msgs = await sql(url(), 'select id, pos, seq, created_at from messages where conversation_key = $1 order by pos', [key]);
    const pos = new Map(msgs.map((m) => [m.id, Number(m.pos)]));
    const u = (id: string) => `u${users.findIndex((x) => x.id === id)}`;
    const t = (d: Date | string) => new Date(d).getTime() - T0;
    const mentions = await sql(url(), 'select message_id, user_id, seq, in_timeline, created_at from message_mentions where conversation_key = $1 order by seq, user_id', [key]);
    const [h] = await sql(url(), 'select seq, pos, last_at from conversation_heads where conversation_key = $1', [key]);
    const members = await sql(url(), 'select user_id, read_seq, sort_at from conversation_members where conversation_key = $1 order by user_id', [key]);
    return {
      head: { seq: h.seq, pos: h.pos, last_at: t(h.last_at) },
      members: members.map((m) => ({ user: u(m.user_id), read_seq: m.read_seq, sort_at: t(m.sort_at) })),
      mentions: mentions.map((m) => ({ message: pos.get(m.message_id), user: u(m.user_id), seq: m.seq, in_timeline: m.in_timeline, at: m.created_at < new Date(T0 - 60_000) ? 'before' : t(m.created_at) })),
      returned: returned.map((r) => ({
        pos: r.pos,
        mentioned: (r.mentioned ?? []).map((x: any) => u(x.id)),
        counts: Object.fromEntries(Object.entries(r.mention_counts ?? {}).map(([id, n]) => [u(id), n])),
      })),
    };
  }

  it('should store the same mentions and answer the same lists and badges', async () => {
    const a = await prepared('mentions single');
    const b = await prepared('mentions batch');
    // users[2] blocks users[3]: @u2 by u3 is stored (its mentions tell u3 nothing of the block) and counted in no badge of u2's.
    await sql(url(), 'insert into user_blocks (blocker_id, blocked_id, created_at) values ($1, $2, now())', [users[2].id, users[3].id]);
    const one = [];
    for (const [i, send] of SENDS.entries()) {
      const id = randomUUID();
      const record = conversationRepository.recordMessage({ id, key: `g:${a}`, kind: 'GROUP', senderId: users[send[0]].id, recipientId: null, privateInProject: false, sortFanout: 32 });
      const t = targets(send);
      if (t) {
        const mentions = mentionRepository.onSend(t, true);
        record.after = { text: `${record.after.text}, ${mentions.ctes.text}`, params: [...record.after.params, ...mentions.ctes.params] };
        record.states = { text: `${record.states.text}, ${mentions.columns}`, params: record.states.params };
      }
      one.push(await messageRepository.insert(em(), { id, conversationKey: `g:${a}`, senderId: users[send[0]].id, content: `m${i}`, groupId: a, projectId: null, recipientId: null, clientMessageId: null }, null, record));
    }
    const items = SENDS.map((send, i) => ({ id: randomUUID(), conversationKey: `g:${b}`, groupId: b, projectId: null, senderId: users[send[0]].id, content: `m${i}`, clientMessageId: null, mentions: targets(send) }));
    const rows = await messageRepository.insertBatch(em(), items, conversationRepository.recordBatch({ sortFanout: 32 }), mentionRepository.onSend('batch', true));
    const byId = new Map(rows.map((r) => [r.id, r]));
    const many = items.map((x) => byId.get(x.id));
    const expected = await state(a, one);
    // What the badges are (so that both paths agreeing on nothing would not pass): u3 had two unread
    // before; u3's own send (the fourth) reads theirs, u2 blocks u3: the fourth's badge for u2 and the sixth's leave u3's mention out.
    // Each count comes with the read position it was counted from ([n, readSeq]); both paths must agree on those too.
    const badges = expected.returned.map((r) => Object.fromEntries(Object.entries(r.counts).map(([k, v]) => [k, (v as [number, number])[0]])));
    expect(badges).toEqual([{ u2: 1 }, {}, { u2: 1, u3: 3 }, { u2: 1, u4: 1 }, { u1: 1, u3: 1 }, { u2: 2, u3: 2 }]);
    expect(await state(b, many)).toEqual(expected);
  });
});
