import type { EntityManager } from '@mikro-orm/postgresql';
import { limitLiteral, pgArray, pgTextArray, prepared, unnestUnseen, type Sql } from '../../shared/sql';
import type { ReactionSummary } from '../../shared/pubsub/topics';
import type { HeadColumns, MemberColumns } from '../conversation/conversation.events';
import { Attachment } from './message.entity';
import { notBlockedByViewer } from '../safety/block.repository';
import type { MentionedColumns, MentionTargets } from './mention.repository';

export interface MessageRow {
  id: string;
  conversation_key: string;
  sender_id: string;
  content: string | null;
  attachment_id: string | null;
  group_id: string | null;
  project_id: string | null;
  recipient_id: string | null;
  client_message_id: string | null;
  created_at: Date;
  edited_at: Date | null;
  deleted_at: Date | null;
  /** One more with each edit, deletion and reaction change. */
  version: number;
  /** Its position among all its conversation's messages (a bigint, as text); null for one stored before positions. */
  pos: string | null;
  /** A reply's thread root (null: not a reply), whether it is in the timeline too, and a root's counters. */
  parent_id: string | null;
  also_in_conversation: boolean;
  reply_count: number;
  last_reply_at: Date | string | null;
  file_name: string | null;
  mime_type: string | null;
  size: number | null;
  /** The sender's public profile, read with the message so no second query is needed for it. */
  sender_username: string;
  sender_display_name: string | null;
  sender_created_at: Date;
}

/** What a send that may mention someone returns besides (see mentionRepository.onSend). */
export interface MentionColumns {
  mentioned: MentionedColumns[];
  /** Each mentioned member's unread mentions after the message, and the read position they were counted from. */
  mention_counts: Record<string, [number, number | null]> | null;
}

/** What a send returns besides the message: the head after it, the sender's row and the other one that travels with the event. */
export interface SentColumns extends HeadColumns {
  sender_state: MemberColumns | null;
  recipient_state: MemberColumns | null;
  /** A send gated on its sender's membership (conversationRepository's memberGate): the group's name and owner. */
  gate_group_name?: string;
  gate_owner_id?: string | null;
}

// Attachment metadata and the sender's profile come along; the attachment's bytes never do.
/**
 * Every column but those all the rows of a group's page share, which COLUMNS adds at its end: a
 * group's page reads these alone (4 of 24 columns a row that PostgreSQL need not write out, nor pg
 * decode) and fills the rest in (see rowOf).
 */
export const GROUP_COLUMNS = `m.id, m.sender_id, m.content, m.attachment_id,
  m.client_message_id, m.created_at, m.edited_at, m.deleted_at, m.version, m.pos, m.parent_id, m.also_in_conversation, m.reply_count, m.last_reply_at, a.file_name, a.mime_type, a.size,
  u.username as sender_username, u.display_name as sender_display_name, u.created_at as sender_created_at`;
export const COLUMNS = `${GROUP_COLUMNS}, m.conversation_key, m.group_id, m.project_id, m.recipient_id`;

/**
 * A row read as an array (see prepared): COLUMNS in their order or, for a group's page
 * (`group`), GROUP_COLUMNS with what its rows share filled in. Either way the same fields in the
 * same order, so history's rows have one shape.
 */
export function rowOf(a: unknown[], group?: { key: string; groupId: string }): MessageRow {
  return {
    id: a[0] as string,
    sender_id: a[1] as string,
    content: a[2] as string | null,
    attachment_id: a[3] as string | null,
    client_message_id: a[4] as string | null,
    created_at: a[5] as Date,
    edited_at: a[6] as Date | null,
    deleted_at: a[7] as Date | null,
    version: a[8] as number,
    pos: a[9] as string | null,
    parent_id: a[10] as string | null,
    also_in_conversation: a[11] as boolean,
    reply_count: a[12] as number,
    last_reply_at: a[13] as Date | null,
    file_name: a[14] as string | null,
    mime_type: a[15] as string | null,
    size: a[16] as number | null,
    sender_username: a[17] as string,
    sender_display_name: a[18] as string | null,
    sender_created_at: a[19] as Date,
    conversation_key: group ? group.key : (a[20] as string),
    group_id: group ? group.groupId : (a[21] as string | null),
    project_id: group ? null : (a[22] as string | null),
    recipient_id: group ? null : (a[23] as string | null),
  };
}
/** The reactions of message `m`, per emoji in the order first used, as one JSON list (ReactionSummary[]). */
export const REACTION_LIST = `(select coalesce(json_agg(json_build_object('emoji', r.emoji, 'userIds', r.user_ids) order by r.first, r.emoji), '[]'::json)
  from (select emoji, array_agg(user_id::text order by created_at, user_id) as user_ids, min(created_at) as first
        from message_reactions where message_id = m.id group by emoji) r)`;
/** What COLUMNS reads beside the message `m`: its attachment's metadata and its sender. */
export const WITH_ROW = 'left join attachments a on a.id = m.attachment_id join users u on u.id = m.sender_id';
/** A message as history reads it; callers add the where clause (on `m`). */
export const SELECT = `select ${COLUMNS}
  from messages m ${WITH_ROW}`;

/** A conversation key as a page's bound: a value the planner can't see (see messageRepository.page). */
const KEY = '(select ?::text)';

/** Inside a project: the viewer sees its open messages and their own private ones (or one private thread). */
export interface PrivateFilter {
  viewerId: string;
  privateWith: string | null;
}

function privacy(f: PrivateFilter): { sql: string; params: unknown[] } {
  if (f.privateWith) {
    return {
      sql: '((m.sender_id = ? and m.recipient_id = ?) or (m.sender_id = ? and m.recipient_id = ?))',
      params: [f.viewerId, f.privateWith, f.privateWith, f.viewerId],
    };
  }
  return { sql: '(m.recipient_id is null or m.sender_id = ? or m.recipient_id = ?)', params: [f.viewerId, f.viewerId] };
}

/** A batch of messages (see insertBatch) as the arrays its `unnest` takes: id, conversation_key, group_id, project_id, sender_id, content, client_message_id. */
export function batchColumns(batch: readonly BatchedMessage[]): string[] {
  return [
    pgArray(batch.map((x) => x.id)),
    pgTextArray(batch.map((x) => x.conversationKey)),
    pgTextArray(batch.map((x) => x.groupId)),
    pgTextArray(batch.map((x) => x.projectId)),
    pgArray(batch.map((x) => x.senderId)),
    pgTextArray(batch.map((x) => x.content)),
    pgTextArray(batch.map((x) => x.clientMessageId)),
  ];
}

/** The types of batchColumns' arrays, in order. */
export const BATCH_TYPES = ['uuid[]', 'text[]', 'uuid[]', 'uuid[]', 'uuid[]', 'text[]', 'text[]'];
/** The types of mentionLists' arrays. */
export const MENTION_TYPES = ['text[]', 'text[]'];

/** Each message's mention lists as array literals, for its row in `b` (see mentionRepository.onSend's 'batch'). */
export function mentionLists(batch: readonly BatchedMessage[]): string[] {
  return [pgTextArray(batch.map((x) => pgTextArray(x.mentions?.names ?? []))), pgTextArray(batch.map((x) => pgArray(x.mentions?.ids ?? [])))];
}

/**
 * A message just written, as history would read it: what its send said, what its statement read
 * back (time, position, the sender's profile), and a new message's defaults (a text message of
 * no thread, with no attachment: insert sets those it has). Callers add to it with Object.assign:
 * in V8 (Node 20) properties after a spread in an object literal cost ~1 µs each, and the same
 * row built as `{ ...newMessage(), head_seq, ... }` took 12 µs against 0.1.
 */
function newMessage(
  x: Pick<BatchedMessage, 'id' | 'conversationKey' | 'senderId' | 'groupId' | 'projectId' | 'clientMessageId'> & { content: string | null },
  read: Pick<MessageRow, 'created_at' | 'pos' | 'sender_username' | 'sender_display_name' | 'sender_created_at'>,
): MessageRow {
  return {
    id: x.id,
    conversation_key: x.conversationKey,
    sender_id: x.senderId,
    content: x.content,
    attachment_id: null,
    group_id: x.groupId,
    project_id: x.projectId,
    recipient_id: null,
    client_message_id: x.clientMessageId,
    created_at: read.created_at,
    edited_at: null,
    deleted_at: null,
    version: 0,
    pos: read.pos,
    parent_id: null,
    also_in_conversation: false,
    reply_count: 0,
    last_reply_at: null,
    file_name: null,
    mime_type: null,
    size: null,
    sender_username: read.sender_username,
    sender_display_name: read.sender_display_name,
    sender_created_at: read.sender_created_at,
  };
}

/** What a batch's statement returns for each of its messages (see insertBatch). */
interface BatchRow extends Pick<SentColumns, 'sender_state' | 'recipient_state' | 'gate_group_name' | 'gate_owner_id'>, Partial<MentionColumns> {
  id: string;
  created_at: Date;
  pos: string;
  seq: string;
  username: string;
  display_name: string | null;
  sender_created_at: Date;
}

/** An open text message of a group or project, as a batch's statement takes it. */
export interface BatchedMessage {
  id: string;
  conversationKey: string;
  groupId: string | null;
  projectId: string | null;
  senderId: string;
  content: string;
  clientMessageId: string | null;
  /** Who its text mentions (see insertBatch's `mentions`). */
  mentions?: MentionTargets | null;
}

/**
 * The message's row lock, which orders its reactions and pins against each other and its deletion:
 * react, unreact, pin and unpin take it first (an add and a remove at once taking the reaction's
 * row and the message's in the other order deadlocked; a pin checked before a deletion committed
 * pinned the tombstone). Answers what a deletion that took the lock first left: 'deleted' (a
 * tombstone), 'gone' (its group's or project's deletion took the row), else 'there'.
 */
export const lockMessage = async (em: EntityManager, messageId: string): Promise<'there' | 'deleted' | 'gone'> => {
  const [row]: { deleted: boolean }[] = await em.execute('select deleted_at is not null as deleted from messages where id = ? for update', [messageId]);
  return !row ? 'gone' : row.deleted ? 'deleted' : 'there';
};

/** Batch statements' texts without mentions, by their record (MessageService keeps its one). */
const batchTexts = new WeakMap<object, string>();

/**
 * A batch's statement text. Without mentions it is built once per record and then found again:
 * built anew, ~4.7 KB of text went through `prepared`'s lookup of its statement name each batch
 * (flattened, hashed and compared whole: `perf` of bench:rooms showed the hashing under
 * `prepared`); the same string keeps its hash.
 */
function batchText(record: { before: Sql; after: Sql; states: Sql }, mentions?: { ctes: Sql; columns: string }): string {
  const kept = mentions ? undefined : batchTexts.get(record);
  if (kept !== undefined) return kept;
  const text = `with b as (select * from ${unnestUnseen([...BATCH_TYPES, ...(mentions ? MENTION_TYPES : [])])}
           with ordinality as b(id, conversation_key, group_id, project_id, sender_id, content, client_message_id, ${mentions ? 'mention_names, mention_ids, ' : ''}o)),
       ${record.before.text}, m as (
         insert into messages (id, conversation_key, sender_id, content, group_id, project_id, client_message_id, seq, pos, created_at)
         select b.id, b.conversation_key, b.sender_id, b.content, b.group_id, b.project_id, b.client_message_id, h.seq - h.n + b.i, h.pos - h.n + b.i,
           h.last_at - (h.n - b.i) * interval '1 millisecond' from hk h join bi b on b.conversation_key = h.conversation_key returning *
       ), ${record.after.text}${mentions ? `, ${mentions.ctes.text}` : ''}
       select m.id, m.created_at, m.pos, m.seq, u.username, u.display_name, u.created_at as sender_created_at, ${record.states.text}${mentions ? `, ${mentions.columns}` : ''}
       from m join users u on u.id = m.sender_id`;
  if (!mentions) batchTexts.set(record, text);
  return text;
}

/**
 * A message's send, kept when its text or file first changes (an edit, a deletion) if it has a
 * clientMessageId, for the retries of that send to match (`sentDigest` in message.service.ts
 * computes the same from a retry). Only the first change writes it, and not over an edit of a
 * release before it (edited_at set, no digest): that text is no longer the send's. Salted by the
 * message's id, so equal texts don't share a digest.
 */
const SENT_DIGEST = `case when m.client_message_id is not null and m.sent_digest is null and m.edited_at is null
  then sha256(convert_to(m.id::text || E'\\n' || coalesce(m.content, '') || E'\\n'
    || coalesce((select a.file_name || E'\\n' || a.size || E'\\n' || encode(sha256(a.data), 'hex') from attachments a where a.id = m.attachment_id), ''), 'UTF8'))
  else m.sent_digest end`;

export const messageRepository = {
  /** Whether a stored attachment's bytes have this SHA-256 (a retry's file against the first one's). */
  /** Whether the attachment's bytes have this digest; null when the attachment is gone (its message deleted meanwhile). */
  async attachmentDigestIs(em: EntityManager, attachmentId: string, digest: Buffer): Promise<boolean | null> {
    const rows: { same: boolean }[] = await em.execute('select sha256(data) = ?::bytea as same from attachments where id = ?', [digest, attachmentId]);
    return rows.length ? rows[0].same === true : null;
  },

  /**
   * The newest messages of a conversation created since `since` and since the earliest of
   * `joiners` joined it (what came before is their history, not news), oldest first (at most `limit`).
   */
  async since(em: EntityManager, conversationKey: string, since: Date, joiners: readonly string[], limit: number): Promise<MessageRow[]> {
    const rows: MessageRow[] = await em.execute(
      `select * from (${SELECT} where m.conversation_key = ? and m.created_at >= greatest(?::timestamptz,
         (select min(joined_at) from conversation_members where conversation_key = ? and user_id = any(?::uuid[])))
       order by m.created_at desc, m.id desc limit ?) t order by created_at, id`,
      [conversationKey, since, conversationKey, pgArray(joiners), limit],
    );
    return rows;
  },

  /**
   * Inserts a message (and its attachment) and its conversation's bookkeeping (`record`, see
   * conversationRepository.recordMessage) in one statement, atomic on its own: one round trip,
   * no transaction. The head's row lock orders the conversation's sends, and the message is
   * stamped under it (millisecond precision, so cursors round-trip exactly) with its seq.
   * Returns it as history reads it, with the head and the changed members' rows after it.
   * Null when `record` gates the send on the sender's membership and they are not a member:
   * nothing is written then either.
   * @throws UniqueConstraintViolationException when (sender, clientMessageId) exists already:
   * nothing is written then, the head included.
   */
  async insert(
    em: EntityManager,
    m: { id: string; conversationKey: string; senderId: string; content: string | null; groupId: string | null; projectId: string | null; recipientId: string | null; clientMessageId: string | null; parentId?: string | null },
    file: { id: string; fileName: string; mimeType: string; data: Buffer } | null,
    record: { before: Sql; after: Sql; recipientSeq: string; states: Sql },
  ): Promise<(MessageRow & SentColumns) | null> {
    // The attachment row is written only with the message, and the foreign key between the two
    // is checked at the end of the statement. What the row holds beside its time, position and
    // sender is what `m` and `file` say or a new message's defaults (see insertBatch).
    const rows = await prepared<Pick<MessageRow, 'id' | 'created_at' | 'pos' | 'sender_username' | 'sender_display_name' | 'sender_created_at'> & SentColumns>(
      em,
      `with ${record.before.text}, m as (
         insert into messages (id, conversation_key, sender_id, content, attachment_id, group_id, project_id, recipient_id, client_message_id, seq, pos, recipient_seq, created_at, parent_id, also_in_conversation)
         select ?, ?, ?, ?, ?::uuid, ?::uuid, ?::uuid, ?::uuid, ?, h.seq, h.pos, ${record.recipientSeq}, h.last_at, ?::uuid, ?::uuid is not null from h returning *
       ), a as (
         insert into attachments (id, file_name, mime_type, size, data, created_at)
         select ?::uuid, ?, ?, ?::int, ?::bytea, now() from m where ?::boolean returning id, file_name, mime_type, size
       ), ${record.after.text}
       select m.id, m.created_at, m.pos, u.username as sender_username, u.display_name as sender_display_name, u.created_at as sender_created_at,
         h.seq as head_seq, h.last_message_id as head_message_id, h.activity_at as head_at, ${record.states.text}
       from m join users u on u.id = m.sender_id cross join h`,
      [
        ...record.before.params,
        m.id,
        m.conversationKey,
        m.senderId,
        m.content,
        file?.id ?? null,
        m.groupId,
        m.projectId,
        m.recipientId,
        m.clientMessageId,
        m.parentId ?? null,
        m.parentId ?? null,
        file?.id ?? null,
        file?.fileName ?? null,
        file?.mimeType ?? null,
        file?.data.length ?? null,
        file?.data ?? null,
        !!file,
        ...record.after.params,
        ...record.states.params,
      ],
    );
    const r = rows[0];
    if (!r) return null;
    const row = newMessage(m, r);
    row.recipient_id = m.recipientId;
    row.parent_id = m.parentId ?? null;
    row.also_in_conversation = !!m.parentId;
    if (file) {
      row.attachment_id = file.id;
      row.file_name = file.fileName;
      row.mime_type = file.mimeType;
      row.size = file.data.length;
    }
    // Assigned, not spread into a literal (see newMessage).
    return Object.assign(row, r);
  },

  /**
   * Open messages of groups and projects (no attachment, none private), of one conversation or
   * several, in one statement, as `insert` writes one: one commit for all of them (see Batcher in
   * MessageService) and, per conversation, one head update. Each row comes back with its
   * conversation's head and its sender's row as they stood right after it. One statement text
   * for every batch. A group whose gate fails (see recordBatch) writes nothing and its messages
   * come back without rows; the rest are written.
   * @throws as `insert`; a failure (a clientMessageId stored already, a sender gone) writes none of them.
   */
  async insertBatch(
    em: EntityManager,
    batch: readonly BatchedMessage[],
    record: { before: Sql; after: Sql; states: Sql },
    /** mentionRepository.onSend('batch', true), when a message of the batch mentions someone: each message's lists are then in `b`. */
    mentions?: { ctes: Sql; columns: string },
  ): Promise<(MessageRow & SentColumns & Partial<MentionColumns>)[]> {
    const rows = await prepared<BatchRow>(
      em,
      batchText(record, mentions),
      [
        ...batchColumns(batch),
        ...(mentions ? mentionLists(batch) : []),
        ...record.before.params,
        ...record.after.params,
        ...mentions?.ctes.params ?? [],
        ...record.states.params,
      ],
    );
    // The rest of each row is what its item says, or what a new text message of a group or
    // project holds: 11 columns a row (13 with mentions) instead of 31 (33) for pg to decode and
    // PostgreSQL to write out. batching-equivalence.test holds it to what a single send returns.
    const items = new Map(batch.map((x) => [x.id, x]));
    return rows.map((r) => {
      const sent: SentColumns = { head_seq: r.seq, head_message_id: r.id, head_at: r.created_at, sender_state: r.sender_state, recipient_state: r.recipient_state, gate_group_name: r.gate_group_name, gate_owner_id: r.gate_owner_id };
      const row = newMessage(items.get(r.id)!, { created_at: r.created_at, pos: r.pos, sender_username: r.username, sender_display_name: r.display_name, sender_created_at: r.sender_created_at });
      return Object.assign(row, sent, mentions ? { mentioned: r.mentioned, mention_counts: r.mention_counts } : null);
    });
  },

  /**
   * A conversation's messages stored after the one created at `after` and before the one created
   * at `before`, oldest first, at most `limit`: what a subscription line's gap lost (see InOrder).
   * Times and positions rise together in a conversation (both are stamped under its head's lock).
   */
  async between(em: EntityManager, key: string, q: { after: Date; before: Date; limit: number }): Promise<MessageRow[]> {
    return em.execute(`${SELECT} where m.conversation_key = ? and m.created_at > ? and m.created_at < ? order by m.created_at, m.id limit ${limitLiteral(q.limit)}`, [key, q.after, q.before]);
  },

  /**
   * The messages of conversations `keys` and of users `users`' direct conversations stored since
   * `since`, oldest first, at most `limit`: what an instance back on Redis reads for the channels
   * it holds. The time index (BRIN) finds the recent range, whatever the number of channels.
   */
  async storedSince(em: EntityManager, q: { keys: readonly string[]; users: readonly string[]; since: Date; limit: number }): Promise<MessageRow[]> {
    return em.execute(
      `${SELECT} where m.created_at >= ? and m.pos is not null
         and (m.conversation_key = any(?::text[]) or (m.group_id is null and m.project_id is null and (m.sender_id = any(?::uuid[]) or m.recipient_id = any(?::uuid[]))))
       order by m.created_at, m.id limit ${limitLiteral(q.limit)}`,
      [q.since, pgArray(q.keys), pgArray(q.users), pgArray(q.users)],
    );
  },

  async byId(em: EntityManager, id: string): Promise<MessageRow | null> {
    const rows: MessageRow[] = await em.execute(`${SELECT} where m.id = ?`, [id]);
    return rows[0] ?? null;
  },

  /** Whether the message is there once a deletion of it under way has ended (KEY SHARE of its group's or project's row, then its own, waits for that). */
  async settledExists(em: EntityManager, id: string): Promise<boolean> {
    // Its group's or project's row first: a deletion holds it from the start, and may not have
    // reached the message's row yet (its lock alone would be taken ahead of the deletion).
    await em.execute(
      `select 1 from groups where id = (select group_id from messages where id = ?) for key share`,
      [id],
    );
    await em.execute(
      `select 1 from projects where id = (select project_id from messages where id = ?) for key share`,
      [id],
    );
    return (await em.execute('select 1 from messages where id = ? for key share', [id])).length > 0;
  },

  async byIds(em: EntityManager, ids: readonly string[]): Promise<MessageRow[]> {
    return ids.length ? em.execute(`${SELECT} where m.id = any(?::uuid[])`, [pgArray(ids)]) : [];
  },

  /**
   * The new text, compared under the row's lock: 'same' when the message has that text already (a
   * concurrent edit may have just written it), 'deleted' when it is a tombstone, 'gone' when its
   * row is (its group's or project's deletion crossed the edit).
   */
  async edit(em: EntityManager, id: string, content: string): Promise<'edited' | 'same' | 'deleted' | 'gone'> {
    const rows: { same: boolean; deleted: boolean }[] = await em.execute(
      `with old as (select id, content is not distinct from ? as same, deleted_at is not null as deleted from messages where id = ? for update),
       e as (update messages m set sent_digest = ${SENT_DIGEST}, content = ?, edited_at = date_trunc('milliseconds', clock_timestamp()), version = version + 1
             from old where m.id = old.id and not old.same and not old.deleted returning m.id)
       select same, deleted from old`,
      [content, id, content],
    );
    return !rows.length ? 'gone' : rows[0].deleted ? 'deleted' : rows[0].same ? 'same' : 'edited';
  },

  /**
   * Whether the message is deleted, read under a share of its row: a deletion under way (its
   * tombstone holds the row FOR UPDATE) is waited for and then seen; none can begin until this
   * transaction ends.
   */
  async deletedHeld(em: EntityManager, id: string): Promise<boolean> {
    const [row]: { deleted: boolean }[] = await em.execute('select deleted_at is not null as deleted from messages where id = ? for share', [id]);
    return !row || row.deleted;
  },

  /**
   * Leaves a tombstone: content, attachment (its bytes too), reactions and mentions go; id, sender
   * and createdAt stay. Returns the users it mentioned (their badges change); null when a deletion
   * that held the row first left one already (nothing to change, nothing to tell).
   */
  async tombstone(em: EntityManager, id: string): Promise<string[] | null> {
    const [old]: { attachment_id: string | null; deleted: boolean }[] = await em.execute('select attachment_id, deleted_at is not null as deleted from messages where id = ? for update', [id]);
    if (old?.deleted) return null;
    // A tombstone keeps its id, sender and createdAt (and where it sits): nothing of what it said, nor that it was edited.
    // (Every SET reads the row as it was: the digest sees the text and file going.)
    await em.execute(
      `update messages m set sent_digest = ${SENT_DIGEST}, content = null, attachment_id = null, edited_at = null, deleted_at = date_trunc('milliseconds', clock_timestamp()), version = version + 1 where id = ?`,
      [id],
    );
    if (old?.attachment_id) await em.execute('delete from attachments where id = ?', [old.attachment_id]);
    await em.execute('delete from message_reactions where message_id = ?', [id]);
    // A deleted message mentions no one: off the badges and the mentions lists.
    const unmentioned: { user_id: string }[] = await em.execute('delete from message_mentions where message_id = ? returning user_id', [id]);
    return unmentioned.map((r) => r.user_id);
  },

  /**
   * Adds the user's reaction, inside the caller's transaction (the message's row locked first, see
   * lockMessage): true when it was added, false when they had it already, 'full' when the message
   * has `maxKinds` other emoji, 'deleted' or 'gone' when a deletion got there first (its reactions
   * went with it, and it takes no more).
   */
  async react(em: EntityManager, messageId: string, userId: string, emoji: string, maxKinds: number): Promise<boolean | 'full' | 'deleted' | 'gone'> {
    // Counted by the next statement, whose snapshot sees what the lock waited for: two new emoji
    // at once can't both take the last kind.
    const found = await lockMessage(em, messageId);
    if (found !== 'there') return found;
    // The message's version moves with the reaction, in the same statement.
    const [row]: { reached: boolean; added: boolean }[] = await em.execute(
      `with cap as (select (select count(distinct r.emoji) from message_reactions r where r.message_id = ?) >= ?
                        and not exists (select 1 from message_reactions r where r.message_id = ? and r.emoji = ?) as reached),
            r as (insert into message_reactions (message_id, user_id, emoji, created_at) select ?, ?, ?, now() where not (select reached from cap)
                  on conflict do nothing returning message_id),
            v as (update messages set version = version + 1 where id = (select message_id from r) returning id)
       select (select reached from cap) as reached, exists (select 1 from v) as added`,
      [messageId, maxKinds, messageId, emoji, messageId, userId, emoji],
    );
    return row.reached ? 'full' : row.added;
  },

  /** Removes the user's reaction, in any of `forms` (an emoji as stored before its form was made canonical, and as it is now); inside the caller's transaction, as react. */
  async unreact(em: EntityManager, messageId: string, userId: string, forms: readonly string[]): Promise<boolean> {
    await lockMessage(em, messageId);
    const rows = await em.execute(
      `with r as (delete from message_reactions where message_id = ? and user_id = ? and emoji = any(?::text[]) returning message_id)
       update messages set version = version + 1 where id in (select message_id from r) returning id`,
      [messageId, userId, pgTextArray(forms)],
    );
    return rows.length > 0;
  },

  /** Reactions of several messages, per emoji in the order first used, with who reacted. */
  async reactions(em: EntityManager, ids: readonly string[]): Promise<Map<string, ReactionSummary[]>> {
    const out = new Map<string, ReactionSummary[]>();
    if (!ids.length) return out;
    const rows: { message_id: string; emoji: string; user_ids: string[] }[] = await em.execute(
      `select message_id, emoji, array_agg(user_id::text order by created_at, user_id) as user_ids from message_reactions
       where message_id = any(?::uuid[]) group by message_id, emoji order by message_id, min(created_at), emoji`,
      [pgArray(ids)],
    );
    for (const r of rows) {
      let list = out.get(r.message_id);
      if (!list) out.set(r.message_id, (list = []));
      list.push({ emoji: r.emoji, userIds: r.user_ids });
    }
    return out;
  },


  /** What a send with a clientMessageId carried, kept by its first edit or its deletion (see SENT_DIGEST); null before either. */
  async sentDigest(em: EntityManager, id: string): Promise<Buffer | null> {
    const rows: { sent_digest: Buffer | null }[] = await em.execute('select sent_digest from messages where id = ?', [id]);
    return rows[0]?.sent_digest ?? null;
  },

  async byClientId(em: EntityManager, senderId: string, clientMessageId: string): Promise<MessageRow | null> {
    const rows: MessageRow[] = await em.execute(`${SELECT} where m.sender_id = ? and m.client_message_id = ?`, [senderId, clientMessageId]);
    return rows[0] ?? null;
  },

  /** One page of a conversation by keyset on (created_at, id): the same cost at any depth. */
  async page(
    em: EntityManager,
    key: string,
    opts: {
      direction: 'forward' | 'backward';
      cursor: { at: Date; id: string } | null;
      limit: number;
      visibleTo?: PrivateFilter;
      /** Rows only if this user is a member of this group (checked once per statement, not per row). */
      member?: { groupId: string; userId: string };
      /** Leaves out the messages of the users this viewer blocks. */
      hiddenFor?: string;
      /** The conversation is this group's: what its rows share is filled in, not read (GROUP_COLUMNS). */
      groupId?: string;
    },
  ): Promise<MessageRow[]> {
    const forward = opts.direction === 'forward';
    const { cursor } = opts;
    // Without a filter, the conversation (and the cursor) is written as a range of the keyset
    // index rather than `conversation_key = ?`: on a table never analyzed an equality is costed
    // at 0.5% of the rows, and the plan fetched the whole conversation to sort it for one page; a
    // range is costed at a third and read in index order. The page is taken from messages alone,
    // so the joins can't undo that order (its rows are sorted again, a page's worth).
    // The key is a subquery's value (KEY), unknown to the planner: with it written in, a custom plan
    // costed the range from the key's statistics (a big conversation's page at one row), always
    // below the generic plan, and PostgreSQL planned the page on every call (0.17-0.19 ms planning
    // against 0.12 ms executing). Hidden, every plan costs it alike and the generic one is kept.
    const ranged = !opts.visibleTo;
    const params: unknown[] = [];
    let where: string;
    if (ranged) {
      const from = forward && cursor ? { sql: `(m.conversation_key, m.created_at, m.id) > (${KEY}, ?, ?)`, params: [key, cursor.at, cursor.id] } : { sql: `(m.conversation_key, m.created_at) > (${KEY}, '-infinity')`, params: [key] };
      const to = !forward && cursor ? { sql: `(m.conversation_key, m.created_at, m.id) < (${KEY}, ?, ?)`, params: [key, cursor.at, cursor.id] } : { sql: `(m.conversation_key, m.created_at) < (${KEY}, 'infinity')`, params: [key] };
      where = `${from.sql} and ${to.sql}`;
      params.push(...from.params, ...to.params);
    } else {
      where = 'm.conversation_key = ?';
      params.push(key);
    }
    // Replies kept in their thread are not in the timeline (thread.repository pages them).
    where += ' and (m.parent_id is null or m.also_in_conversation)';
    if (opts.member) {
      where += ' and exists (select 1 from group_members gm where gm.group_id = ? and gm.user_id = ?)';
      params.push(opts.member.groupId, opts.member.userId);
    }
    if (opts.hiddenFor) {
      where += ` and ${notBlockedByViewer('m.sender_id')}`;
      params.push(opts.hiddenFor, opts.hiddenFor);
    }
    if (opts.visibleTo) {
      const f = privacy(opts.visibleTo);
      where += ` and ${f.sql}`;
      params.push(...f.params);
    }
    if (cursor && !ranged) {
      where += forward ? ' and (m.created_at, m.id) > (?, ?)' : ' and (m.created_at, m.id) < (?, ?)';
      params.push(cursor.at, cursor.id);
    }
    const order = forward ? 'm.created_at asc, m.id asc' : 'm.created_at desc, m.id desc';
    const limit = limitLiteral(opts.limit + 1);
    // Rows as arrays only outside a transaction (see prepared): there, knex's rows carry what they read.
    const group = opts.groupId && !em.getTransactionContext() ? { key, groupId: opts.groupId } : undefined;
    const columns = group ? GROUP_COLUMNS : COLUMNS;
    const sql = ranged
      ? `select ${columns} from (select * from messages m where ${where} order by m.conversation_key ${forward ? 'asc' : 'desc'}, ${order} limit ${limit}) m
         ${WITH_ROW} order by ${order}`
      : `select ${columns} from messages m ${WITH_ROW} where ${where} order by ${order} limit ${limit}`;
    const rows = await prepared<MessageRow>(em, sql, params, (a) => rowOf(a, group));
    return rows.slice(0, opts.limit + 1);
  },

  async count(em: EntityManager, key: string, visibleTo?: PrivateFilter, hiddenFor?: string): Promise<number> {
    const f = visibleTo ? privacy(visibleTo) : { sql: 'true', params: [] };
    const hidden = hiddenFor ? { sql: ` and ${notBlockedByViewer('m.sender_id')}`, params: [hiddenFor, hiddenFor] } : { sql: '', params: [] };
    const [row] = await em.execute(`select count(*)::int as n from messages m where m.conversation_key = ? and (m.parent_id is null or m.also_in_conversation) and ${f.sql}${hidden.sql}`, [key, ...f.params, ...hidden.params]);
    return row.n;
  },

  /** The conversation an attachment was sent in, for access checks on download. */
  async conversationOfAttachment(em: EntityManager, attachmentId: string): Promise<MessageRow | null> {
    const rows: MessageRow[] = await em.execute(`${SELECT} where m.attachment_id = ? limit 1`, [attachmentId]);
    return rows[0] ?? null;
  },

  async attachmentData(em: EntityManager, id: string): Promise<Attachment | null> {
    return em.findOne(Attachment, { id }, { populate: ['data'] });
  },
};
