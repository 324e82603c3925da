import type { EntityManager } from '@mikro-orm/postgresql';
import { limitLiteral, pgArray, pgTextArray, prepared, type Sql } from '../../shared/sql';
import { SELECT as MESSAGE, type MessageRow } from '../message/message.repository';
import { blockedBy, blocksAnyone, notBlockedByViewer } from '../safety/block.repository';
import { headOf, ownOf, type HeadColumns, type HeadState, type MemberColumns, type OwnState } from './conversation.events';

export type ConversationKindValue = 'GROUP' | 'DIRECT' | 'PROJECT';

/** One member's row with its conversation's head, as the sidebar reads it, and the title for that member. */
export interface ConversationRow extends MemberColumns, HeadColumns {
  conversation_key: string;
  kind: ConversationKindValue;
  group_id: string | null;
  project_id: string | null;
  peer_id: string | null;
  read_at: Date | null;
  /** The sidebar's sort key (see SEEN_ACTIVITY). */
  activity_at: Date;
  title: string | null;
  /** Read with the row where asked (a page, one row), so the sidebar costs no further query. */
  last_message?: MessageRow | null;
  /** Unread messages from users the member blocks, left out of their count; null when they block no one. */
  hidden_unread?: number | null;
  /** The member's mute, read with the row (ROWS), so the sidebar's mutedUntil costs no further query. */
  muted_until?: Date | string | null;
}

/** A member's own columns (see ConversationMember), of the row aliased `t`. */
const own = (t: string) =>
  `${t}.user_id, ${t}.joined_at, ${t}.read_seq, ${t}.private_seq, ${t}.private_read, ${t}.last_read_message_id, ${t}.last_read_at, ${t}.private_message_id, ${t}.private_at`;
const HEAD = 'h.seq as head_seq, h.last_message_id as head_message_id, h.activity_at as head_at';
/**
 * When a member joined, in milliseconds as message times are: it orders a conversation without
 * messages, and a cursor (a JavaScript Date) holds no finer time, so a page boundary between two
 * joins of one millisecond would skip a row.
 */
const JOINED = "date_trunc('milliseconds', now())";
/**
 * When a marker moved onto a message (`read_at`): the statement's time, but never before the
 * message's own, which a busy conversation stamps up to a millisecond a message ahead of the clock
 * (a sender's own marker read 1-25 ms before the message it rests on: an outside probe).
 */
const movedOnto = (at: string) => `greatest(now(), ${at})`;
/** The sidebar's order: the newest message the member may see (the head's, or their own private one), else when they joined. */
const ACTIVITY = 'coalesce(greatest(h.activity_at, cm.private_at), cm.joined_at)';
const HEAD_LAST_ID = 'case when h.activity_at is null or cm.private_at > h.activity_at then cm.private_message_id else h.last_message_id end';
/**
 * A member who blocks someone (modules/safety) sees neither the blocked users' messages as the last
 * one nor among the unread: for them (one probe of user_blocks finds no one for everyone else),
 * the newest message they may see from someone not blocked, and the unread ones from the blocked
 * to take off the count. Both read at most BLOCK_SCAN of the conversation's newest messages by its
 * keyset index, whoever sent them, so a blocked user's flood costs a bounded read: beyond it the
 * last message reads as none and the count is not corrected further.
 */
const BLOCK_SCAN = 1000;
/**
 * A message of the timeline, as history pages it: a reply kept in its thread is neither a last
 * message nor unread. Tested on the scan's rows, so the scan stays BLOCK_SCAN rows whoever sent them.
 */
const TIMELINE = (t: string) => `(${t}.parent_id is null or ${t}.also_in_conversation)`;
const BLOCKS = blocksAnyone('cm.user_id');
/** Of the newest message member `cm` may see from someone they don't block: its `column`. */
const VISIBLE_LAST = (column: 'id' | 'created_at') => `(
    select n.${column} from (select m.id, m.sender_id, m.created_at, m.parent_id, m.also_in_conversation from messages m where m.conversation_key = cm.conversation_key
      and (m.recipient_id is null or cm.user_id in (m.sender_id, m.recipient_id)) order by m.created_at desc, m.id desc limit ${BLOCK_SCAN}) n
    where ${TIMELINE('n')} and not ${blockedBy('cm.user_id', 'n.sender_id')} order by n.created_at desc, n.id desc limit 1)`;
const LAST_ID = `case when ${BLOCKS} then ${VISIBLE_LAST('id')} else ${HEAD_LAST_ID} end`;
/**
 * The sidebar's order for a member who blocks someone: their last message's time, else when they
 * joined. The head's, which a blocked user's message moves, put the conversation first and told
 * the blocker they were active (an outside probe).
 */
const BLOCKER_ACTIVITY = `coalesce(${VISIBLE_LAST('created_at')}, cm.joined_at)`;
const SEEN_ACTIVITY = `case when ${BLOCKS} then ${BLOCKER_ACTIVITY} else ${ACTIVITY} end`;
const HIDDEN_UNREAD = `case when ${BLOCKS} then (
    select count(*) from (select m.sender_id, m.parent_id, m.also_in_conversation from messages m where m.conversation_key = cm.conversation_key and (m.recipient_id is null or m.recipient_id = cm.user_id)
      and (cm.last_read_at is null or (m.created_at, m.id) > (cm.last_read_at, cm.last_read_message_id)) order by m.created_at desc, m.id desc limit ${BLOCK_SCAN}) n
    where ${TIMELINE('n')} and ${blockedBy('cm.user_id', 'n.sender_id')})
  end`;
/** The newest timeline message before `m` that `viewer` sees (none by a user they block, nor another pair's private one). */
const visibleBefore = (m: string, viewer: string) =>
  `(select p.id from messages p where p.conversation_key = ${m}.conversation_key and (p.created_at, p.id) < (${m}.created_at, ${m}.id)
     and (p.parent_id is null or p.also_in_conversation) and (p.recipient_id is null or ${viewer} in (p.sender_id, p.recipient_id))
     and not ${blockedBy(viewer, 'p.sender_id')} order by p.created_at desc, p.id desc limit 1)`;
/**
 * Member `cm`'s own columns as they see them: a marker resting on a message of someone they block
 * (read before the block, or marked up to the head since) shows on the newest one before it they
 * see, as others' markers do (receipts). Stored, it stays where it is: the others, the blocked user
 * among them, see it move as anyone's would, and are not told of the block by a marker that stops
 * short of the blocked user's messages. (The blocker was shown an id their history leaves out and
 * markRead refuses: an outside probe.)
 */
const SHOWN_OWN = own('cm').replace(
  'cm.last_read_message_id',
  `case when ${BLOCKS} and exists (select 1 from messages bm where bm.id = cm.last_read_message_id and ${blockedBy('cm.user_id', 'bm.sender_id')})
    then (select ${visibleBefore('bm', 'cm.user_id')} from messages bm where bm.id = cm.last_read_message_id)
    else cm.last_read_message_id end as last_read_message_id`,
);
/** Member rows with their heads, cut to what `where` keeps; `c` outside. */
const ROWS = `select cm.conversation_key, cm.kind, cm.group_id, cm.project_id, cm.peer_id, ${SHOWN_OWN}, cm.read_at, cm.muted_until, ${HEAD},
    ${SEEN_ACTIVITY} as activity_at, ${LAST_ID} as last_message_id, ${HIDDEN_UNREAD}::int as hidden_unread
  from conversation_members cm left join conversation_heads h on h.conversation_key = cm.conversation_key`;
/** The row's name for its member; one probe by primary key, as a subquery so no plan scans a table for it. */
const NAMED = `c.*, coalesce((select g.name from groups g where g.id = c.group_id), (select p.title from projects p where p.id = c.project_id),
  (select coalesce(u.display_name, u.username) from users u where u.id = c.peer_id)) as title`;
/** The row's last message, as history reads it. */
const LAST = `left join lateral (${MESSAGE} where m.id = c.last_message_id) lm on true`;

/** A project message with a recipient (private: seen by its two users only), of the messages aliased `m`. */
/**
 * The newest message of `m`'s conversation before `m` that everyone in it may read, or with
 * `viewer` (a placeholder), that the viewer may: what a marker on a private message shows as to
 * those who may not read it.
 */
const readableBefore = (m: string, viewer?: string) =>
  `(select p.id from messages p where p.conversation_key = ${m}.conversation_key and (p.created_at, p.id) < (${m}.created_at, ${m}.id)
     and (p.recipient_id is null${viewer ? ` or ${viewer} in (p.sender_id, p.recipient_id)` : ''}) order by p.created_at desc, p.id desc limit 1)`;

/** A marker moved by markRead, with what others are told of it when it rests on a private message. */
export type MarkedRow = MemberColumns &
  HeadColumns & {
    read_at: Date | null;
    moved: boolean;
    /** Whether the statement's snapshot had the marker before the message (so it should have moved). */
    would_move: boolean | null;
    /** The marker's message's recipient (a private project message: set) and sender (null when the marker didn't move to a message). */
    marked_recipient_id: string | null;
    marked_sender_id: string | null;
    /** For a private one: the newest message before it that every member may read (null: none). */
    marked_shown_id: string | null;
    /** What the other members saw of the marker before it moved (in a project; null otherwise): the same shown message tells them nothing new. */
    prev_shown_id: string | null;
    /** Whether the member blocks anyone (their row is then read again as they see it: ConversationService.markRead). */
    blocks_anyone: boolean;
  };

/** A member `gm` of group `g` may post now without slow mode's stamp: it is off, or they are exempt (admin, owner). */
const postsFreely = (g: string, gm: string) => `(${g}.slow_mode_seconds = 0 or ${gm}.role = 'ADMIN' or ${g}.owner_id = ${gm}.user_id)`;

/**
 * A batch's senders' rows (their groups', their projects'), locked in (conversation, user) order
 * before any gate reads them (batchGate's first test, an InitPlan, runs this): a batch of several
 * senders took them in its arrival order, and a group's or project's deletion, which takes its
 * members' rows in user order, deadlocked with it (an outside probe: 1-10 a run of deletions under
 * load, some sends answered SERVICE_UNAVAILABLE once their three tries were spent).
 */
export const BATCH_LOCKS = `bl as (
         select 1 from group_members gm where (gm.group_id, gm.user_id) in (select b.group_id, b.sender_id from b where b.group_id is not null)
         order by gm.group_id, gm.user_id for key share
       ), pl as (
         select 1 from project_members pm where (pm.project_id, pm.user_id) in (select b.project_id, b.sender_id from b where b.project_id is not null)
         order by pm.project_id, pm.user_id for key share
       )`;

/**
 * The gate of a batch's message row `b` (group_id, project_id, sender_id), as memberGate gates one
 * without slow mode's stamp: in a group, one by a member who posts freely (a batch does not stamp
 * slow mode: a plain member's message then goes alone); in a project, one by a participant; the
 * member's row read under a key-share lock either way (see memberGate). `offset 0` keeps
 * the test a probe of the member's row per message: a batch's generic plan assumes 10 rows, and
 * with small tables PostgreSQL chose to hash all of group_members instead.
 */
export const batchGate = (b: string) => `(select (select count(*) from bl) + (select count(*) from pl)) >= 0 and (${b}.group_id is null or exists (select 1 from group_members gm join groups gr on gr.id = gm.group_id
            where gm.group_id = ${b}.group_id and gm.user_id = ${b}.sender_id and ${postsFreely('gr', 'gm')} offset 0 for key share of gm))
          and (${b}.project_id is null or exists (select 1 from project_members pm where pm.project_id = ${b}.project_id and pm.user_id = ${b}.sender_id for key share))`;

/**
 * A group send whose membership was not checked before its statement: `g` holds the group's name
 * and owner only if the sender is a member, and the head's insert reads `g`, so otherwise the statement writes nothing and returns no row (the
 * caller then asks why, as an unchecked send would have been told). One round trip instead of two.
 * Slow mode rides on it. With `slow`, `sl` stamps a plain member's slow_sent_at only if their
 * interval has run out (the row lock makes two sends at once take turns, the second finding the
 * stamp), and `g` is empty without that stamp. Without `slow` there is no `sl` (a data-modifying
 * CTE runs whatever reads it: ~25 µs of PostgreSQL's time on every send, slow mode or not), and a
 * plain member of a group in slow mode finds `g` empty: nothing is written, and the caller sends
 * again with `slow` once slow mode lets them (see MessageService.insertOne). A batch's gate is
 * recordBatch's own. `also`: what else the statement checks before it writes (a reply's parent),
 * so that a send refused for it does not start the member's interval. The member's row is read
 * under a key-share lock (or `sl`'s update, a stronger one: a row this statement updated is not
 * locked again, but skipped), as projectGate reads a participant's: a ban or removal committed while the
 * statement waited (for the head's row, behind other sends) leaves `g` empty, and one that comes
 * after waits for the message. Read without it, from the statement's snapshot, a message was stored
 * and delivered after the ban that put its sender out had been answered (an outside probe, 3 of 3).
 */
export function memberGate(groupId: string, senderId: string, slow: boolean, also?: Sql): Sql {
  if (!slow) {
    return {
      text: `g as (select g.name, g.owner_id from groups g join group_members gm on gm.group_id = g.id and gm.user_id = ?
            where g.id = ? and ${postsFreely('g', 'gm')} for key share of gm)`,
      params: [senderId, groupId],
    };
  }
  return {
    text: `sl as (update group_members gm set slow_sent_at = now() from groups s where s.id = ? and s.slow_mode_seconds > 0 and gm.group_id = s.id and gm.user_id = ?
            and gm.role = 'MEMBER' and s.owner_id is distinct from gm.user_id and (gm.slow_sent_at is null or gm.slow_sent_at <= now() - s.slow_mode_seconds * interval '1 second')${also ? ` and ${also.text}` : ''} returning gm.user_id),
          g as (select g.name, g.owner_id from groups g join group_members gm on gm.group_id = g.id and gm.user_id = ?
            where g.id = ? and (exists (select 1 from sl) or (${postsFreely('g', 'gm')}
              and exists (select 1 from group_members k where k.group_id = gm.group_id and k.user_id = gm.user_id for key share))))`,
    params: [groupId, senderId, ...(also?.params ?? []), senderId, groupId],
  };
}
/**
 * A direct message's gate: `g` holds a row only while the two are friends, read under a share
 * lock on their friendship. The check before the statement can be passed by a removeFriend or
 * blockUser committing meanwhile (the message was stored and both sidebar rows came back for two
 * who were no longer friends); with the lock, one that committed first leaves `g` empty (the
 * statement writes nothing: FORBIDDEN), and one that comes after waits for the message and then
 * takes its rows away with the rest of the conversation.
 */
export function friendsGate(senderId: string, recipientId: string, name = 'g'): Sql {
  const [a, b] = senderId < recipientId ? [senderId, recipientId] : [recipientId, senderId];
  return { text: `${name} as (select 1 from friendships where user_a_id = ? and user_b_id = ? for share)`, params: [a, b] };
}

/**
 * A project message's gate, as friendsGate's: `name` holds a row only while the sender (and a
 * private message's recipient) are participants, their rows read under a key-share lock. Checked
 * only before the statement, a removeProjectParticipant committing meanwhile let the removed
 * participant's message be stored and delivered after their removal (a review); with the lock, a
 * removal that committed first leaves it empty (nothing written: the check then says why), and
 * one that comes after waits for the message. A role change does not wait (key share).
 */
export function projectGate(key: string, senderId: string, recipientId: string | null, name = 'g'): Sql {
  const projectId = key.slice(2);
  if (!recipientId) return { text: `${name} as (select 1 from project_members where project_id = ?::uuid and user_id = ?::uuid for key share)`, params: [projectId, senderId] };
  return {
    text: `${name} as (select 1 from (select count(*) as n from (select 1 from project_members where project_id = ?::uuid and user_id in (?::uuid, ?::uuid) for key share) x) y where y.n = 2)`,
    params: [projectId, senderId, recipientId],
  };
}

/** A group send's gate: `slow` stamps a plain member's send for slow mode (see memberGate). */
export interface SendGate {
  groupId: string;
  slow: boolean;
}

/**
 * `leave` of many conversations at once (an account's deletion), as a statement or a CTE: the
 * rows taken in key order. In the order of the user's sidebar index they crossed a batched send's
 * update of its members' sort keys (in key order as its plan goes: heads first, in key order, then
 * each conversation's rows along the primary key), each waiting on the other, when accounts
 * sharing groups were deleted at once (an outside probe: 1-2 runs of 3-6; the send, chosen, ran
 * again after a second).
 */
export function leaveAllOf(userId: string, keys: readonly string[]): Sql {
  return {
    text: `delete from conversation_members cm using (select conversation_key from conversation_members where user_id = ? and conversation_key = any(?::text[])
             order by conversation_key for update) r where cm.user_id = ? and cm.conversation_key = r.conversation_key`,
    params: [userId, pgTextArray(keys), userId],
  };
}

/** What a gated send returns of its group (see memberGate). */
export const GATE_COLUMNS = '(select name from g) as gate_group_name, (select owner_id from g) as gate_owner_id';

const privateOf = (m: string) => `${m}.project_id is not null and ${m}.recipient_id is not null`;

/** Messages a statement of deleteMessages deletes: ~0.1 s each with their cascades. */
const DELETE_CHUNK = 2000;

/**
 * A project member's marker coming to rest on a private message, kept in `marker_landings` (see
 * receipts): the landing, and, when the marker leaves an open message for it, that one with the
 * time its receipt showed, so that the others keep seeing it as they did. Only a marker on a
 * private message needs them: on an open one, it shows as it is. `from`: the member's row before
 * the move; `moved`: whether it moved; `to`: the landing, as (key, user, at, message_id, read_at).
 */
const landings = (from: string, moved: string, to: string) => `insert into marker_landings (conversation_key, user_id, at, message_id, read_at)
    select f.conversation_key, f.user_id, om.created_at, om.id, coalesce(f.read_at, f.last_read_at)
      from ${from} f join messages om on om.id = f.last_read_message_id where om.recipient_id is null and ${moved}
    union all ${to}
    on conflict do nothing`;
/** markRead moves a project member's marker (`u`) onto a private message (`t`), from their row as it was (`cur`). */
const LAND_ON_MARK = landings(
  'cur',
  'exists (select 1 from u) and exists (select 1 from t where t.recipient_id is not null)',
  'select ?::varchar, ?::uuid, t.created_at, t.id, u.read_at from u cross join t where t.recipient_id is not null',
);
/** A private message's send moves its sender's marker onto it (`s`), from their row as it was. */
const LAND_ON_PRIVATE_SEND = `lp as (${landings(
  '(select * from conversation_members where conversation_key = ? and user_id = ?)',
  'exists (select 1 from s)',
  `select ?::varchar, ?::uuid, h.last_at, ?::uuid, ${movedOnto('h.last_at')} from h where exists (select 1 from s)`,
)})`;

export const conversationRepository = {
  /**
   * A new message's bookkeeping, as CTEs of its one insert statement (messageRepository.insert).
   * `before` the message: `h` the head (its row lock orders the conversation's sends; created_at
   * is stamped under it, after the previous message) and, for a private message, `r` its
   * recipient's row. `after`: `s` the sender's row, whose marker moves to the message, and the
   * other members' sort keys: `f` in a group or project, `p` the other row of a direct
   * conversation (its first message creates both).
   * `recipientSeq` and `states` (the changed rows, as sender_state and recipient_state) are
   * expressions over them.
   *
   * Sort keys (see ConversationMember.sortAt): in a conversation of at most `sortFanout` members
   * the message writes every member's key (a private one: its two users'), so the sidebar reads a
   * page by index; a larger one writes the head and the sender's row only, O(1) whatever its size,
   * and its members' keys stay null (the sidebar orders them by their heads). The member count is
   * read bounded (at most sortFanout + 1 index entries); the head remembers whether members' keys
   * may be set, so the message that finds the conversation grown past the bound clears them, once.
   */
  recordMessage(m: {
    id: string;
    key: string;
    kind: ConversationKindValue;
    senderId: string;
    /** Direct: the other user; project: a private message's recipient. */
    recipientId: string | null;
    privateInProject: boolean;
    /** Members up to which every member's sort key is written (SIDEBAR_FANOUT_MAX). */
    sortFanout: number;
    /** A group send: written only if the sender is a member and slow mode lets them (see memberGate). */
    gate?: SendGate;
  }): { before: Sql; after: Sql; recipientSeq: string; states: Sql } {
    const priv = m.privateInProject;
    const direct = m.kind === 'DIRECT';
    // Direct and project sends are always gated in their statement; a group send only when its membership was not checked first (memberGate).
    const gated = !!m.gate || direct || m.kind === 'PROJECT';
    // Small enough that this message writes every member's sort key (two members always are).
    const small: Sql = direct
      ? { text: 'n as (select true as small)', params: [] }
      : { text: 'n as (select count(*) <= ? as small from (select 1 from conversation_members where conversation_key = ? limit ?) x)', params: [m.sortFanout, m.key, m.sortFanout + 1] };
    // A private message is no one else's: the head only orders it (its seq and last message stay).
    // `clearing`: this message found members' keys possibly set in a conversation now too large for them.
    const head = `h as (
      insert into conversation_heads as h (conversation_key, seq, pos, last_message_id, activity_at, last_at, member_sort, sort_cleared_at)
      select ?, ${priv ? '0, 1, null::uuid, null::timestamptz' : '1, 1, ?::uuid, c.t'}, c.t, n.small, case when n.small then null else c.t end
      from (select date_trunc('milliseconds', clock_timestamp()) as t) c, n${gated ? ', g' : ''}
      on conflict (conversation_key) do update set (seq, pos, last_message_id, activity_at, last_at, member_sort, sort_cleared_at) = (
        select h.seq + excluded.seq, h.pos + 1, coalesce(excluded.last_message_id, h.last_message_id), case when excluded.seq = 1 then x.t else h.activity_at end, x.t,
          excluded.member_sort, case when h.member_sort and not excluded.member_sort then x.t else h.sort_cleared_at end
        from (select greatest(date_trunc('milliseconds', clock_timestamp()), h.last_at + interval '1 millisecond') as t) x)
        where h.closed_at is null
      returning seq, pos, last_message_id, activity_at, last_at, member_sort, sort_cleared_at is not distinct from last_at as clearing)`;
    // The sort key of a row this message writes anyway (the sender's, a private message's
    // recipient's): the newest message they may see, this one; null while clearing; else as it was.
    const ownKey = (t: string) => `case when h.member_sort then h.${priv ? 'last_at' : 'activity_at'} when h.clearing then null else ${t}.sort_at end`;
    const gate = m.gate
      ? memberGate(m.gate.groupId, m.senderId, m.gate.slow)
      : direct
        ? friendsGate(m.senderId, m.recipientId!)
        : m.kind === 'PROJECT'
          ? projectGate(m.key, m.senderId, priv ? m.recipientId : null)
          : null;
    const before: Sql = {
      text: `${small.text}, ${gate ? `${gate.text}, ` : ''}${head}`,
      params: [...small.params, ...(gate?.params ?? []), ...(priv ? [m.key] : [m.key, m.id])],
    };
    if (priv) {
      before.text += `, r as (
        update conversation_members cm set private_seq = cm.private_seq + 1, private_message_id = ?, private_at = h.last_at, sort_at = ${ownKey('cm')}
        from h where cm.conversation_key = ? and cm.user_id = ? returning ${own('cm')})`;
      before.params.push(m.id, m.key, m.recipientId);
    }
    // Everyone else's key: the message's time in a small conversation (not for a private message,
    // which no one else sees), null once when it has grown past the bound (rows null already are
    // left unwritten: a large conversation's first message reads its rows once, writes none).
    const clear = 'h.clearing and cm.sort_at is not null';
    const others = `f as (
      update conversation_members cm set sort_at = case when h.clearing then null else h.activity_at end
      from h where cm.conversation_key = ? and cm.user_id <> ? ${priv ? `and cm.user_id <> ? and ${clear}` : `and (h.member_sort or ${clear})`})`;
    const othersParams = priv ? [m.key, m.senderId, m.recipientId] : [m.key, m.senderId];
    let after: Sql;
    if (direct) {
      // The rows exist from the first message; the other one's reads up to the message before it.
      // `p` is an upsert, not an update: it reaches a row that a concurrent first message inserted
      // after this statement's snapshot, which an update would miss, leaving its sort key behind.
      after = {
        text: `s as (
          insert into conversation_members as cm (conversation_key, user_id, kind, peer_id, joined_at, read_seq, last_read_message_id, last_read_at, read_at, sort_at)
          select ?, ?, 'DIRECT', ?, ${JOINED}, h.seq, ?, h.last_at, ${movedOnto('h.last_at')}, h.activity_at from h
          on conflict (conversation_key, user_id) do update set read_seq = excluded.read_seq, last_read_message_id = excluded.last_read_message_id,
            last_read_at = excluded.last_read_at, read_at = excluded.read_at, sort_at = excluded.sort_at
          returning ${own('cm')}
        ), p as (
          insert into conversation_members as cm (conversation_key, user_id, kind, peer_id, joined_at, read_seq, sort_at)
          select ?, ?, 'DIRECT', ?, ${JOINED}, h.seq - 1, h.activity_at from h
          on conflict (conversation_key, user_id) do update set sort_at = excluded.sort_at
          returning ${own('cm')})`,
        params: [m.key, m.senderId, m.recipientId, m.id, m.key, m.recipientId, m.senderId],
      };
    } else {
      after = {
        text: `s as (
          update conversation_members cm set read_seq = h.seq, private_read = cm.private_seq, last_read_message_id = ?, last_read_at = h.last_at, read_at = ${movedOnto('h.last_at')},
            sort_at = ${ownKey('cm')} ${priv ? ', private_message_id = ?, private_at = h.last_at' : ''}
          from h where cm.conversation_key = ? and cm.user_id = ? returning ${own('cm')}
        ), ${others}${priv ? `, ${LAND_ON_PRIVATE_SEND}` : ''}`,
        params: [m.id, ...(priv ? [m.id] : []), m.key, m.senderId, ...othersParams, ...(priv ? [m.key, m.senderId, m.key, m.senderId, m.id] : [])],
      };
    }
    // The other row that changed (a private message's recipient, a direct conversation's other
    // one), so that both users' states travel with the event and neither instance has to read one.
    const other = priv ? '(select row_to_json(r) from r)' : direct ? '(select row_to_json(p) from p)' : 'null::json';
    return {
      before,
      after,
      recipientSeq: priv ? '(select private_seq from r)' : 'null::bigint',
      states: { text: `(select row_to_json(s) from s) as sender_state, ${other} as recipient_state${m.gate ? `, ${GATE_COLUMNS}` : ''}`, params: [] },
    };
  },

  /**
   * recordMessage for open messages of groups and projects written by one statement
   * (messageRepository.insertBatch), any number of them in any number of conversations: its CTE
   * `b` holds them in the order they came (`o`), each with its conversation, so one statement
   * text serves every batch. Per conversation, `bi` numbers its messages (`i` from 1) and `k`
   * holds their count `n` and the last one; its head moves once by n, and the messages take the
   * seqs, positions and milliseconds that as many single sends in a row would; every row ends as
   * they would leave it (each sender's marker on their last message of the conversation; a bound
   * crossed is cleared at the first message's time). `states` gives each message's sender row as
   * it stood right after that message, as a single send's event carries it.
   *
   * A group's messages are gated per sender, as memberGate gates one (`bi` keeps only those of
   * members, and none of a plain member in slow mode: a batch does not stamp it); a message left
   * out is not written and returns no row (it then goes alone and its sender is told why), and
   * the rest are numbered without it. `g` gives a group's name and owner, probed per conversation
   * (`offset 0` keeps the lateral a probe: a batch's generic plan assumes 10 rows, and with 1,000
   * groups PostgreSQL hashed the whole table, 0.06-0.11 ms of a 0.95 ms batch). Heads are taken in key
   * order, so two batches (of two instances) can't wait on each other's heads.
   */
  recordBatch(m: { sortFanout: number }): { before: Sql; after: Sql; states: Sql } {
    const ms = "* interval '1 millisecond'";
    const before: Sql = {
      text: `${BATCH_LOCKS}, bi as (select b.*, row_number() over (partition by b.conversation_key order by b.o) as i from b where ${batchGate('b')}),
        k as (select distinct on (conversation_key) conversation_key, group_id, i as n, id as last_id from bi order by conversation_key, i desc),
        g as (select k.conversation_key, gr.name, gr.owner_id from k cross join lateral (select name, owner_id from groups where id = k.group_id offset 0) gr),
        ok as (select k.conversation_key, k.n, k.last_id,
            (select count(*) from (select 1 from conversation_members cm where cm.conversation_key = k.conversation_key limit ?) x) <= ? as small
          from k),
        h as (
          insert into conversation_heads as h (conversation_key, seq, pos, last_message_id, activity_at, last_at, member_sort, sort_cleared_at)
          select ok.conversation_key, ok.n, ok.n, ok.last_id, c.t + (ok.n - 1) ${ms}, c.t + (ok.n - 1) ${ms}, ok.small, case when ok.small then null else c.t end
          from (select date_trunc('milliseconds', clock_timestamp()) as t) c cross join ok order by ok.conversation_key
          on conflict (conversation_key) do update set (seq, pos, last_message_id, activity_at, last_at, member_sort, sort_cleared_at) = (
            select h.seq + excluded.seq, h.pos + excluded.pos, excluded.last_message_id, x.t + (excluded.seq - 1) ${ms}, x.t + (excluded.seq - 1) ${ms},
              excluded.member_sort, case when h.member_sort and not excluded.member_sort then x.t else h.sort_cleared_at end
            from (select greatest(date_trunc('milliseconds', clock_timestamp()), h.last_at + interval '1 millisecond') as t) x)
            where h.closed_at is null
          returning conversation_key, seq, pos, activity_at, last_at, member_sort, sort_cleared_at),
        hk as (select h.conversation_key, h.seq, h.pos, h.activity_at, h.last_at, h.member_sort, ok.n,
            h.sort_cleared_at is not distinct from h.last_at - (ok.n - 1) ${ms} as clearing
          from h join ok on ok.conversation_key = h.conversation_key)`,
      params: [m.sortFanout + 1, m.sortFanout],
    };
    // Each sender's marker on their last message of each conversation.
    const after: Sql = {
      text: `l as (select distinct on (conversation_key, sender_id) conversation_key, sender_id, id, i from bi order by conversation_key, sender_id, i desc), s as (
          update conversation_members cm set read_seq = h.seq - h.n + l.i, private_read = cm.private_seq, last_read_message_id = l.id,
            last_read_at = h.last_at - (h.n - l.i) ${ms}, read_at = ${movedOnto(`h.last_at - (h.n - l.i) ${ms}`)},
            sort_at = case when h.member_sort then h.activity_at when h.clearing then null else cm.sort_at end
          from hk h join l on l.conversation_key = h.conversation_key where cm.conversation_key = h.conversation_key and cm.user_id = l.sender_id
          returning cm.conversation_key, ${own('cm')}
        ), f as (
          update conversation_members cm set sort_at = case when h.clearing then null else h.activity_at end
          from hk h where cm.conversation_key = h.conversation_key and (h.member_sort or h.clearing and cm.sort_at is not null)
            and not exists (select 1 from bi where bi.conversation_key = h.conversation_key and bi.sender_id = cm.user_id))`,
      params: [],
    };
    const states: Sql = {
      text: `(select row_to_json(x) from (select s.user_id, s.joined_at, m.seq as read_seq, s.private_seq, s.private_read, m.id as last_read_message_id,
          m.created_at as last_read_at, s.private_message_id, s.private_at from s where s.conversation_key = m.conversation_key and s.user_id = m.sender_id) x) as sender_state,
        null::json as recipient_state, (select g.name from g where g.conversation_key = m.conversation_key) as gate_group_name,
        (select g.owner_id from g where g.conversation_key = m.conversation_key) as gate_owner_id`,
      params: [],
    };
    return { before, after, states };
  },

  /**
   * A member's row, read up to the newest message they may see (what came before joining is
   * not unread). Nothing when the row exists. A direct conversation exists once a message was
   * exchanged, and its row comes back with a friendship restored read where the member had read
   * when it ended (dropMembers kept it), or, for one ended before markers were kept, up to their
   * own newest message there, all they surely read. In a project, what they received privately
   * before (a rejoin) stays read.
   */
  async join(em: EntityManager, r: { key: string; userId: string; kind: ConversationKindValue; groupId?: string | null; projectId?: string | null; peerId?: string | null }): Promise<void> {
    const joined: unknown[] = await em.execute(
      `insert into conversation_members as cm (conversation_key, user_id, kind, group_id, project_id, peer_id, joined_at, read_seq, private_seq, private_read,
         last_read_message_id, last_read_at, private_message_id, private_at, read_at)
       select x.key, x.user_id, x.kind, x.group_id, x.project_id, x.peer_id, ${JOINED},
         case when kept.user_id is not null then kept.read_seq when x.kind = 'DIRECT' then coalesce(mine.seq, 0) else coalesce(h.seq, 0) end, coalesce(rs.n, 0), coalesce(rs.n, 0),
         case when kept.user_id is not null then kept.last_read_message_id when x.kind = 'DIRECT' then mine.id
           when h.activity_at is null or pv.created_at > h.activity_at then pv.id else h.last_message_id end,
         case when kept.user_id is not null then kept.last_read_at when x.kind = 'DIRECT' then mine.created_at else greatest(h.activity_at, pv.created_at) end,
         pv.id, pv.created_at, kept.read_at
       from (select ?::varchar as key, ?::uuid as user_id, ?::varchar as kind, ?::uuid as group_id, ?::uuid as project_id, ?::uuid as peer_id) x
       left join conversation_heads h on h.conversation_key = x.key
       left join direct_read_markers kept on x.kind = 'DIRECT' and kept.conversation_key = x.key and kept.user_id = x.user_id
       left join lateral (
         select m.id, m.seq, m.created_at from messages m where x.kind = 'DIRECT' and kept.user_id is null and m.conversation_key = x.key and m.sender_id = x.user_id
           and (m.parent_id is null or m.also_in_conversation)
         order by m.created_at desc, m.id desc limit 1
       ) mine on true
       left join lateral (
         select p.recipient_seq as n from messages p where x.kind = 'PROJECT' and p.conversation_key = x.key and ${privateOf('p')} and p.recipient_id = x.user_id
         order by p.created_at desc, p.id desc limit 1
       ) rs on true
       left join lateral (
         select p.id, p.created_at from messages p where x.kind = 'PROJECT' and p.conversation_key = x.key and ${privateOf('p')}
           and (p.sender_id = x.user_id or p.recipient_id = x.user_id)
         order by p.created_at desc, p.id desc limit 1
       ) pv on true
       where x.kind <> 'DIRECT' or h.seq > 0
       on conflict (conversation_key, user_id) do nothing
       returning 1`,
      [r.key, r.userId, r.kind, r.groupId ?? null, r.projectId ?? null, r.peerId ?? null],
    );
    // A project joined again up to a private message of theirs: its landing, after the head's
    // open message as if the marker had rested there first (what the others see: see receipts).
    if (joined.length && r.kind === 'PROJECT') {
      await em.execute(
        `insert into marker_landings (conversation_key, user_id, at, message_id, read_at)
         select cm.conversation_key, cm.user_id, v.at, v.id, v.read_at
           from conversation_members cm join messages pm on pm.id = cm.last_read_message_id
           left join conversation_heads h on h.conversation_key = cm.conversation_key
           cross join lateral (
             select h.activity_at as at, h.last_message_id as id, h.activity_at as read_at where h.last_message_id is not null
             union all select pm.created_at, pm.id, coalesce(cm.read_at, cm.last_read_at)
           ) v
          where cm.conversation_key = ? and cm.user_id = ? and pm.recipient_id is not null
         on conflict do nothing`,
        [r.key, r.userId],
      );
    }
  },

  async leave(em: EntityManager, key: string, userId: string): Promise<void> {
    await em.execute('delete from conversation_members where conversation_key = ? and user_id = ?', [key, userId]);
  },

  /** Each user's unread messages over all their conversations, as their sidebar counts them (blocked senders' left out). */
  async unreadTotals(em: EntityManager, userIds: string[]): Promise<Map<string, number>> {
    if (!userIds.length) return new Map();
    const rows: { user_id: string; n: number }[] = await em.execute(
      `select cm.user_id, coalesce(sum(greatest(0, greatest(0, h.seq - cm.read_seq) + greatest(0, cm.private_seq - cm.private_read) - coalesce(${HIDDEN_UNREAD}, 0))), 0)::int as n
         from conversation_members cm join conversation_heads h on h.conversation_key = cm.conversation_key
        where cm.user_id = any(?::uuid[]) group by cm.user_id`,
      [pgArray(userIds)],
    );
    return new Map(rows.map((r) => [r.user_id, r.n]));
  },

  /**
   * A group or project being deleted, before its messages go: its head is closed (created closed
   * if it had no message), which waits for the sends holding it, so the deletion's next statements
   * see their messages; a send after it finds the head closed and writes nothing (see the upserts
   * in recordMessage and recordBatch). Then every member's row goes. The closed head stays: a
   * deleted head would let a racing send's upsert open the conversation again.
   */
  async close(em: EntityManager, key: string): Promise<void> {
    await em.execute(
      `insert into conversation_heads (conversation_key, seq, pos, last_at, member_sort, closed_at) values (?, 0, 0, now(), false, now())
       on conflict (conversation_key) do update set closed_at = excluded.closed_at`,
      [key],
    );
    await em.execute('delete from conversation_members where conversation_key = ?', [key]);
  },

  /**
   * A closed conversation's messages and their attachments (their reactions, mentions, pins and
   * thread rows by cascade), DELETE_CHUNK at a time in the caller's transaction. In one statement
   * they ran past the statement timeout from ~300,000 messages (36-47 µs each with their
   * cascades), and such a group could never be deleted: every attempt rolled back (an outside
   * volume probe). Along the conversation's keyset index, each chunk from where the last one
   * ended: from the index's start each time, every chunk read past all the rows deleted before it
   * (dead, but not to this transaction's index scan), a quadratic walk.
   */
  async deleteMessages(em: EntityManager, key: string): Promise<void> {
    let after: { at: string; id: string } = { at: '-infinity', id: '00000000-0000-0000-0000-000000000000' };
    for (;;) {
      const [row]: { n: number; at: string | null; id: string | null }[] = await em.execute(
        `with v as (
           select id, created_at from messages where conversation_key = ? and (created_at, id) > (?::timestamptz, ?::uuid)
           order by created_at, id limit ${DELETE_CHUNK}
         ), m as (delete from messages where id in (select id from v) returning attachment_id),
         a as (delete from attachments where id in (select attachment_id from m))
         select (select count(*)::int from m) as n, l.created_at::text as at, l.id
         from (select 1) one left join lateral (select created_at, id from v order by created_at desc, id desc limit 1) l on true`,
        [key, after.at, after.id],
      );
      if (row.n < DELETE_CHUNK || !row.at || !row.id) return;
      after = { at: row.at, id: row.id };
    }
  },

  /**
   * Every member's row goes, the messages and their head stay (a direct conversation between users
   * no longer friends); their read markers are kept for a friendship restored (join).
   */
  async dropMembers(em: EntityManager, key: string): Promise<void> {
    await em.execute(
      `with gone as (delete from conversation_members where conversation_key = ? returning conversation_key, user_id, read_seq, last_read_message_id, last_read_at, read_at)
       insert into direct_read_markers (conversation_key, user_id, read_seq, last_read_message_id, last_read_at, read_at)
       select * from gone on conflict (conversation_key, user_id) do update set read_seq = excluded.read_seq,
         last_read_message_id = excluded.last_read_message_id, last_read_at = excluded.last_read_at, read_at = excluded.read_at`,
      [key],
    );
  },

  /** The kept read markers of a direct conversation, once its rows are back (join) or its users gone. */
  async forgetKeptMarkers(em: EntityManager, where: { key: string } | { userId: string }): Promise<void> {
    if ('key' in where) await em.execute('delete from direct_read_markers where conversation_key = ?', [where.key]);
    else await em.execute("delete from direct_read_markers where user_id = ? or conversation_key like '%' || ? || '%'", [where.userId, where.userId]);
  },

  /** Account deletion's last step: whatever rows of the user's are left. */
  async dropUser(em: EntityManager, userId: string): Promise<void> {
    await em.execute('delete from conversation_members where user_id = ?', [userId]);
  },

  /**
   * One page of a user's conversations, most recent activity first, by keyset on (activity, key).
   * The page is cut from two index scans of the user's rows, merged: the rows that carry their
   * sort key (conversations of at most SIDEBAR_FANOUT_MAX members), read in order, as many as a
   * page; and the rows of larger conversations (a user is in few), each ordered through its head.
   * So a page costs about the same for a user in 20 conversations or 20,000: the cut probes
   * the heads of the few large conversations only, not one per conversation. Then each of the page's rows is read whole by
   * its key, named and given its last message.
   */
  /**
   * A page of the user's conversations, newest activity first: after `from` (older), or before it
   * when `backward` (newer, fetched nearest first, so read in the opposite order).
   */
  async page(em: EntityManager, userId: string, opts: { from: { at: Date; key: string } | null; backward: boolean; limit: number; inclusive?: boolean }): Promise<ConversationRow[]> {
    // The viewer is a subquery's value, unknown to the planner, as history's key is (see
    // messageRepository.page): with statistics that told users apart, each custom plan costed below
    // the generic one and PostgreSQL planned the page on every call (prepared.test saw 12 custom
    // plans of 12, about 1 ms of planning a page).
    const VIEWER = '(select ?::uuid)';
    const cursor = opts.from ? [opts.from.at, opts.from.key] : [];
    // Inclusive: the cursor's own row too (whether anything lies on its side: see ConversationService.list).
    const [op, dir] = opts.backward ? [opts.inclusive ? '>=' : '>', 'asc'] : [opts.inclusive ? '<=' : '<', 'desc'];
    // Written in, not a parameter: see limitLiteral.
    const limit = limitLiteral(opts.limit + 1);
    // Whether the viewer blocks anyone: tested once a statement, it runs either the two scans or the blocker's.
    const BLOCKER = blocksAnyone(VIEWER);
    const keyed = `select cm.conversation_key, cm.sort_at as activity_at from conversation_members cm
      where not ${BLOCKER} and cm.user_id = ${VIEWER} and cm.sort_at is not null${opts.from ? ` and (cm.sort_at, cm.conversation_key) ${op} (?, ?)` : ''}
      order by cm.sort_at ${dir}, cm.conversation_key ${dir} limit ${limit}`;
    // One head probe per row (the lateral's offset keeps it one, never a scan of all heads).
    const headed = `select cm.conversation_key, ${ACTIVITY} as activity_at from conversation_members cm
      left join lateral (select h.activity_at from conversation_heads h where h.conversation_key = cm.conversation_key offset 0) h on true
      where not ${BLOCKER} and cm.user_id = ${VIEWER} and cm.sort_at is null${opts.from ? ` and (${ACTIVITY}, cm.conversation_key) ${op} (?, ?)` : ''}
      order by 2 ${dir}, 1 ${dir} limit ${limit}`;
    // A viewer who blocks someone (few do): each of their rows ordered by what they see of it, one
    // bounded scan of its newest messages each (see BLOCKER_ACTIVITY).
    const blocker = `select cm.conversation_key, b.activity_at from conversation_members cm
      cross join lateral (select ${BLOCKER_ACTIVITY} as activity_at offset 0) b
      where ${BLOCKER} and cm.user_id = ${VIEWER}${opts.from ? ` and (b.activity_at, cm.conversation_key) ${op} (?, ?)` : ''}
      order by 2 ${dir}, 1 ${dir} limit ${limit}`;
    const cut = `select * from ((${keyed}) union all (${headed}) union all (${blocker})) u order by 2 ${dir}, 1 ${dir} limit ${limit}`;
    // Each row of the page is read whole in one lateral, its name and last message with it: the
    // offset keeps it one per row, planned for one row (index probes), whatever the planner thinks
    // of the cut (left to itself, it hashed every message and user of a small bench database).
    // Prepared: its plan (about as long to make as to run) is made once per connection.
    const rows = await prepared<ConversationRow>(em,
      `select c.* from (${cut}) k cross join lateral (
         select ${NAMED}, row_to_json(lm) as last_message from (${ROWS} where cm.conversation_key = k.conversation_key and cm.user_id = ${VIEWER}) c ${LAST} offset 0
       ) c
       order by c.activity_at ${dir}, c.conversation_key ${dir}`,
      [userId, userId, ...cursor, userId, userId, ...cursor, userId, userId, ...cursor, userId],
    );
    return rows.slice(0, opts.limit + 1);
  },

  async count(em: EntityManager, userId: string): Promise<number> {
    const [row] = await em.execute('select count(*)::int as n from conversation_members where user_id = ?', [userId]);
    return row.n;
  },

  /** `userId`'s rows of the groups and projects they share with `otherId`, the most recently active first, at most `limit`. */
  async sharedRows(em: EntityManager, userId: string, otherId: string, limit: number): Promise<ConversationRow[]> {
    return em.execute(
      `select ${NAMED} from (${ROWS} where cm.user_id = ? and cm.kind <> 'DIRECT'
         and exists (select 1 from conversation_members o where o.conversation_key = cm.conversation_key and o.user_id = ?)
       order by activity_at desc limit ${limitLiteral(limit)}) c`,
      [userId, otherId],
    );
  },

  async row(em: EntityManager, userId: string, key: string): Promise<ConversationRow | null> {
    const rows: ConversationRow[] = await em.execute(
      `select ${NAMED}, row_to_json(lm) as last_message from (${ROWS} where cm.conversation_key = ? and cm.user_id = ?) c ${LAST}`,
      [key, userId],
    );
    return rows[0] ?? null;
  },

  /**
   * The members whose sidebar shows `message` as its last message though the head's is another:
   * those who block the sender of every timeline message after it (LAST_ID), so an edit or a
   * deletion of it reaches their row. Read from the blocks of those senders, not from every member
   * (a lobby's thousands): none when BLOCK_SCAN messages or more came after it.
   */
  async blockersSeeingLast(em: EntityManager, key: string, message: { id: string; created_at: Date | string }, headMessageId: string | null): Promise<string[]> {
    if (!headMessageId) return [];
    // Whoever it is must block the head's sender: one probe, and most edits read no later message.
    const rows: { user_id: string }[] = await em.execute(
      `with after as (select m.sender_id from messages m where exists (select 1 from messages hm join user_blocks ub on ub.blocked_id = hm.sender_id where hm.id = ?)
                        and m.conversation_key = ? and (m.created_at, m.id) > (?, ?) and m.recipient_id is null and ${TIMELINE('m')}
                        order by m.created_at, m.id limit ${BLOCK_SCAN}),
            senders as (select distinct sender_id from after where (select count(*) from after) < ${BLOCK_SCAN})
       select cm.user_id from conversation_members cm left join conversation_heads h on h.conversation_key = cm.conversation_key
       where cm.conversation_key = ? and cm.user_id in (
           select ub.blocker_id from user_blocks ub where ub.blocked_id in (select sender_id from senders)
           group by ub.blocker_id having count(*) = (select count(*) from senders))
         and ${LAST_ID} = ?`,
      [headMessageId, key, message.created_at, message.id, key, message.id],
    );
    return rows.map((r) => r.user_id);
  },

  /** The user's direct conversations, each with its other user and its head. */
  async directsOf(em: EntityManager, userId: string): Promise<{ key: string; peerId: string; head: HeadState | null }[]> {
    const rows: (HeadColumns & { conversation_key: string; peer_id: string })[] = await em.execute(
      `select cm.conversation_key, cm.peer_id, h.seq as head_seq, h.last_message_id as head_message_id, h.activity_at as head_at
       from conversation_members cm left join conversation_heads h on h.conversation_key = cm.conversation_key
       where cm.user_id = ? and cm.kind = 'DIRECT' and cm.peer_id is not null`,
      [userId],
    );
    return rows.map((r) => ({ key: r.conversation_key, peerId: r.peer_id, head: headOf(r) }));
  },

  /** Which of `userIds` are members of conversation `key` (those whose badges an edit or deletion changed, say). */
  async membersAmong(em: EntityManager, key: string, userIds: readonly string[]): Promise<string[]> {
    const rows: { user_id: string }[] = await em.execute('select user_id from conversation_members where conversation_key = ? and user_id = any(?::uuid[])', [key, pgArray(userIds)]);
    return rows.map((r) => r.user_id);
  },

  /** The conversation's head (a rename tells every member, each deriving their row from it); null before its first message. */
  async head(em: EntityManager, key: string): Promise<HeadState | null> {
    const rows: HeadColumns[] = await em.execute(
      'select seq as head_seq, last_message_id as head_message_id, activity_at as head_at from conversation_heads where conversation_key = ?',
      [key],
    );
    return rows[0] ? headOf(rows[0]) : null;
  },

  /** Several members' own states, in one query (key and user id in each pair). */
  async states(em: EntityManager, pairs: readonly { key: string; userId: string }[]): Promise<(OwnState & { key: string; userId: string })[]> {
    if (!pairs.length) return [];
    const rows: (MemberColumns & { conversation_key: string })[] = await em.execute(
      `select cm.conversation_key, ${own('cm')} from unnest(?::text[], ?::uuid[]) as x(key, user_id)
       join conversation_members cm on cm.conversation_key = x.key and cm.user_id = x.user_id`,
      [pgArray(pairs.map((p) => p.key)), pgArray(pairs.map((p) => p.userId))],
    );
    return rows.map((r) => ({ ...ownOf(r), key: r.conversation_key, userId: r.user_id }));
  },

  /**
   * Moves a member's read marker forward to a message (by default the newest one they may see),
   * in one statement and without a lock: the marker's seqs are the message's own (its seq; in a
   * project, the recipient_seq of the member's last private message up to it), fixed when it was
   * sent, and the row's update checks again that the marker moves forward only.
   * Returns the row (moved or not) with the head; null when the user has no row.
   */
  async markRead(
    em: EntityManager,
    key: string,
    userId: string,
    opts: { messageId: string | null; project: boolean },
  ): Promise<MarkedRow | null> {
    const target = opts.messageId
      ? '?::uuid'
      : '(select case when c.head_at is null or c.private_at > c.head_at then c.private_message_id else c.head_message_id end from cur c)';
    const privateRead = opts.project
      ? `case when m.project_id is not null and m.recipient_id = ? then m.recipient_seq else coalesce((
           select p.recipient_seq from messages p where p.conversation_key = m.conversation_key and ${privateOf('p')} and p.recipient_id = ?
             and (p.created_at, p.id) < (m.created_at, m.id) order by p.created_at desc, p.id desc limit 1), 0) end`
      : '0';
    // Only in a project is a message private to some of the members.
    const marked = opts.project
      ? `m.sender_id, m.recipient_id, case when m.recipient_id is not null then ${readableBefore('m')} end as shown_id`
      : 'm.sender_id, null::uuid as recipient_id, null::uuid as shown_id';
    // What the others of a project saw of the marker before it moved: a private message's shown one.
    const prevShown = opts.project
      ? `(select case when pm.recipient_id is not null then ${readableBefore('pm')} else pm.id end from messages pm where pm.id = c.last_read_message_id)`
      : 'null::uuid';
    const run = (): Promise<MarkedRow[]> => em.execute(
      `with cur as (
         select cm.*, ${HEAD} from conversation_members cm left join conversation_heads h on h.conversation_key = cm.conversation_key
         where cm.conversation_key = ? and cm.user_id = ?
       ), t as (
         select m.id, m.created_at, m.seq, ${privateRead} as private_read, ${marked} from messages m where m.id = ${target}
       ), u as (
         update conversation_members cm set read_seq = t.seq, private_read = t.private_read, last_read_message_id = t.id, last_read_at = t.created_at, read_at = ${movedOnto('t.created_at')}
         from t where cm.conversation_key = ? and cm.user_id = ?
           and (cm.last_read_at is null or (cm.last_read_at, cm.last_read_message_id) < (t.created_at, t.id))
         returning ${own('cm')}, cm.read_at
       )${opts.project ? `, lm as (${LAND_ON_MARK})` : ''}
       select x.*, c.head_seq, c.head_message_id, c.head_at,
         t.recipient_id as marked_recipient_id, t.sender_id as marked_sender_id, t.shown_id as marked_shown_id, ${prevShown} as prev_shown_id,
         c.last_read_at is null or (c.last_read_at, c.last_read_message_id) < (t.created_at, t.id) as would_move,
         ${blocksAnyone('?')} as blocks_anyone
       from cur c cross join (
         select ${own('u')}, u.read_at, true as moved from u
         union all select ${own('cur')}, cur.read_at, false from cur where not exists (select 1 from u)
       ) x left join t on true`,
      [key, userId, ...(opts.project ? [userId, userId] : []), ...(opts.messageId ? [opts.messageId] : []), key, userId, ...(opts.project ? [key, userId] : []), userId],
    );
    const rows = await run();
    // Not moved though its snapshot said it would: a concurrent marker moved the row on since (the
    // update waited for it, then found it ahead), and `cur` is the row as it was: read it again, as
    // a new statement sees it. Once: a second run's snapshot follows that commit. (A marker
    // already at the message is answered at once.)
    if (rows[0] && !rows[0].moved && rows[0].would_move) return (await run())[0] ?? null;
    return rows[0] ?? null;
  },

  /**
   * Other members' read markers as `viewerId` may see them, most recent first (at most `limit`),
   * but for users the viewer blocks (their read markers are presence of a kind, see modules/safety).
   * In a project, a marker on a private message the viewer is not party to shows as the newest
   * message before it that both may read (an open one, or one between the two; none: left out), so
   * a receipt never names a message either can't read, nor tells by its time or its place when
   * one was read or sent; and, as in a group, none by a user the viewer blocks (an outside probe:
   * a project's receipts named the blocked user's message).
   */
  async receipts(em: EntityManager, key: string, viewerId: string, limit: number, project: boolean): Promise<{ user_id: string; last_read_message_id: string; read_at: Date }[]> {
    if (!project) {
      // A marker on a message of someone the viewer blocks shows on the newest one before it they
      // see; the marked messages are read only for a viewer who blocks someone.
      return em.execute(
        `select r.user_id, r.id as last_read_message_id, r.read_at from (
           select cm.user_id, cm.last_read_at, coalesce(cm.read_at, cm.last_read_at) as read_at,
             case when ${blocksAnyone('?')} then (
               select case when ${blockedBy('?', 'm.sender_id')} then ${visibleBefore('m', '?')} else m.id end from messages m where m.id = cm.last_read_message_id
             ) else cm.last_read_message_id end as id
           from conversation_members cm
           where cm.conversation_key = ? and cm.user_id <> ? and cm.last_read_message_id is not null and not ${blockedBy('?', 'cm.user_id')}
         ) r where r.id is not null order by r.last_read_at desc nulls last limit ?`,
        [viewerId, viewerId, viewerId, viewerId, key, viewerId, viewerId, limit],
      );
    }
    // Shown on a message before the marker's: since when the marker had reached it, its first
    // landing there or past it (marker_landings; the message's own time for a marker kept from
    // before them), not the time of its last move, which told of a private message. In the order
    // of what is shown, for the same reason.
    return em.execute(
      `select cm.user_id, s.id as last_read_message_id,
         case when s.id = m.id then coalesce(cm.read_at, cm.last_read_at)
           else coalesce((select min(l.read_at) from marker_landings l where l.conversation_key = cm.conversation_key and l.user_id = cm.user_id
             and (l.at, l.message_id) >= (s.created_at, s.id)), s.created_at) end as read_at
       from conversation_members cm join messages m on m.id = cm.last_read_message_id
       cross join lateral (
         select p.id, p.created_at from messages p where p.conversation_key = m.conversation_key and (p.created_at, p.id) <= (m.created_at, m.id)
           and (p.recipient_id is null or (p.sender_id, p.recipient_id) in ((?::uuid, cm.user_id), (cm.user_id, ?::uuid)))
           and ${notBlockedByViewer('p.sender_id')}
           order by p.created_at desc, p.id desc limit 1
       ) s
       where cm.conversation_key = ? and cm.user_id <> ? and not ${blockedBy('?', 'cm.user_id')}
       order by s.created_at desc, s.id desc limit ?`,
      [viewerId, viewerId, viewerId, viewerId, key, viewerId, viewerId, limit],
    );
  },

};
