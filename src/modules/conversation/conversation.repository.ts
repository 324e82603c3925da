import type { EntityManager } from '@mikro-orm/postgresql';
import { SELECT as MESSAGE, type MessageRow } from '../message/message.repository';

export type ConversationKindValue = 'GROUP' | 'DIRECT' | 'PROJECT';

/** One member's row as the sidebar reads it, with the conversation's title for that member. */
export interface ConversationRow {
  conversation_key: string;
  user_id: string;
  kind: ConversationKindValue;
  group_id: string | null;
  project_id: string | null;
  peer_id: string | null;
  joined_at: Date;
  activity_at: Date;
  last_message_id: string | null;
  unread_count: number;
  last_read_message_id: string | null;
  last_read_at: Date | null;
  read_at: Date | null;
  title: string | null;
  /** Read with the row where asked (a page, one row), so the sidebar costs no further query. */
  last_message?: MessageRow | null;
}

/** A member's state right after a change (what conversationUpdated carries for them). */
export interface MemberState {
  user_id: string;
  unread_count: number;
  last_read_message_id: string | null;
  activity_at: Date;
  last_message_id: string | null;
}

const ROW = `cm.conversation_key, cm.user_id, cm.kind, cm.group_id, cm.project_id, cm.peer_id, cm.joined_at, cm.activity_at, cm.last_message_id,
  cm.unread_count, cm.last_read_message_id, cm.last_read_at, cm.read_at, coalesce(g.name, p.title, u.display_name, u.username) as title`;
const FROM = `conversation_members cm left join groups g on g.id = cm.group_id left join projects p on p.id = cm.project_id left join users u on u.id = cm.peer_id`;
/** The row's last message, as history reads it. */
const LAST = `left join lateral (${MESSAGE} where m.id = cm.last_message_id) lm on true`;
const STATE = 'user_id, unread_count, last_read_message_id, activity_at, last_message_id';

/** The advisory-lock class of conversations (the second key is the conversation's hash). */
const LOCK_CLASS = 0x70726c79;

export const conversationRepository = {
  /**
   * Serializes writers of one conversation for the rest of the transaction: sends take it
   * exclusively, read markers shared. Messages then commit in created_at order, and a marker
   * and its unread count are computed against a conversation no one is writing to.
   */
  async lock(em: EntityManager, key: string, shared = false): Promise<void> {
    await em.execute(`select ${shared ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock'}(?, hashtext(?))`, [LOCK_CLASS, key]);
  },

  /**
   * A member's row, read up to the newest message they may see (what came before joining is
   * not unread). Nothing when the row exists.
   */
  async join(em: EntityManager, r: { key: string; userId: string; kind: ConversationKindValue; groupId?: string | null; projectId?: string | null; peerId?: string | null }): Promise<void> {
    await em.execute(
      `insert into conversation_members as cm (conversation_key, user_id, kind, group_id, project_id, peer_id, joined_at, activity_at, last_message_id, unread_count, last_read_message_id, last_read_at)
       select x.key, x.user_id, x.kind, x.group_id, x.project_id, x.peer_id, now(), coalesce(lm.created_at, now()), lm.id, 0, lm.id, lm.created_at
       from (select ?::varchar as key, ?::uuid as user_id, ?::varchar as kind, ?::uuid as group_id, ?::uuid as project_id, ?::uuid as peer_id) x
       left join lateral (
         select m.id, m.created_at from messages m where m.conversation_key = x.key
           and (m.recipient_id is null or m.sender_id = x.user_id or m.recipient_id = x.user_id)
         order by m.created_at desc, m.id desc limit 1
       ) lm on true
       -- A direct conversation exists once a message was exchanged.
       where x.kind <> 'DIRECT' or lm.id is not null
       on conflict (conversation_key, user_id) do nothing`,
      [r.key, r.userId, r.kind, r.groupId ?? null, r.projectId ?? null, r.peerId ?? null],
    );
  },

  async leave(em: EntityManager, key: string, userId: string): Promise<void> {
    await em.execute('delete from conversation_members where conversation_key = ? and user_id = ?', [key, userId]);
  },

  /** The conversation is gone (a group or project deleted): every member's row goes. */
  async drop(em: EntityManager, key: string): Promise<void> {
    await em.execute('delete from conversation_members where conversation_key = ?', [key]);
  },

  /** Account deletion: the user's remaining rows (direct conversations). */
  async dropUser(em: EntityManager, userId: string): Promise<void> {
    await em.execute('delete from conversation_members where user_id = ?', [userId]);
  },

  /** Both rows of a direct conversation, created by its first message. */
  async ensureDirect(em: EntityManager, key: string, a: string, b: string): Promise<void> {
    await em.execute(
      `insert into conversation_members (conversation_key, user_id, kind, peer_id, joined_at, activity_at, unread_count)
       values (?, ?, 'DIRECT', ?, now(), now(), 0), (?, ?, 'DIRECT', ?, now(), now(), 0) on conflict (conversation_key, user_id) do nothing`,
      [key, a, b, key, b, a],
    );
  },

  /**
   * A new message, inside its send transaction (after lock()): every member who may see it gets
   * it as their last message and one more unread, except the sender, whose marker moves to it.
   * Returns each changed row.
   */
  async recordMessage(
    em: EntityManager,
    m: { id: string; key: string; senderId: string; recipientId: string | null; privateInProject: boolean; createdAt: Date },
  ): Promise<MemberState[]> {
    const only = m.privateInProject ? ' and user_id in (?, ?)' : '';
    return em.execute(
      `update conversation_members set activity_at = ?, last_message_id = ?,
         unread_count = case when user_id = ? then 0 else unread_count + 1 end,
         last_read_message_id = case when user_id = ? then ? else last_read_message_id end,
         last_read_at = case when user_id = ? then ? else last_read_at end,
         read_at = case when user_id = ? then now() else read_at end
       where conversation_key = ?${only} returning ${STATE}`,
      [m.createdAt, m.id, m.senderId, m.senderId, m.id, m.senderId, m.createdAt, m.senderId, m.key, ...(only ? [m.senderId, m.recipientId] : [])],
    );
  },

  /** One page of a user's conversations, most recent activity first, by keyset on (activity_at, key). */
  async page(em: EntityManager, userId: string, opts: { after: { at: Date; key: string } | null; limit: number }): Promise<ConversationRow[]> {
    const params: unknown[] = [userId];
    let where = 'cm.user_id = ?';
    if (opts.after) {
      where += ' and (cm.activity_at, cm.conversation_key) < (?, ?)';
      params.push(opts.after.at, opts.after.key);
    }
    // The page is cut from the index first, then named: the joins touch its rows only, however many the user has.
    const page = `(select * from conversation_members cm where ${where} order by cm.activity_at desc, cm.conversation_key desc limit ?) cm`;
    return em.execute(`select ${ROW}, row_to_json(lm) as last_message from ${FROM.replace('conversation_members cm', page)} ${LAST} order by cm.activity_at desc, cm.conversation_key desc`, [
      ...params,
      opts.limit + 1,
    ]);
  },

  async count(em: EntityManager, userId: string): Promise<number> {
    const [row] = await em.execute('select count(*)::int as n from conversation_members where user_id = ?', [userId]);
    return row.n;
  },

  async row(em: EntityManager, userId: string, key: string, forUpdate = false): Promise<ConversationRow | null> {
    const rows: ConversationRow[] = await em.execute(
      forUpdate
        ? `select ${ROW} from ${FROM} where cm.conversation_key = ? and cm.user_id = ? for update of cm`
        : `select ${ROW}, row_to_json(lm) as last_message from ${FROM} ${LAST} where cm.conversation_key = ? and cm.user_id = ?`,
      [key, userId],
    );
    return rows[0] ?? null;
  },

  /** Every member's row (a rename tells them all). */
  async rows(em: EntityManager, key: string): Promise<ConversationRow[]> {
    return em.execute(`select ${ROW} from ${FROM} where cm.conversation_key = ?`, [key]);
  },

  /** Messages from others after (at, id) that the member may see: the unread count of a marker set in the middle. */
  async unreadAfter(em: EntityManager, key: string, userId: string, at: Date, id: string, projectPrivacy: boolean): Promise<number> {
    const privacy = projectPrivacy ? ' and (m.recipient_id is null or m.recipient_id = ?)' : '';
    const [row] = await em.execute(
      `select count(*)::int as n from messages m where m.conversation_key = ? and (m.created_at, m.id) > (?, ?) and m.sender_id <> ?${privacy}`,
      [key, at, id, userId, ...(privacy ? [userId] : [])],
    );
    return row.n;
  },

  async setMarker(em: EntityManager, key: string, userId: string, m: { id: string; at: Date; unread: number }): Promise<MemberState & { read_at: Date }> {
    const [row]: (MemberState & { read_at: Date })[] = await em.execute(
      `update conversation_members set last_read_message_id = ?, last_read_at = ?, unread_count = ?, read_at = now()
       where conversation_key = ? and user_id = ? returning ${STATE}, read_at`,
      [m.id, m.at, m.unread, key, userId],
    );
    return row;
  },

  /** Other members' read markers, most recent first (at most `limit`). */
  async receipts(em: EntityManager, key: string, exceptUserId: string, limit: number): Promise<{ user_id: string; last_read_message_id: string; read_at: Date }[]> {
    return em.execute(
      `select user_id, last_read_message_id, coalesce(read_at, last_read_at) as read_at from conversation_members
       where conversation_key = ? and user_id <> ? and last_read_message_id is not null order by last_read_at desc nulls last limit ?`,
      [key, exceptUserId, limit],
    );
  },
};
