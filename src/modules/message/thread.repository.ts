import type { EntityManager } from '@mikro-orm/postgresql';
import { limitLiteral, pgArray, prepared, unnestUnseen, type Sql } from '../../shared/sql';
import { BATCH_LOCKS, batchGate, friendsGate, GATE_COLUMNS, memberGate, projectGate, type SendGate } from '../conversation/conversation.repository';
import type { ReactionSummary } from '../../shared/pubsub/topics';
import { BATCH_TYPES, batchColumns, COLUMNS, MENTION_TYPES, mentionLists, REACTION_LIST, SELECT, WITH_ROW, type BatchedMessage, type MessageRow } from './message.repository';
import { mentionedOf, mentionRepository, type MentionedColumns, type MentionTargets } from './mention.repository';
import { blockedBy, blocksAnyone } from '../safety/block.repository';

/** A thread's participant as a statement returns them (row_to_json: ISO dates). */
export interface ParticipantColumns extends MentionedColumns {
  joined_at: string;
}

/** A message with what its answer and event show of it, read together (see threadRepository.changed). */
export type ChangedRow = MessageRow & { reaction_list: ReactionSummary[]; mentioned: MentionedColumns[]; participant_list: ParticipantColumns[] | null };

/** What a reply's statement returns besides the reply: its root after it, and the thread's participants before it. */
export interface ReplyColumns {
  root: (Omit<MessageRow, 'created_at'> & { created_at: string; reaction_list: ReactionSummary[]; moved: boolean }) | null;
  participants_before: ParticipantColumns[];
  mentioned?: MentionedColumns[];
  mention_counts?: Record<string, [number, number | null]> | null;
  gate_group_name?: string;
  gate_owner_id?: string | null;
}

/** A message's root as a reply sees it (null when it can have no reply, see ThreadService.rootFor). */
export interface RootRow {
  id: string;
  sender_id: string;
  created_at: Date;
  conversation_key: string;
  deleted_at: Date | null;
  private: boolean;
  /** The message named was a reply itself, and this is its root. */
  via_reply: boolean;
  parent_deleted: boolean;
  /** The replier blocks the root's author or the parent's: neither shows to them (see replierBlocks). */
  hidden: boolean;
}

/**
 * The replier (`?`, or a column) blocks the root's author or the parent's: a message their history
 * leaves out takes no reply from them, as it takes no reaction or pin (an outside probe replied to a
 * root it could not see).
 */
const replierBlocks = (replier: string) => `exists (select 1 from user_blocks ub where ub.blocker_id = ${replier} and ub.blocked_id in (root.sender_id, x.sender_id))`;

/** Profiles of a thread's first participants (the root's author, then who replied), as JSON. */
const participants = (root: string) => `(select coalesce(json_agg(json_build_object('id', u.id, 'username', u.username, 'display_name', u.display_name,
    'created_at', u.created_at, 'joined_at', tm.joined_at) order by tm.joined_at, tm.user_id), '[]'::json)
  from (select tm.user_id, tm.joined_at from thread_members tm where tm.root_id = ${root} and tm.replied order by tm.joined_at, tm.user_id limit 5) tm
  join users u on u.id = tm.user_id)`;

/**
 * CTEs of a reply's statement, after its message `m` and `tp` (the root: root_id, root_sender_id,
 * root_at): `tr` the root's counters and version, `tm` the thread's followers (the sender, who has
 * read up to their own reply; the root's author; the users the reply mentions). Plus the columns
 * `root` (as history reads it, with reactions) and `participants_before`. Each reply meets its
 * root by `m.parent_id`, and its mentions by `mn.message_id`, so the same CTEs serve a batch of
 * replies to distinct roots (insertReplyBatch).
 */
function threadAfter(mentions: { ctes: Sql; columns: string } | null): { ctes: Sql; columns: string } {
  return {
    ctes: {
      text: `${mentions ? `${mentions.ctes.text}, ` : ''}tr as (
        update messages r set reply_count = r.reply_count + 1, last_reply_at = m.created_at, version = r.version + 1 from m where r.id = m.parent_id returning r.*
      ), tm as (
        insert into thread_members as t (root_id, user_id, conversation_key, joined_at, replied, read_at)
        select distinct on (tp.root_id, x.user_id) tp.root_id, x.user_id, m.conversation_key, x.joined_at, x.replied, x.read_at
        from m join tp on tp.root_id = m.parent_id cross join lateral (
          select m.sender_id as user_id, m.created_at as joined_at, true as replied, m.created_at as read_at, 0 as pri
          union all select tp.root_sender_id, tp.root_at, true, null::timestamptz, 1
          ${mentions ? `union all select mn.user_id, m.created_at, false, null::timestamptz, 2 from mn where mn.message_id = m.id and not ${blockedBy('mn.user_id', 'm.sender_id')}` : ''}
        ) x order by tp.root_id, x.user_id, x.pri
        on conflict (root_id, user_id) do update set replied = t.replied or excluded.replied, read_at = greatest(t.read_at, excluded.read_at),
          -- A follower who replies first now took part now (threadParticipants' order), not when they began to follow.
          joined_at = case when excluded.replied and not t.replied then excluded.joined_at else t.joined_at end)`,
      params: mentions ? mentions.ctes.params : [],
    },
    // Inside the derived tables, m.parent_id is the outer row's: each reply reads its own root.
    // moved: the root changed between the statement's snapshot and its locks (a reaction, or a reply
    // from another instance, committed while this one waited): its counters and version are the
    // newest, its reactions and participants_before the snapshot's.
    columns: `(select row_to_json(x) from (select ${COLUMNS}, ${REACTION_LIST} as reaction_list,
          (select s.version from messages s where s.id = m.id) <> m.version - 1 as moved
        from (select * from tr where tr.id = m.parent_id) m ${WITH_ROW}) x) as root,
      ${participants('m.parent_id')} as participants_before${mentions ? `, ${mentions.columns}` : ''}`,
  };
}

/**
 * A thread (`t`, its root `m`) its follower still sees: a root not deleted, with a reply, in a
 * conversation they are still in, and not by a user they block (history leaves that root out).
 */
const LISTED = `m.last_reply_at is not null and m.deleted_at is null
  and exists (select 1 from conversation_members cm where cm.conversation_key = m.conversation_key and cm.user_id = t.user_id)
  and not ${blockedBy('t.user_id', 'm.sender_id')}`;

/**
 * Whether a followed thread (`t`, its root `m`) has replies its follower has not read. Replies of
 * users the follower blocks don't count: the root's last_reply_at says there is something new, a
 * probe of the thread index (only for a follower who blocks someone) that one of those replies is
 * not from a blocked user.
 */
const UNREAD = `(m.last_reply_at > coalesce(t.read_at, '-infinity'::timestamptz)
  and (not ${blocksAnyone('t.user_id')}
    or exists (select 1 from messages r where r.parent_id = m.id and r.created_at > coalesce(t.read_at, '-infinity'::timestamptz) and not ${blockedBy('t.user_id', 'r.sender_id')})))`;

export const threadRepository = {
  /** The root a reply by `replierId` to `parentId` attaches to (a reply's own root), with what decides whether it may. */
  async rootOf(em: EntityManager, parentId: string, replierId: string): Promise<RootRow | null> {
    const rows: RootRow[] = await em.execute(
      `select root.id, root.sender_id, root.created_at, root.conversation_key, root.deleted_at, root.project_id is not null and root.recipient_id is not null as private,
              x.parent_id is not null as via_reply, x.deleted_at is not null as parent_deleted, ${replierBlocks('?')} as hidden
         from messages x join messages root on root.id = coalesce(x.parent_id, x.id) where x.id = ?`,
      [replierId, parentId],
    );
    return rows[0] ?? null;
  },

  /**
   * A reply kept in its thread, in one statement: it is checked (the parent is a message of this
   * conversation, not deleted, not private; with `gate`, the sender a member of the group; in a
   * direct or project conversation, the friendship or the sender's participation, under a lock), takes
   * the next position in the conversation (the head's pos and last_at only: the timeline's seq,
   * last message and activity stay, as for a private message), counts on its root and makes its
   * sender follow the thread. Null when a check failed: nothing is written then. The gate's row
   * (the sender's membership, the friendship), then the head, then the root, are locked before the
   * checks read the root (the order every send and a reply also sent to the conversation take them,
   * and a deletion of the group or project its members' rows and its head): a root deleted
   * meanwhile is seen, and nothing is stored on it.
   */
  async insertReply(
    em: EntityManager,
    r: { id: string; conversationKey: string; senderId: string; content: string | null; groupId: string | null; projectId: string | null; recipientId: string | null; clientMessageId: string | null; parentId: string },
    file: { id: string; fileName: string; mimeType: string; data: Buffer } | null,
    gate: SendGate | null,
    mentions: MentionTargets | null,
  ): Promise<(MessageRow & ReplyColumns) | null> {
    // A reply refused for its parent (another conversation's, deleted, private) must not stamp slow mode: the parent's test is also the stamp's.
    const parentOk: Sql = {
      text: `exists (select 1 from messages x join messages root on root.id = coalesce(x.parent_id, x.id)
               where x.id = ? and x.conversation_key = ? and x.deleted_at is null and root.deleted_at is null and not (root.project_id is not null and root.recipient_id is not null)
                 and not ${replierBlocks('?')})`,
      params: [r.parentId, r.conversationKey, r.senderId],
    };
    const g = gate ? memberGate(gate.groupId, r.senderId, gate.slow, parentOk) : null;
    // A direct or project reply is gated as its conversation's messages are (a removeFriend, a block
    // or a removal committing after the check before it: stored before, in a conversation the
    // sender had left; a review). A group reply checked first has no gate, as a group send.
    const access = g ? null : r.projectId ? projectGate(r.conversationKey, r.senderId, null, 'ga') : !r.groupId && r.recipientId ? friendsGate(r.senderId, r.recipientId, 'ga') : null;
    const after = threadAfter(mentions ? mentionRepository.onSend(mentions, false) : null);
    const rows = await prepared<MessageRow & ReplyColumns>(
      em,
      `with ${g ? `${g.text}, ` : ''}${access ? `${access.text}, ` : ''}hl as (
         select 1 from conversation_heads where conversation_key = ? and closed_at is null${g ? ' and exists (select 1 from g)' : ''}${access ? ' and exists (select 1 from ga)' : ''} for update
       ), tp as (
         select root.id as root_id, root.sender_id as root_sender_id, root.created_at as root_at
           from hl, messages x join messages root on root.id = coalesce(x.parent_id, x.id)
          where x.id = ? and x.conversation_key = ? and x.deleted_at is null and root.deleted_at is null
            and not (root.project_id is not null and root.recipient_id is not null) and not ${replierBlocks('?')}${g ? ' and exists (select 1 from g)' : ''}${access ? ' and exists (select 1 from ga)' : ''}
          for no key update of root
       ), h as (
         update conversation_heads h set pos = h.pos + 1, last_at = greatest(date_trunc('milliseconds', clock_timestamp()), h.last_at + interval '1 millisecond')
           from tp where h.conversation_key = ? and h.closed_at is null returning h.seq, h.pos, h.last_at
       ), m as (
         insert into messages (id, conversation_key, sender_id, content, attachment_id, group_id, project_id, recipient_id, client_message_id, seq, pos, created_at, parent_id)
         select ?, ?, ?, ?, ?::uuid, ?::uuid, ?::uuid, ?::uuid, ?, h.seq, h.pos, h.last_at, tp.root_id from h cross join tp returning *
       ), a as (
         insert into attachments (id, file_name, mime_type, size, data, created_at)
         select ?::uuid, ?, ?, ?::int, ?::bytea, now() from m where ?::boolean returning id, file_name, mime_type, size
       ), ${after.ctes.text}
       select ${COLUMNS}, ${after.columns}${g ? `, ${GATE_COLUMNS}` : ''}
       from m left join a on a.id = m.attachment_id join users u on u.id = m.sender_id`,
      [
        ...(g?.params ?? []),
        ...(access?.params ?? []),
        r.conversationKey,
        r.parentId,
        r.conversationKey,
        r.senderId,
        r.conversationKey,
        r.id,
        r.conversationKey,
        r.senderId,
        r.content,
        file?.id ?? null,
        r.groupId,
        r.projectId,
        r.recipientId,
        r.clientMessageId,
        file?.id ?? null,
        file?.fileName ?? null,
        file?.mimeType ?? null,
        file?.data.length ?? null,
        file?.data ?? null,
        !!file,
        ...after.ctes.params,
      ],
    );
    return rows[0] ?? null;
  },

  /**
   * Replies kept in their threads, text only, of any number of conversations, in one statement
   * and one commit (see MessageService's reply batcher), each checked, written and answered as
   * insertReply does one without a gate's slow-mode stamp (batchGate, as recordBatch gates). One
   * reply per conversation (the caller's batches hold no more; of several, the first is written
   * and the rest come back without rows), as do the replies a check refused (each then goes alone
   * and is told why). Heads are locked in key order, before their roots, so two batches can't wait
   * on each other. `g` probes each group as recordBatch's does.
   * @throws as insertReply; a failure (a clientMessageId stored already, a sender gone) writes none of them.
   */
  async insertReplyBatch(
    em: EntityManager,
    batch: readonly (BatchedMessage & { parentId: string })[],
  ): Promise<(MessageRow & ReplyColumns)[]> {
    // Another statement text only when a reply of the batch mentions someone (each reply's lists in `b`).
    const mentions = batch.some((x) => x.mentions);
    const after = threadAfter(mentions ? mentionRepository.onSend('batch', false) : null);
    return prepared<MessageRow & ReplyColumns>(
      em,
      `with b as (select * from ${unnestUnseen([...BATCH_TYPES, 'uuid[]', ...(mentions ? MENTION_TYPES : [])])}
           with ordinality as b(id, conversation_key, group_id, project_id, sender_id, content, client_message_id, parent_id, ${mentions ? 'mention_names, mention_ids, ' : ''}o)),
       ${BATCH_LOCKS},
       tp as (
         select distinct on (b.conversation_key) b.*, root.id as root_id, root.sender_id as root_sender_id, root.created_at as root_at
           from b join messages x on x.id = b.parent_id and x.conversation_key = b.conversation_key and x.deleted_at is null
           join messages root on root.id = coalesce(x.parent_id, x.id) and root.deleted_at is null and not (root.project_id is not null and root.recipient_id is not null)
          where ${batchGate('b')} and not ${replierBlocks('b.sender_id')}
          order by b.conversation_key, b.o
       ), hl as (
         select h.conversation_key from conversation_heads h join tp on tp.conversation_key = h.conversation_key where h.closed_at is null order by h.conversation_key for update of h
       ), rl as (
         select tp.conversation_key from hl join tp on tp.conversation_key = hl.conversation_key join messages r on r.id = tp.root_id
          where r.deleted_at is null order by tp.conversation_key for no key update of r
       ), h as (
         update conversation_heads h set pos = h.pos + 1, last_at = greatest(date_trunc('milliseconds', clock_timestamp()), h.last_at + interval '1 millisecond')
           from rl where h.conversation_key = rl.conversation_key returning h.conversation_key, h.seq, h.pos, h.last_at
       ), m as (
         insert into messages (id, conversation_key, sender_id, content, group_id, project_id, client_message_id, seq, pos, created_at, parent_id)
         select tp.id, tp.conversation_key, tp.sender_id, tp.content, tp.group_id, tp.project_id, tp.client_message_id, h.seq, h.pos, h.last_at, tp.root_id
           from tp join h on h.conversation_key = tp.conversation_key returning *
       ), g as (select distinct gr.id, gr.name, gr.owner_id from tp cross join lateral (select id, name, owner_id from groups where id = tp.group_id offset 0) gr), ${after.ctes.text}
       select ${COLUMNS}, ${after.columns}, (select g.name from g where g.id = m.group_id) as gate_group_name,
         (select g.owner_id from g where g.id = m.group_id) as gate_owner_id
       from m ${WITH_ROW}`,
      [
        ...batchColumns(batch),
        pgArray(batch.map((x) => x.parentId)),
        ...(mentions ? mentionLists(batch) : []),
        ...after.ctes.params,
      ],
    );
  },

  /**
   * What a reply also sent to the conversation adds to messageRepository.insert's statement, after
   * its `m` (whose parent_id is the root, checked before): the thread's CTEs and columns.
   */
  alsoInConversation(root: { id: string; senderId: string; createdAt: Date }, mentions: { ctes: Sql; columns: string } | null): { ctes: Sql; columns: string } {
    const after = threadAfter(mentions);
    return {
      ctes: { text: `tp as (select ?::uuid as root_id, ?::uuid as root_sender_id, ?::timestamptz as root_at), ${after.ctes.text}`, params: [root.id, root.senderId, root.createdAt, ...after.ctes.params] },
      columns: after.columns,
    };
  },

  /** One page of a thread's replies by keyset on (created_at, id), like history; the replies of users `viewerId` blocks left out. */
  async page(em: EntityManager, rootId: string, viewerId: string, opts: { direction: 'forward' | 'backward'; cursor: { at: Date; id: string } | null; limit: number }): Promise<MessageRow[]> {
    const forward = opts.direction === 'forward';
    const params: unknown[] = [rootId, viewerId];
    let where = `m.parent_id = ? and not ${blockedBy('?', 'm.sender_id')}`;
    if (opts.cursor) {
      where += forward ? ' and (m.created_at, m.id) > (?, ?)' : ' and (m.created_at, m.id) < (?, ?)';
      params.push(opts.cursor.at, opts.cursor.id);
    }
    const order = forward ? 'm.created_at asc, m.id asc' : 'm.created_at desc, m.id desc';
    const rows = await prepared<MessageRow>(em, `${SELECT} where ${where} order by ${order} limit ${limitLiteral(opts.limit + 1)}`, params);
    return rows.slice(0, opts.limit + 1);
  },

  /** A thread's replies as `viewerId` sees them (those of users they block left out). */
  async count(em: EntityManager, rootId: string, viewerId: string): Promise<number> {
    const [row] = await em.execute(`select count(*)::int as n from messages m where m.parent_id = ? and not ${blockedBy('?', 'm.sender_id')}`, [rootId, viewerId]);
    return row.n;
  },

  /**
   * A message as a change left it (an edit, a deletion, a reaction, a pin), read in the change's
   * transaction under its row's lock: with its reactions, the users it mentions and, as a root, its
   * first participants. Loaded after the commit, an answer or an event showed another change's
   * mentions beside its own text, or participants its replyCount could not hold (an outside probe).
   */
  async changed(em: EntityManager, id: string): Promise<ChangedRow | null> {
    const rows: ChangedRow[] = await em.execute(
      `select ${COLUMNS}, ${REACTION_LIST} as reaction_list, ${mentionedOf('m.id')} as mentioned,
              case when m.reply_count > 0 then ${participants('m.id')} end as participant_list
       from messages m ${WITH_ROW} where m.id = ?`,
      [id],
    );
    return rows[0] ?? null;
  },

  /** The first (at most 5) participants of each root: its author, then who replied, in the order they took part. */
  async participants(em: EntityManager, rootIds: readonly string[]): Promise<Map<string, ParticipantColumns[]>> {
    const out = new Map<string, ParticipantColumns[]>();
    if (!rootIds.length) return out;
    const rows: { root_id: string; list: ParticipantColumns[] }[] = await em.execute(
      `select r.id as root_id, ${participants('r.id')} as list from unnest(?::uuid[]) as r(id)`,
      [`{${rootIds.join(',')}}`],
    );
    for (const r of rows) out.set(r.root_id, r.list);
    return out;
  },

  /**
   * The roots of the threads `userId` follows (see LISTED), each with `has_unread` (see UNREAD):
   * latest reply first, by keyset on (last_reply_at, id); `backward` reads from the other end,
   * oldest first.
   */
  async followed(em: EntityManager, userId: string, opts: { from: { at: Date; id: string } | null; backward: boolean; limit: number }): Promise<(MessageRow & { has_unread: boolean })[]> {
    const dir = opts.backward ? 'asc' : 'desc';
    const rows: (MessageRow & { has_unread: boolean })[] = await em.execute(
      `select ${COLUMNS}, ${UNREAD} as has_unread from messages m ${WITH_ROW} join thread_members t on t.root_id = m.id and t.user_id = ? where ${LISTED}
          ${opts.from ? `and (m.last_reply_at, m.id) ${opts.backward ? '>' : '<'} (?, ?)` : ''}
        order by m.last_reply_at ${dir}, m.id ${dir} limit ${limitLiteral(opts.limit + 1)}`,
      [userId, ...(opts.from ? [opts.from.at, opts.from.id] : [])],
    );
    return rows.slice(0, opts.limit + 1);
  },

  async countFollowed(em: EntityManager, userId: string): Promise<number> {
    const [row] = await em.execute(`select count(*)::int as n from thread_members t join messages m on m.id = t.root_id where t.user_id = ? and ${LISTED}`, [userId]);
    return row.n;
  },

  /** Of `rootIds`, the threads `userId` follows that have replies they have not read. */
  async unreadAmong(em: EntityManager, userId: string, rootIds: readonly string[]): Promise<Set<string>> {
    const rows: { id: string }[] = await em.execute(
      `select m.id from thread_members t join messages m on m.id = t.root_id where t.user_id = ? and t.root_id = any(?::uuid[]) and ${LISTED} and ${UNREAD}`,
      [userId, pgArray(rootIds)],
    );
    return new Set(rows.map((r) => r.id));
  },

  /** Moves the user's marker in a thread to its newest reply (they follow it from now on). */
  async markRead(em: EntityManager, root: { id: string; conversationKey: string; lastReplyAt: Date | null }, userId: string): Promise<void> {
    await em.execute(
      `insert into thread_members as t (root_id, user_id, conversation_key, joined_at, replied, read_at) values (?, ?, ?, clock_timestamp(), false, ?)
       on conflict (root_id, user_id) do update set read_at = greatest(t.read_at, excluded.read_at)`,
      [root.id, userId, root.conversationKey, root.lastReplyAt],
    );
  },
};
