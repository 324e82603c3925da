import type { ConversationUpdatedPayload, HeadPayload, MemberStatePayload } from '../../shared/pubsub/topics';
import { isoTime, timeOf } from '../../shared/time';
import { parseKey } from './conversation.keys';
import type { ConversationRow } from './conversation.repository';

/** A conversation's head (see ConversationHead), times in ms. */
export interface HeadState {
  seq: number;
  lastMessageId: string | null;
  activityAt: number | null;
}

/** One member's own state (see ConversationMember), times in ms. Every field only grows, a rejoin included. */
export interface OwnState {
  readSeq: number;
  privateSeq: number;
  privateRead: number;
  lastReadMessageId: string | null;
  lastReadAt: number | null;
  privateMessageId: string | null;
  privateAt: number | null;
  joinedAt: number;
}

/** A member's own columns as SQL returns them (bigints as strings; row_to_json gives numbers and ISO strings). */
export interface MemberColumns {
  user_id: string;
  joined_at: Date | string;
  read_seq: string | number;
  private_seq: string | number;
  private_read: string | number;
  last_read_message_id: string | null;
  last_read_at: Date | string | null;
  private_message_id: string | null;
  private_at: Date | string | null;
}

/** A head's columns as SQL returns them next to a member's (all null without a head). */
export interface HeadColumns {
  head_seq: string | number | null;
  head_message_id: string | null;
  head_at: Date | string | null;
}

const ms = (t: Date | string | null): number | null => (t === null ? null : t instanceof Date ? t.getTime() : timeOf(t));
const iso = (t: number | null): string | null => (t === null ? null : isoTime(t));

export function ownOf(r: MemberColumns): OwnState {
  return {
    readSeq: Number(r.read_seq),
    privateSeq: Number(r.private_seq),
    privateRead: Number(r.private_read),
    lastReadMessageId: r.last_read_message_id,
    lastReadAt: ms(r.last_read_at),
    privateMessageId: r.private_message_id,
    privateAt: ms(r.private_at),
    joinedAt: ms(r.joined_at)!,
  };
}

export function headOf(r: HeadColumns): HeadState | null {
  return r.head_seq === null ? null : { seq: Number(r.head_seq), lastMessageId: r.head_message_id, activityAt: ms(r.head_at) };
}

export const headPayload = (h: HeadState | null): HeadPayload | null => h && [h.seq, h.lastMessageId, iso(h.activityAt)];
export const headFromPayload = (h: HeadPayload | null): HeadState | null => h && { seq: h[0], lastMessageId: h[1], activityAt: h[2] === null ? null : Date.parse(h[2]) };

export function ownPayload(s: OwnState): MemberStatePayload {
  return [s.readSeq, s.privateSeq, s.privateRead, s.lastReadMessageId, iso(s.lastReadAt), s.privateMessageId, iso(s.privateAt), iso(s.joinedAt)!];
}

export function ownFromPayload(p: MemberStatePayload): OwnState {
  const [readSeq, privateSeq, privateRead, lastReadMessageId, lastReadAt, privateMessageId, privateAt, joinedAt] = p;
  const at = (t: string | null) => (t === null ? null : Date.parse(t));
  return { readSeq, privateSeq, privateRead, lastReadMessageId, lastReadAt: at(lastReadAt), privateMessageId, privateAt: at(privateAt), joinedAt: Date.parse(joinedAt) };
}

/** (at, id) of a marker or message, in the conversation's order: negative when a comes first. */
function order(aAt: number | null, aId: string | null, bAt: number | null, bId: string | null): number {
  if (aAt === null || bAt === null) return aAt === null ? (bAt === null ? 0 : -1) : 1;
  return aAt - bAt || (aId! < bId! ? -1 : aId! > bId! ? 1 : 0);
}

/**
 * The newer of two copies of one member's state. Every field only grows (markers never move
 * back; a rejoin starts at the head), so copies read or carried at different times merge in any order.
 */
export function newer(a: OwnState, b: OwnState): OwnState {
  const marker = order(a.lastReadAt, a.lastReadMessageId, b.lastReadAt, b.lastReadMessageId) >= 0 ? a : b;
  const own = order(a.privateAt, a.privateMessageId, b.privateAt, b.privateMessageId) >= 0 ? a : b;
  return {
    readSeq: Math.max(a.readSeq, b.readSeq),
    privateSeq: Math.max(a.privateSeq, b.privateSeq),
    privateRead: Math.max(a.privateRead, b.privateRead),
    lastReadMessageId: marker.lastReadMessageId,
    lastReadAt: marker.lastReadAt,
    privateMessageId: own.privateMessageId,
    privateAt: own.privateAt,
    joinedAt: Math.max(a.joinedAt, b.joinedAt),
  };
}

/** What the sidebar shows of a member's row, from the head and their own state. */
export interface View {
  unreadCount: number;
  lastReadMessageId: string | null;
  lastMessageId: string | null;
  /** The newest message the member may see, else when they joined. */
  updatedAt: Date;
}

/**
 * Unread: the messages every member sees after the marker (sending moves the sender's marker to
 * their message and markers never move back, so all of them are from others), plus the member's
 * own private messages received after it. The last message: the head's, or the member's private
 * one when it is newer.
 */
export function view(head: HeadState | null, own: OwnState): View {
  const mine = own.privateAt !== null && (head?.activityAt == null || own.privateAt > head.activityAt);
  const at = mine ? own.privateAt : (head?.activityAt ?? null);
  return {
    unreadCount: Math.max(0, (head?.seq ?? 0) - own.readSeq) + Math.max(0, own.privateSeq - own.privateRead),
    lastReadMessageId: own.lastReadMessageId,
    lastMessageId: mine ? own.privateMessageId : (head?.lastMessageId ?? null),
    updatedAt: new Date(at ?? own.joinedAt),
  };
}

/**
 * One member's own row, to them alone, with their unread mentions as counted now: after a block
 * made or lifted (BlockService), or as they joined a group or project (again: read up to its newest
 * message, so none, and unmuted; `viaUser`, as their instance may not have taken the
 * conversation's channel yet), so that a sidebar open elsewhere drops what it showed before.
 */
export function ownRowUpdate(r: ConversationRow, userId: string, unreadMentions: number, viaUser = false): ConversationUpdatedPayload {
  const own = ownOf(r);
  const update: ConversationUpdatedPayload = {
    conversationKey: r.conversation_key,
    kind: r.kind,
    groupId: r.group_id,
    projectId: r.project_id,
    userIds: null,
    title: r.title ?? '',
    titles: null,
    message: null,
    head: headPayload(headOf(r)),
    members: { [userId]: ownPayload(own) },
    only: [userId],
    mentionCounts: { [userId]: unreadMentions },
    mentionReads: { [userId]: own.readSeq },
  };
  if (viaUser) update.viaUser = true;
  return update;
}

/** A user's new name (`title`), to their friend `peerId` alone: the head, for them to derive the direct row with it. */
export function retitled(key: string, userId: string, peerId: string, title: string, head: HeadState | null): ConversationUpdatedPayload {
  return {
    conversationKey: key,
    kind: 'DIRECT',
    groupId: null,
    projectId: null,
    userIds: [userId, peerId],
    title: null,
    titles: { [peerId]: title },
    message: null,
    head: headPayload(head),
    members: {},
    only: [peerId],
  };
}

/** A group or project renamed (`at`: the rename's place, see titleAt): the head, for every member to derive their row with the new title. */
export function renamed(key: string, kind: 'GROUP' | 'PROJECT', title: string, head: HeadState | null, at: number): ConversationUpdatedPayload {
  const parsed = parseKey(key);
  return {
    conversationKey: key,
    kind,
    groupId: parsed?.kind === 'group' ? parsed.groupId : null,
    projectId: parsed?.kind === 'project' ? parsed.projectId : null,
    userIds: null,
    title,
    titles: null,
    message: null,
    head: headPayload(head),
    members: {},
    only: null,
    titleAt: at,
  };
}
