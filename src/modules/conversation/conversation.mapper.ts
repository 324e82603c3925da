import type { ConversationUpdatedPayload, ReadReceiptPayload, SessionEventPayload, TypingPayload } from '../../shared/pubsub/topics';
import { payloadToMessageType, toMessageType } from '../message/message.mapper';
import { payloadToUserType } from '../user/user.mapper';
import { dateOf } from '../../shared/time';
import type { Conversation } from './conversation.access';
import { headOf, ownOf, view, type HeadState, type OwnState } from './conversation.events';
import type { ConversationRow, conversationRepository } from './conversation.repository';
import { ConversationKind, SessionEventKind, type ConversationType, type ReadReceiptType, type SessionEventType, type TypingEventType } from './conversation.types';

type ReceiptRow = Awaited<ReturnType<(typeof conversationRepository)['receipts']>>[number];

/** Conversation kinds as the API names them. */
export const KINDS = { group: 'GROUP', direct: 'DIRECT', project: 'PROJECT' } as const;

/** A viewer's sidebar row as the API shows it: their own state against the head. */
export function rowToConversation(r: ConversationRow): ConversationType {
  const head = headOf(r);
  const own = ownOf(r);
  const v = view(head, own);
  // A member who blocks someone: the last message, unread count and time as the row read them, blocked senders left out (see conversationRepository).
  if (r.hidden_unread !== undefined && r.hidden_unread !== null) {
    v.lastMessageId = (r as { last_message_id?: string | null }).last_message_id ?? null;
    v.unreadCount = Math.max(0, v.unreadCount - r.hidden_unread);
    if (r.activity_at) v.updatedAt = new Date(r.activity_at);
  }
  // Assigned in turn, not spread into a literal (see test/hot-path.test.ts).
  const c: ConversationType = Object.assign({ id: r.conversation_key, kind: r.kind as ConversationKind, title: r.title ?? '' }, v, { groupId: r.group_id, projectId: r.project_id, peerId: r.peer_id });
  if (r.last_message !== undefined) c.lastMessage = r.last_message && toMessageType(r.last_message);
  if (r.muted_until !== undefined) c.mutedUntil = r.muted_until ? dateOf(r.muted_until) : null;
  c.badgeSeq = head?.seq ?? 0;
  c.badgeFrom = own.readSeq;
  return c;
}

/** The viewer's row in a conversationUpdated event: the event's head with the viewer's own state (see ConversationService.rowFor). */
export function payloadToConversation(viewerId: string, p: ConversationUpdatedPayload, head: HeadState | null, own: OwnState): ConversationType {
  const v = view(head, own);
  // Each member's row of every event: assigned, not spread into a literal (see test/hot-path.test.ts).
  const c: ConversationType = Object.assign(
    { id: p.conversationKey, kind: p.kind as ConversationKind, title: p.titles?.[viewerId] ?? p.title ?? '' },
    v,
    { groupId: p.groupId, projectId: p.projectId, peerId: p.userIds?.find((u) => u !== viewerId) ?? null },
  );
  if (p.message && p.message.id === v.lastMessageId) c.lastMessage = payloadToMessageType(p.message);
  c.badgeSeq = head?.seq ?? 0;
  c.badgeFrom = own.readSeq;
  return Object.assign(c, mentionCountOf(viewerId, p, head, own));
}

/**
 * The viewer's unread mentions when the event tells them: a mentioned member's count travels
 * with it; a message's sender has read everything up to it. Either holds only as of the event:
 * while no newer message is known here (a late event's count misses the newer ones' mentions) and
 * the viewer's marker stands where it was counted from. Otherwise the count is read (`reloadBadge`:
 * not the one last told, which may be as old), or loaded if asked when the event says nothing.
 */
function mentionCountOf(viewerId: string, p: ConversationUpdatedPayload, head: HeadState | null, own: OwnState): Pick<ConversationType, 'unreadMentionCount' | 'reloadBadge'> {
  const n = p.mentionCounts?.[viewerId];
  const sender = !!p.message && !p.lastMessageOnly && p.message.senderId === viewerId && !!p.members[viewerId];
  if (n === undefined && !sender) return {};
  // Counted while another send committed (see mentionRepository.onSend): read again.
  if (n !== undefined && n < 0) return { reloadBadge: true };
  const current = !!p.head && !!head && head.seq === p.head[0] && (p.mentionReads?.[viewerId] ?? own.readSeq) === own.readSeq;
  if (!current) return { reloadBadge: true };
  return { unreadMentionCount: n ?? 0 };
}

/**
 * A conversation the viewer has no row of (a direct one with no message yet): empty, updated when
 * the two became friends (as of now, which moved on every call, where that is not known).
 */
export function emptyConversation(conv: Conversation): ConversationType {
  return {
    id: conv.key,
    kind: KINDS[conv.kind] as ConversationKind,
    title: conv.title,
    unreadCount: 0,
    lastReadMessageId: null,
    updatedAt: conv.since ?? new Date(),
    groupId: conv.groupId,
    projectId: conv.projectId,
    peerId: conv.peerId,
    lastMessageId: null,
    lastMessage: null,
    // No message: an empty span, no mention.
    badgeSeq: 0,
    badgeFrom: 0,
  };
}

export function toReadReceiptType(conversationKey: string, r: ReceiptRow): ReadReceiptType {
  return { conversationId: conversationKey, userId: r.user_id, lastReadMessageId: r.last_read_message_id, readAt: new Date(r.read_at) };
}

export function payloadToReadReceiptType(p: ReadReceiptPayload): ReadReceiptType {
  return { conversationId: p.conversationKey, userId: p.userId, lastReadMessageId: p.lastReadMessageId, readAt: new Date(p.readAt) };
}

export function payloadToTypingEventType(p: TypingPayload): TypingEventType {
  return { conversationId: p.conversationKey, typing: p.typing, user: payloadToUserType(p.user), privateThread: !!p.only };
}

export function payloadToSessionEventType(p: SessionEventPayload): SessionEventType {
  return { kind: p.kind as SessionEventKind, at: new Date(p.at), userAgent: p.userAgent };
}
