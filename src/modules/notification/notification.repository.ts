import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray } from '../../shared/sql';
import { NotificationKind } from './notification.entity';
import { blockedBy, blocksAnyone } from '../safety/block.repository';

/** The message tail's cursor row. */
export const MESSAGES_CURSOR = 'messages';
/** The kinds the message tail writes (see claim), as SQL literals. */
const TAILED_KINDS = [NotificationKind.MESSAGE, NotificationKind.MENTION, NotificationKind.THREAD_REPLY].map((k) => `'${k}'`).join(', ');
/** A row of the cursors' table that says when an instance last started without webhooks (see ensureCursor). */
const OFF_MARK = 'webhooks-off';
/** Sorts before every message id: a cursor (at, NO_ID) stands before every message created at `at`. */
export const NO_ID = '00000000-0000-0000-0000-000000000000';
/** The longest stretch of messages, by created_at, one tail round reads. */
const SPAN_SECONDS = 60;

/** A new message in the tail's window. */
export interface TailMessage {
  id: string;
  created_at: Date;
}

/** One (message, member) pair the tail may notify: everyone the message reaches but its sender. */
export interface Reach {
  message_id: string;
  conversation_key: string;
  sender_id: string;
  recipient_id: string;
  username: string;
  notification_level: string;
  /** The message goes to this recipient alone (direct, or a project's private message). */
  personal: boolean;
  /** A reply that reaches them as someone who follows its thread (THREAD_REPLY). */
  follower: boolean;
  created_at: Date;
  content: string | null;
  file_name: string | null;
}

/** One event to write: a single cause, or several coalesced by the caller. */
export interface NewEvent {
  id: string;
  kind: NotificationKind;
  recipientId: string;
  conversationKey: string | null;
  senderId: string | null;
  sourceId: string;
  preview: string | null;
  /** The message `preview` is of, for a message's event. */
  previewId?: string | null;
  /** The messages a message's event covers, oldest first (see claim). */
  covered?: string[] | null;
  count: number;
  /** When its first and newest causes happened; null: now, by the database's clock. */
  createdAt: Date | null;
  lastAt: Date | null;
}

/** An event claimed for delivery, with what its JSON shows. */
export interface ClaimedEvent {
  id: string;
  kind: NotificationKind;
  recipient_id: string;
  conversation_key: string | null;
  sender_id: string | null;
  sender_username: string | null;
  sender_display_name: string | null;
  preview: string | null;
  count: number;
  created_at: Date;
  /** Milliseconds since the newest thing it tells of (a coalesced event's last message), by the database's clock. */
  age_ms: number;
  attempts: number;
  /** The recipient's account was deleted after the event was written: it is not sent. */
  recipient_gone: boolean;
  /** Whether its preview's message is gone (deleted, or with its group or project); null for a request's or action's event. */
  now_deleted: boolean | null;
  /** The recipient's notification level now, and whether they mute the event's conversation now. */
  now_level: string;
  now_muted: boolean;
  /** Whether the recipient blocks the event's sender now. */
  now_blocked: boolean;
  /**
   * Whether what it tells of no longer concerns the recipient: a conversation they are no longer
   * in (left, removed, banned, unfriended), an invitation or a friend request no longer pending.
   */
  now_outdated: boolean;
  now_preview: string | null;
  /**
   * A MENTION none of whose messages mentions the recipient now (edits took the '@name' back);
   * null for another kind, or an event of an earlier release that lists no messages.
   */
  now_unmentioned: boolean | null;
  /** Whether its preview's message is a reply kept in its thread (told to the thread's followers, not to the conversation). */
  now_thread_only: boolean;
  /**
   * Whether the recipient has read its newest message since: the conversation's read marker for a
   * timeline message, the thread's for a reply (markThreadRead, or a reply of their own).
   */
  now_read: boolean;
}

/** Timestamps come back from raw queries as text: the rows' own fields as Dates. */
function withDates<T extends Record<string, unknown>>(rows: T[], ...fields: (keyof T)[]): T[] {
  for (const r of rows) for (const f of fields) if (r[f] !== null && !(r[f] instanceof Date)) (r as Record<keyof T, unknown>)[f] = new Date(r[f] as string);
  return rows;
}

/**
 * Whether event `c`'s recipient has read message `m` (SQL aliases): the conversation's marker is at
 * or past it (a reply also in the conversation too), or, for a reply, its thread's marker is.
 */
const readByRecipient = (m: string): string =>
  `((${m}.parent_id is null or ${m}.also_in_conversation) and exists (
      select 1 from conversation_members rm where rm.conversation_key = c.conversation_key and rm.user_id = c.recipient_id
         and rm.last_read_at is not null and (${m}.created_at, ${m}.id) <= (rm.last_read_at, rm.last_read_message_id)))
    or (${m}.parent_id is not null and exists (
      select 1 from thread_members tr where tr.root_id = ${m}.parent_id and tr.user_id = c.recipient_id and tr.read_at >= ${m}.created_at))`;

const EVENT_COLUMNS = 'id, kind, recipient_id, conversation_key, sender_id, source_id, preview, count, created_at, last_at, due_at';

/** Every query of the notification module: outbox, cursor, levels. */
export const notificationRepository = {
  async level(em: EntityManager, userId: string): Promise<string | null> {
    const [row]: { notification_level: string }[] = await em.execute('select notification_level from users where id = ? and deleted_at is null', [userId]);
    return row?.notification_level ?? null;
  },

  async setLevel(em: EntityManager, userId: string, level: string): Promise<boolean> {
    const rows: unknown[] = await em.execute('update users set notification_level = ? where id = ? and deleted_at is null returning id', [level, userId]);
    return rows.length > 0;
  },

  /**
   * Creates the cursor at the database's now (what was sent before notifications were on is not
   * announced); and moves it there when an instance ran without them since the tail last passed
   * (OFF_MARK newer than the cursor): else turning webhooks on again announced everything sent
   * while they were off, read messages too (a probe). A mark the tail has passed since (a process
   * without WEBHOOK_URL started while others ran the tail) moves nothing. The time it moved from,
   * if it did.
   */
  async ensureCursor(em: EntityManager, name: string): Promise<Date | null> {
    return em.transactional(async (tem) => {
      const [mark] = withDates<{ at: Date }>(await tem.execute('delete from notification_cursors where name = ? returning at', [OFF_MARK]), 'at');
      let movedFrom: Date | null = null;
      if (mark) {
        const [cursor] = withDates<{ at: Date }>(await tem.execute('select at from notification_cursors where name = ? for update', [name]), 'at');
        if (cursor && cursor.at < mark.at) {
          await tem.execute("update notification_cursors set at = date_trunc('milliseconds', clock_timestamp()), id = null where name = ?", [name]);
          movedFrom = cursor.at;
        }
      }
      await tem.execute("insert into notification_cursors (name, at, id) values (?, date_trunc('milliseconds', clock_timestamp()), null) on conflict (name) do nothing", [name]);
      return movedFrom;
    });
  },

  /** An instance starts without webhooks: what is sent from now on is not for a tail to announce (see ensureCursor). The latest start counts. */
  async markOff(em: EntityManager): Promise<void> {
    await em.execute('insert into notification_cursors (name, at, id) values (?, clock_timestamp(), null) on conflict (name) do update set at = excluded.at', [OFF_MARK]);
  },

  /**
   * The cursor, locked for this transaction; null while another instance's tail holds it (that
   * instance is doing this round: waiting for it would only repeat its work).
   */
  async lockCursor(em: EntityManager, name: string): Promise<{ at: Date; id: string } | null> {
    const [row] = withDates<{ at: Date; id: string | null }>(await em.execute('select at, id from notification_cursors where name = ? for update skip locked', [name]), 'at');
    return row ? { at: row.at, id: row.id ?? NO_ID } : null;
  },

  async moveCursor(em: EntityManager, name: string, to: { at: Date; id: string }): Promise<void> {
    await em.execute('update notification_cursors set at = ?, id = ? where name = ?', [to.at, to.id, name]);
  },

  /**
   * The next span of the message tail: messages after the cursor, created before `until`, oldest
   * first (at most `limit`). `until` is the earlier of `lagSeconds` ago (database clock) and
   * SPAN_SECONDS past the cursor, so a round after a long pause reads one span, not the whole
   * backlog; nothing older than `maxAgeSeconds` is read (notifications were off for longer: their
   * events would be dropped anyway). Literal bounds on created_at let the BRIN index pick the span's
   * block ranges (a volatile clock_timestamp() there could not).
   */
  async newMessages(em: EntityManager, after: { at: Date; id: string }, o: { lagSeconds: number; maxAgeSeconds: number; limit: number }): Promise<{ messages: TailMessage[]; until: Date; caughtUp: boolean; now: Date }> {
    const [b] = withDates<{ lo: Date; until: Date; caught_up: boolean; now: Date }>(
      await em.execute(
        // In whole milliseconds, as created_at and a JavaScript Date hold them: the next round starts exactly where this one ends.
        `select lo, date_trunc('milliseconds', least(lo + make_interval(secs => ?), now() - make_interval(secs => ?))) as until,
                lo + make_interval(secs => ?) >= now() - make_interval(secs => ?) as caught_up, now() as now
           from (select date_trunc('milliseconds', greatest(?::timestamptz, now() - make_interval(secs => ?))) as lo) x`,
        [SPAN_SECONDS, o.lagSeconds, SPAN_SECONDS, o.lagSeconds, after.at, o.maxAgeSeconds],
      ),
      'lo',
      'until',
      'now',
    );
    const messages = withDates<TailMessage & Record<string, unknown>>(
      await em.execute(
        `select id, created_at from messages
          where created_at >= ? and created_at < ? and (created_at, id) > (?, ?)
          order by created_at, id limit ?`,
        [b.lo, b.until, after.at, after.id, o.limit],
      ),
      'created_at',
    );
    return { messages, until: b.until, caughtUp: b.caught_up, now: b.now };
  },

  /**
   * Who each message reaches, its sender left out: a timeline message reaches a group's members, a
   * project's members (only its recipient for a private message), a direct message's recipient; a
   * reply reaches who follows its thread (`follower`: thread_members, and a direct reply's
   * recipient) while they are still members, and everyone too when it was also sent to the conversation.
   * A member counts only from when they joined: the tail reads a message a few seconds after it was
   * sent, and one added meanwhile was told of a message that never reached them (an outside probe). In a group of more than
   * `largeGroup` members only those it mentions and its thread's followers: every plain message of
   * a crowd would notify everyone away. `mentions`: message id -> mentioned user ids, as stored at
   * send time. Deleted messages and accounts, and users whose level is NONE, are left out here
   * already; a recipient reached twice is reached once, as a follower.
   */
  async reach(em: EntityManager, messageIds: string[], mentions: Map<string, string[]>, largeGroup: number): Promise<Reach[]> {
    if (!messageIds.length) return [];
    const named = [...mentions].flatMap(([id, users]) => users.map((user_id) => ({ id, user_id })));
    return withDates<Reach & Record<string, unknown>>(await em.execute(
      `with w0 as (
         select m.id, m.conversation_key, m.sender_id, m.group_id, m.project_id, m.recipient_id, m.created_at, left(m.content, 141) as content, a.file_name,
                m.parent_id, m.parent_id is null or m.also_in_conversation as timeline
           from messages m left join attachments a on a.id = m.attachment_id
          where m.id = any(?::uuid[]) and m.deleted_at is null
       ), large as (
         select g.group_id from (select distinct group_id from w0 where group_id is not null) g
          where (select count(*) from (select 1 from group_members c where c.group_id = g.group_id limit ? + 1) x) > ?
       ), w as (
         select w0.*, w0.group_id in (select group_id from large) as large from w0
       ), named as (
         select n.id, n.user_id from json_to_recordset(?::json) as n(id uuid, user_id uuid)
       ), r as (
         select w.*, gm.user_id as to_id, false as personal, false as follower from w join group_members gm on gm.group_id = w.group_id and gm.joined_at <= w.created_at
          where w.group_id is not null and not w.large and w.timeline
         union all
         select w.*, gm.user_id, false, false from w join named n on n.id = w.id join group_members gm on gm.group_id = w.group_id and gm.user_id = n.user_id and gm.joined_at <= w.created_at where w.large
         union all
         select w.*, pm.user_id, false, false from w join project_members pm on pm.project_id = w.project_id and pm.joined_at <= w.created_at
          where w.project_id is not null and w.recipient_id is null and w.timeline
         union all
         select w.*, w.recipient_id, true, w.parent_id is not null from w where w.recipient_id is not null
         union all
         select w.*, tm.user_id, false, true from w join thread_members tm on tm.root_id = w.parent_id where w.parent_id is not null
            and (w.group_id is null or exists (select 1 from group_members gm where gm.group_id = w.group_id and gm.user_id = tm.user_id and gm.joined_at <= w.created_at))
            and (w.project_id is null or exists (select 1 from project_members pm where pm.project_id = w.project_id and pm.user_id = tm.user_id and pm.joined_at <= w.created_at))
       ), one as (
         select distinct on (r.id, r.to_id) r.* from r order by r.id, r.to_id, r.follower desc, r.personal desc
       )
       select r.id as message_id, r.conversation_key, r.sender_id, r.to_id as recipient_id, u.username, u.notification_level, r.personal, r.follower,
              r.created_at, r.content, r.file_name
         from one r join users u on u.id = r.to_id
        where r.to_id <> r.sender_id and u.deleted_at is null and u.notification_level <> 'NONE'
        order by r.created_at, r.id`,
      [pgArray(messageIds), largeGroup, largeGroup, JSON.stringify(named)],
    ), 'created_at');
  },

  /** Who each of these messages mentions (user ids), as their send (or last edit) stored it. */
  async mentions(em: EntityManager, messageIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!messageIds.length) return out;
    const rows: { message_id: string; user_id: string }[] = await em.execute('select message_id, user_id from message_mentions where message_id = any(?::uuid[])', [pgArray(messageIds)]);
    for (const r of rows) out.set(r.message_id, [...(out.get(r.message_id) ?? []), r.user_id]);
    return out;
  },

  /**
   * Writes events in one statement. Each one first tries to join the recipient's pending event of
   * the same conversation and kind that began less than `coalesceSeconds` before it and was never
   * tried (adding its count, taking its preview and sender); otherwise it is inserted, due
   * `delaySeconds` after it began. A second insert of the same cause for the same recipient is
   * ignored, and so is an event for a user whose level is NONE. The checks on `o` are rechecked on the row's newest version: an event a delivery just
   * took is not joined (the message then gets an event of its own).
   * @returns how many events were inserted.
   */
  async write(em: EntityManager, events: NewEvent[], coalesceSeconds: number, delaySeconds: number): Promise<number> {
    if (!events.length) return 0;
    const rows: unknown[] = await em.execute(
      `with g as (
         select * from json_to_recordset(?::json) as g(id uuid, kind text, recipient_id uuid, conversation_key text, sender_id uuid, source_id uuid, preview text, preview_id uuid, covered uuid[], count int, created_at timestamptz, last_at timestamptz)
       ), n as (
         select g.id, g.kind, g.recipient_id, g.conversation_key, g.sender_id, g.source_id, g.preview, g.preview_id, g.covered, g.count,
                coalesce(g.created_at, clock_timestamp()) as created_at, coalesce(g.last_at, clock_timestamp()) as last_at
           from g join users u on u.id = g.recipient_id where u.notification_level <> 'NONE'
       ), joined as (
         update notification_outbox o set count = o.count + g.count, preview = g.preview, preview_id = g.preview_id, sender_id = g.sender_id, last_at = greatest(o.last_at, g.last_at),
                covered = case when o.covered is null then null else o.covered || g.covered end
           from n g
          where o.id = (select p.id from notification_outbox p
                         where p.state = 'PENDING' and p.recipient_id = g.recipient_id and p.conversation_key = g.conversation_key and p.kind = g.kind
                           and p.attempts = 0 and p.created_at <= g.created_at and p.created_at > g.created_at - make_interval(secs => ?)
                         order by p.created_at desc limit 1)
            and o.state = 'PENDING' and o.attempts = 0 and o.leased_until is null
         returning g.id
       )
       insert into notification_outbox (${EVENT_COLUMNS}, preview_id, covered)
       select g.id, g.kind, g.recipient_id, g.conversation_key, g.sender_id, g.source_id, g.preview, g.count, g.created_at, g.last_at, g.created_at + make_interval(secs => ?), g.preview_id, g.covered
         from n g where g.id not in (select id from joined)
       on conflict (source_id, recipient_id) do nothing
       returning id`,
      [JSON.stringify(events.map((e) => ({ id: e.id, kind: e.kind, recipient_id: e.recipientId, conversation_key: e.conversationKey, sender_id: e.senderId, source_id: e.sourceId, preview: e.preview, preview_id: e.previewId ?? null, covered: e.covered ?? null, count: e.count, created_at: e.createdAt, last_at: e.lastAt }))), coalesceSeconds, delaySeconds],
    );
    return rows.length;
  },

  /**
   * Leases up to `limit` due events for `leaseSeconds`, oldest due first, at most one per recipient:
   * an event waits while an earlier one of its recipient is pending (in order per recipient).
   * SKIP LOCKED: rows another instance is leasing right now are passed over, not waited for.
   */
  async claim(em: EntityManager, limit: number, leaseSeconds: number): Promise<ClaimedEvent[]> {
    return withDates<ClaimedEvent & Record<string, unknown>>(await em.execute(
      `with c as (
         update notification_outbox o set leased_until = clock_timestamp() + make_interval(secs => ?), attempts = o.attempts + 1
          where o.id in (
            select e.id from notification_outbox e
             where e.state = 'PENDING' and e.due_at <= clock_timestamp() and (e.leased_until is null or e.leased_until < clock_timestamp())
               and not exists (select 1 from notification_outbox b where b.state = 'PENDING' and b.recipient_id = e.recipient_id and (b.created_at, b.id) < (e.created_at, e.id))
               -- An event written in its own transaction (a friend request, an invitation, a project
               -- action) waits until the message tail has read past it: the events of messages sent
               -- before it are then written, and go first. Its due time alone left a margin that a
               -- slow tail round under load overran (the suite, 1 run in 4).
               and (e.kind in (${TAILED_KINDS})
                 or e.created_at <= coalesce((select cur.at from notification_cursors cur where cur.name = '${MESSAGES_CURSOR}'), e.created_at))
             order by e.due_at limit ?
             for update skip locked)
         returning o.id, o.kind, o.recipient_id, o.conversation_key, o.sender_id, o.source_id, o.preview, o.preview_id, o.covered, o.count, o.created_at, o.last_at, o.attempts
       ), k as (
         -- The covered messages still news to the recipient, and the newest of them (KEPT): not from a
         -- sender they block, nor read since (on another device, or over HTTP alone, between two
         -- messages of one event: 'count' told of one they had read), their newest (the preview) and
         -- the first one's time (the event's createdAt: it was the time of a message left out).
         -- A MENTION keeps the messages that still name the recipient (an edit took one '@name'
         -- back: its text is no mention, and a muted conversation tells no plain message); when
         -- none does, it goes as what they now are (now_unmentioned), and keeps them all.
         select c.*, kept.n as kept_count, kept.newest as kept_newest, kept.first_at as kept_first_at, um.unmentioned from c
         cross join lateral (select c.kind = 'MENTION' and c.covered is not null
                                    and not exists (select 1 from message_mentions mm where mm.message_id = any(c.covered) and mm.user_id = c.recipient_id) as unmentioned) um
         left join lateral (
           select count(*) filter (where f.kept)::int as n, (array_agg(m.id order by x.k desc) filter (where f.kept))[1] as newest,
                  (array_agg(m.created_at order by x.k) filter (where f.kept))[1] as first_at
             from unnest(c.covered) with ordinality as x(id, k) join messages m on m.id = x.id
             cross join lateral (select coalesce(${readByRecipient('m')}, false) as read) r
             cross join lateral (select not r.read and not (${blocksAnyone('c.recipient_id')} and ${blockedBy('c.recipient_id', 'm.sender_id')})
                                        and (c.kind <> 'MENTION' or um.unmentioned or exists (select 1 from message_mentions mm where mm.message_id = m.id and mm.user_id = c.recipient_id)) as kept) f
           -- No row when nothing was left out (the count and preview stand), nor unless every message
           -- counted is listed (an earlier release joining during a deploy counted one it didn't: sent as counted).
           having c.covered is not null and cardinality(c.covered) = c.count and count(*) filter (where f.kept) < c.count) kept on true
       )
       select c.id, c.kind, c.recipient_id, c.conversation_key, coalesce(pm.sender_id, c.sender_id) as sender_id, c.preview, coalesce(c.kept_count, c.count) as count, coalesce(c.kept_first_at, c.created_at) as created_at,
              (extract(epoch from clock_timestamp() - c.last_at) * 1000)::float8 as age_ms, c.attempts,
              u.username as sender_username, u.display_name as sender_display_name, r.deleted_at is not null as recipient_gone,
              r.notification_level as now_level,
              exists (select 1 from conversation_members mu where mu.conversation_key = c.conversation_key and mu.user_id = c.recipient_id and mu.muted_until > now()) as now_muted,
              case when c.kept_count is not null then c.kept_count = 0 else c.sender_id is not null and ${blockedBy('c.recipient_id', 'c.sender_id')} end as now_blocked,
              case when c.kind = 'FRIEND_REQUEST' then not exists (select 1 from friend_requests fr where fr.id = c.source_id and fr.status = 'PENDING')
                   when c.kind = 'GROUP_INVITE' then not exists (select 1 from group_invites gi where gi.group_id = substr(c.conversation_key, 3)::uuid and gi.user_id = c.recipient_id and gi.created_at <= c.created_at)
                   when c.kind = 'PROJECT_ACTION' or c.conversation_key is null then false
                   when c.conversation_key like 'g:%' then not exists (select 1 from group_members gm where gm.group_id = substr(c.conversation_key, 3)::uuid and gm.user_id = c.recipient_id)
                   when c.conversation_key like 'p:%' then not exists (select 1 from project_members pm where pm.project_id = substr(c.conversation_key, 3)::uuid and pm.user_id = c.recipient_id)
                   else not exists (select 1 from conversation_members cm where cm.conversation_key = c.conversation_key and cm.user_id = c.recipient_id) end as now_outdated,
              case when c.preview_id is not null then pm.id is null or pm.deleted_at is not null end as now_deleted, coalesce(left(pm.content, 141), left(pa.file_name, 141)) as now_preview,
              case when c.kind = 'MENTION' and c.covered is not null then c.unmentioned end as now_unmentioned,
              coalesce(pm.parent_id is not null and not pm.also_in_conversation, false) as now_thread_only,
              coalesce(c.kind in ('MESSAGE', 'MENTION', 'THREAD_REPLY') and (${readByRecipient('pm')}), false) as now_read
         from k c left join messages pm on pm.id = coalesce(c.kept_newest, c.preview_id) left join attachments pa on pa.id = pm.attachment_id
         left join users u on u.id = coalesce(pm.sender_id, c.sender_id) join users r on r.id = c.recipient_id`,
      [leaseSeconds, limit],
    ), 'created_at');
  },

  /**
   * Events written outside the tail (friend requests, invitations, project actions) created in
   * [from, to) and never tried: whom they go to, and how long ago (ms) each was written.
   */
  async writtenBetween(em: EntityManager, from: Date, to: Date): Promise<{ id: string; recipient_id: string; age_ms: number }[]> {
    if (to <= from) return [];
    return em.execute(
      `select id, recipient_id, (extract(epoch from clock_timestamp() - created_at) * 1000)::float8 as age_ms from notification_outbox
        where state = 'PENDING' and due_at >= ? and attempts = 0 and kind in ('FRIEND_REQUEST', 'GROUP_INVITE', 'PROJECT_ACTION') and created_at >= ? and created_at < ?`,
      [from, from, to],
    );
  },

  /** Never-tried events SKIPPED at once (their recipients were connected). */
  async skipUntried(em: EntityManager, ids: string[]): Promise<void> {
    if (ids.length) await em.execute(`update notification_outbox set state = 'SKIPPED', done_at = clock_timestamp() where id = any(?::uuid[]) and state = 'PENDING' and attempts = 0`, [pgArray(ids)]);
  },

  /** Leaves PENDING: DELIVERED, SKIPPED or DROPPED. Only while this instance's lease holds the row. */
  async finish(em: EntityManager, id: string, attempts: number, state: 'DELIVERED' | 'SKIPPED' | 'DROPPED'): Promise<void> {
    await em.execute(`update notification_outbox set state = ?, done_at = clock_timestamp(), leased_until = null where id = ? and state = 'PENDING' and attempts = ?`, [state, id, attempts]);
  },

  /** A failed attempt: due again after `delaySeconds`, the lease given back. */
  async retryLater(em: EntityManager, id: string, attempts: number, delaySeconds: number): Promise<void> {
    await em.execute(
      `update notification_outbox set due_at = clock_timestamp() + make_interval(secs => ?), leased_until = null where id = ? and state = 'PENDING' and attempts = ?`,
      [delaySeconds, id, attempts],
    );
  },

  /** Pending events older than `maxAgeSeconds` become DROPPED (not leased right now); returns how many. */
  async dropExpired(em: EntityManager, maxAgeSeconds: number): Promise<number> {
    const rows: unknown[] = await em.execute(
      `update notification_outbox set state = 'DROPPED', done_at = clock_timestamp()
        where state = 'PENDING' and due_at <= clock_timestamp() and created_at < clock_timestamp() - make_interval(secs => ?)
          and (leased_until is null or leased_until < clock_timestamp())
       returning id`,
      [maxAgeSeconds],
    );
    return rows.length;
  },

  /** Forgets finished events older than `keepSeconds`. */
  async purge(em: EntityManager, keepSeconds: number): Promise<void> {
    await em.execute(`delete from notification_outbox where state <> 'PENDING' and done_at < clock_timestamp() - make_interval(secs => ?)`, [keepSeconds]);
  },
};
