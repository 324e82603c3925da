import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { sql } from './helpers/db';
import { createTestServer, type TestServer } from './helpers/server';
import { groupWith, sendMessage, signup, type TestUser } from './helpers/factories';
import { messageRepository } from '../src/modules/message/message.repository';
import { conversationRepository } from '../src/modules/conversation/conversation.repository';

/**
 * recordBatch/insertBatch must leave the database exactly as the same messages sent one after
 * another through recordMessage/insert, and return per message what a single send returns. Both
 * conversations start from the same state with their head's last_at an hour ahead, so that every
 * message of both paths is stamped last_at + 1 ms after the one before (times compare exactly).
 */
const T0 = Date.now() + 3_600_000;

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
