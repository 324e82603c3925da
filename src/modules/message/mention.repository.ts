import type { EntityManager } from '@mikro-orm/postgresql';
import { limitLiteral, pgArray, pgTextArray, type Sql } from '../../shared/sql';
import { SELECT, type MessageRow } from './message.repository';
import { blockedBy, blocksAnyone } from '../safety/block.repository';

/** The users a send or an edit resolved: named (lower-cased usernames) or by id (@here, @all). */
export interface MentionTargets {
  names: string[];
  ids: string[];
}

/** A mentioned user as a send statement returns them (row_to_json: ISO dates). */
export interface MentionedColumns {
  id: string;
  username: string;
  display_name: string | null;
  created_at: string;
}

/**
 * Members of the message `m`'s conversation among `targets`, never its sender: a group's or
 * project's members, a direct conversation's other user. Unknown names match no one (they stay
 * text). A user who blocks the sender is stored as any other, so that the message's mentions tell
 * the sender nothing of the block; what reads mentions for that user leaves it out (NOT_BLOCKED,
 * LISTED, the badge counted at send, the thread's followers, the webhooks' block test).
 */
// The lists are subqueries' values, hidden from the planner as history's key is (see messageRepository.page):
// seen, a one-name list made every custom plan look cheaper than the generic one, and PostgreSQL planned
// the send statement on every call (0.9-2 ms of binding against 0.7 ms of executing a mention send).
// In a batch (see insertBatch), each message's lists are its row's in `b`, array literals as text.
// `offset 0` keeps each membership test a probe of one row: a batch's generic plan assumes 10
// messages, and PostgreSQL hashed all of group_members instead (11,040 rows read a statement in
// bench:http, 10 ms; a mention send's PostgreSQL time doubled).
const candidates = (targets: MentionTargets | 'batch'): Sql => {
  const [names, ids] = targets === 'batch' ? ['b.mention_names::text[]', 'b.mention_ids::uuid[]'] : ['(select ?::text[])::text[]', '(select ?::uuid[])::uuid[]'];
  return {
    text: `(select u.id from users u where lower(u.username) = any(${names}) and u.deleted_at is null
          union select u.id from users u where u.id = any(${ids}) and u.deleted_at is null) c
        where c.id <> m.sender_id and (c.id = m.recipient_id
          or exists (select 1 from group_members gm where gm.group_id = m.group_id and gm.user_id = c.id offset 0)
          or exists (select 1 from project_members pm where pm.project_id = m.project_id and pm.user_id = c.id offset 0))`,
    params: targets === 'batch' ? [] : [pgTextArray(targets.names), pgArray(targets.ids)],
  };
};

/**
 * Unread mentions are counted up to this many (a badge shows "99+" beyond): the count is read at
 * each send that mentions someone, and must not grow with a member who never reads.
 */
export const MAX_UNREAD = 100;

/**
 * The most users `Message.mentions` lists (the first by username). An `@all` or `@here` mentions
 * every member it names, each counted and notified, but a list of thousands in every page of
 * history and every event's payload (an outside probe: 4,138 users in a page of 100) showed no
 * one anything: a client tells its own mention by `unreadMentionCount` and the `mentions` query.
 */
export const MENTIONS_SHOWN = 50;

/** The users message `message` mentions as `Message.mentions` lists them (the first MENTIONS_SHOWN, by username), as JSON. */
export const mentionedOf = (message: string): string => `(select coalesce(json_agg(json_build_object('id', mu.id, 'username', mu.username, 'display_name', mu.display_name,
    'created_at', mu.created_at) order by lower(mu.username)), '[]'::json)
  from (select x.user_id from message_mentions x join users xu on xu.id = x.user_id where x.message_id = ${message} order by lower(xu.username) limit ${MENTIONS_SHOWN}) k
  join users mu on mu.id = k.user_id)`;

/**
 * A mention (`x`) not made by a user its user blocks (one made before the block included): the
 * block hides it from their lists and badges, though the row stays (an unblock shows it again).
 * `user` is x.user_id as the enclosing query names it.
 */
// The message is looked up only for a user who blocks someone (most block no one): an unread count
// reads up to MAX_UNREAD mentions, and looking up each one's message was most of a mention send's cost.
// Asked of `user`, not x.user_id, whether they block anyone is one probe per count (an InitPlan),
// not one per mention counted: 0.28 ms against 0.07 for a count of 100 (EXPLAIN ANALYZE, warm).
const NOT_BLOCKED = (user: string) => `(not ${blocksAnyone(user)}
  or not exists (select 1 from messages s where s.id = x.message_id and ${blockedBy('x.user_id', 's.sender_id')}))`;

/** The unread timeline mentions of a member's row `cm` (at most MAX_UNREAD). */
const UNREAD_OF_ROW = `(select count(*)::int from (select 1 from message_mentions x where x.user_id = cm.user_id and x.conversation_key = cm.conversation_key
  and x.in_timeline and x.seq > cm.read_seq and ${NOT_BLOCKED('cm.user_id')} limit ${MAX_UNREAD}) k)`;

/** A mention (`x`) its user is shown: in a conversation they are still in, of a message not deleted, nor sent by a user they block. */
const LISTED = `exists (select 1 from conversation_members cm where cm.conversation_key = x.conversation_key and cm.user_id = x.user_id)
  and exists (select 1 from messages d where d.id = x.message_id and d.deleted_at is null and not ${blockedBy('x.user_id', 'd.sender_id')})`;

/** A span of one conversation's timeline: after position `from`, up to `to` (see unreadBetween). */
export interface BadgeSpan {
  key: string;
  from: number;
  to: number;
}

export const mentionRepository = {
  /** A group's members (for @here and @all). */
  async groupMembers(em: EntityManager, groupId: string): Promise<string[]> {
    const rows: { user_id: string }[] = await em.execute('select user_id from group_members where group_id = ?', [groupId]);
    return rows.map((r) => r.user_id);
  },

  /**
   * CTEs of a send statement (after its message `m`): `mn` the mentions it stores. With `counts`,
   * the column `mention_counts` gives each mentioned member's unread mentions in the conversation
   * after it, with the read position they were counted from ({ userId: [n, readSeq] }): those stored before (the statement can't see its own rows) past their
   * marker, and this statement's up to the message. The same CTEs serve a batch of messages
   * (`targets` 'batch', each message's lists in `b`): a member's marker then stands on their own
   * last message before this one in the batch, as single sends would have moved it; a member
   * without a row counts 1, as a single send counts them.
   */
  onSend(targets: MentionTargets | 'batch', inTimeline: boolean): { ctes: Sql; columns: string } {
    const c = candidates(targets);
    // The head's seq before this statement's messages, as the head's upsert found it (after any
    // concurrent send it waited for), against the statement's snapshot of it: they differ when
    // another send committed in between, whose mentions the snapshot's count misses. A count then
    // goes as -1, which receivers read again instead of showing (see mentionCountOf).
    const before = targets === 'batch' ? '(select hk.seq - hk.n from hk where hk.conversation_key = mn.conversation_key)' : '(select h.seq - 1 from h)';
    const fresh = `coalesce((select ch.seq from conversation_heads ch where ch.conversation_key = mn.conversation_key), 0) = ${before}`;
    const counts = inTimeline
      ? `(select json_object_agg(mc.user_id, json_build_array(mc.n, mc.read_seq)) from (
           select mn.user_id, r.read_seq, case when not (${fresh}) then -1 when cm.read_seq is null then 1 else least(${MAX_UNREAD}, (select count(*) from (select 1 from message_mentions x
               where x.user_id = mn.user_id and x.conversation_key = mn.conversation_key and x.in_timeline and ${NOT_BLOCKED('mn.user_id')} and x.seq > r.read_seq limit ${MAX_UNREAD}) k)
             + (select count(*) from mn e join m o on o.id = e.message_id where e.user_id = mn.user_id and e.conversation_key = mn.conversation_key and e.seq > r.read_seq and e.seq <= mn.seq
                 and not ${blockedBy('e.user_id', 'o.sender_id')})) end as n
           from mn left join conversation_members cm on cm.conversation_key = mn.conversation_key and cm.user_id = mn.user_id
           cross join lateral (select greatest(cm.read_seq, (select max(o.seq) from m o where o.conversation_key = mn.conversation_key and o.sender_id = mn.user_id and o.seq < mn.seq)) as read_seq) r
           where mn.message_id = m.id) mc)`
      : 'null::json';
    return {
      ctes: {
        text: `mn as (
          insert into message_mentions (message_id, user_id, conversation_key, seq, in_timeline, created_at)
          select m.id, c.id, m.conversation_key, m.seq, ${inTimeline ? 'true' : 'false'}, m.created_at from m ${targets === 'batch' ? 'join b on b.id = m.id ' : ''}cross join lateral ${c.text}
          returning message_id, user_id, conversation_key, seq)`,
        params: c.params,
      },
      columns: `(select coalesce(json_agg(json_build_object('id', s.id, 'username', s.username, 'display_name', s.display_name, 'created_at', s.created_at) order by s.name), '[]'::json)
          from (select u.id, u.username, u.display_name, u.created_at, lower(u.username) as name from mn join users u on u.id = mn.user_id where mn.message_id = m.id
            order by lower(u.username) limit ${MENTIONS_SHOWN}) s) as mentioned, ${counts} as mention_counts`,
    };
  },

  /**
   * An edit: the mentions become what the new text resolves to (members only, as at send time).
   * Returns the users newly mentioned (a mention kept is not new: never told twice) and those no longer.
   */
  async replace(em: EntityManager, messageId: string, targets: MentionTargets): Promise<{ added: string[]; removed: string[] }> {
    const c = candidates(targets);
    // A reply's new mentions follow its thread, as the reply's send makes those it mentions (see threadAfter).
    const rows: { user_id: string; added: boolean }[] = await em.execute(
      `with m as (select * from messages where id = ?), k as (select c.id from m cross join ${c.text}),
       d as (delete from message_mentions x where x.message_id = ? and x.user_id not in (select id from k) returning x.user_id),
       n as (
         insert into message_mentions (message_id, user_id, conversation_key, seq, in_timeline, created_at)
         select m.id, k.id, m.conversation_key, m.seq, m.parent_id is null or m.also_in_conversation, clock_timestamp() from m cross join k
         on conflict (message_id, user_id) do nothing returning user_id
       ), f as (
         insert into thread_members (root_id, user_id, conversation_key, joined_at, replied, read_at)
         select m.parent_id, n.user_id, m.conversation_key, m.created_at, false, null from m cross join n where m.parent_id is not null and not ${blockedBy('n.user_id', 'm.sender_id')}
         on conflict (root_id, user_id) do nothing
       )
       select user_id, true as added from n union all select user_id, false from d`,
      [messageId, ...c.params, messageId],
    );
    return { added: rows.filter((r) => r.added).map((r) => r.user_id), removed: rows.filter((r) => !r.added).map((r) => r.user_id) };
  },

  /** The users a message mentions whose names are not among `names` (lower-case): those its `@here` or `@all` reached. */
  async notNamed(em: EntityManager, messageId: string, names: readonly string[]): Promise<string[]> {
    const rows: { user_id: string }[] = await em.execute(
      'select x.user_id from message_mentions x join users u on u.id = x.user_id where x.message_id = ? and lower(u.username) <> all(?::text[])',
      [messageId, pgTextArray(names)],
    );
    return rows.map((r) => r.user_id);
  },

  /** The users each message mentions (ids), in username order: the first MENTIONS_SHOWN. */
  async ofMessages(em: EntityManager, ids: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!ids.length) return out;
    const rows: { message_id: string; user_id: string }[] = await em.execute(
      `select k.message_id, k.user_id from unnest(?::uuid[]) with ordinality i(id, n) cross join lateral (
         select x.message_id, x.user_id, lower(u.username) as name from message_mentions x join users u on u.id = x.user_id where x.message_id = i.id
         order by lower(u.username) limit ${MENTIONS_SHOWN}) k order by i.n, k.name`,
      [pgArray(ids)],
    );
    for (const r of rows) {
      const list = out.get(r.message_id);
      if (list) list.push(r.user_id);
      else out.set(r.message_id, [r.user_id]);
    }
    return out;
  },

  /**
   * A member's unread timeline mentions in each span of a conversation (after `from`, up to `to`;
   * at most MAX_UNREAD), in the spans' order: the badge of a row as of the marker and newest message
   * the row shows. Counted to the database's newest instead, a row behind it showed more mentions
   * than unread messages (a markRead's answer 0 unread and 3 mentions; a live row the same, and the
   * next row fewer: outside probes, one and three instances).
   */
  async unreadBetween(em: EntityManager, userId: string, spans: readonly BadgeSpan[]): Promise<number[]> {
    if (!spans.length) return [];
    const rows: { n: number }[] = await em.execute(
      `select (select count(*)::int from (select 1 from message_mentions x where x.user_id = ? and x.conversation_key = i.key
         and x.in_timeline and x.seq > i.after and x.seq <= i.upto and ${NOT_BLOCKED('?::uuid')} limit ${MAX_UNREAD}) k) as n
       from unnest(?::text[], ?::bigint[], ?::bigint[]) with ordinality i(key, after, upto, o) order by i.o`,
      [userId, userId, pgTextArray(spans.map((s) => s.key)), pgArray(spans.map((s) => String(s.from))), pgArray(spans.map((s) => String(s.to)))],
    );
    return rows.map((r) => r.n);
  },

  /** Unread timeline mentions of `userId` per conversation key (past their read marker), at most MAX_UNREAD. */
  async unreadCounts(em: EntityManager, userId: string, keys: readonly string[]): Promise<Map<string, number>> {
    if (!keys.length) return new Map();
    const rows: { conversation_key: string; n: number }[] = await em.execute(
      `select cm.conversation_key, ${UNREAD_OF_ROW} as n from conversation_members cm where cm.user_id = ? and cm.conversation_key = any(?::text[])`,
      [userId, pgTextArray(keys)],
    );
    return new Map(rows.map((r) => [r.conversation_key, r.n]));
  },

  /**
   * A page of the messages that mention `userId`, newest first, by keyset on (mentioned at,
   * message id; `backward` reads from the oldest end), in conversations they are still a member
   * of; a private project message never (none is resolved), a deleted one never, one sent by a
   * user they block never.
   */
  async page(em: EntityManager, userId: string, opts: { from: { at: Date; id: string } | null; backward: boolean; limit: number }): Promise<(MessageRow & { mentioned_at: Date })[]> {
    const dir = opts.backward ? 'asc' : 'desc';
    const rows: (MessageRow & { mentioned_at: Date })[] = await em.execute(
      `select k.mentioned_at, r.* from (
         select x.message_id, x.created_at as mentioned_at from message_mentions x
          where x.user_id = ? ${opts.from ? `and (x.created_at, x.message_id) ${opts.backward ? '>' : '<'} (?, ?)` : ''} and ${LISTED}
          order by x.created_at ${dir}, x.message_id ${dir} limit ${limitLiteral(opts.limit + 1)}
       ) k cross join lateral (${SELECT} where m.id = k.message_id) r
       order by k.mentioned_at ${dir}, k.message_id ${dir}`,
      [userId, ...(opts.from ? [opts.from.at, opts.from.id] : [])],
    );
    return rows.slice(0, opts.limit + 1);
  },

  async count(em: EntityManager, userId: string): Promise<number> {
    const [row] = await em.execute(`select count(*)::int as n from message_mentions x where x.user_id = ? and ${LISTED}`, [userId]);
    return row.n;
  },
};
