import type { MessageEventPayload, MessagePayload, ReactionSummary } from '../../shared/pubsub/topics';
import type { MessagePlace } from '../conversation/conversation.access';
import { payloadToUserType, toUserPayload } from '../user/user.mapper';
import type { MessageRow } from './message.repository';
import type { MentionedColumns } from './mention.repository';
import type { ChangedRow } from './thread.repository';
import type { UserType } from '../user/user.types';
import { MessageEventKind, type MessageEventType, type MessageType, type ReactionCountType } from './message.types';
import { dateOf, isoTime } from '../../shared/time';

/** A row of history (with its sender and attachment columns) as the API shows it. */
export function toMessageType(r: MessageRow): MessageType {
  return {
    id: r.id,
    content: r.content,
    createdAt: dateOf(r.created_at),
    clientMessageId: r.client_message_id,
    // A tombstone says nothing of an edit (older releases kept edited_at on deletion).
    editedAt: r.edited_at && !r.deleted_at ? dateOf(r.edited_at) : null,
    deletedAt: r.deleted_at ? dateOf(r.deleted_at) : null,
    attachmentMeta: r.attachment_id ? { id: r.attachment_id, fileName: r.file_name!, mimeType: mediaType(r.mime_type!), size: r.size! } : null,
    senderId: r.sender_id,
    sender: { id: r.sender_id, username: r.sender_username, displayName: r.sender_display_name ?? null, createdAt: dateOf(r.sender_created_at), storedLastSeenAt: null },
    groupId: r.group_id,
    projectId: r.project_id,
    recipientId: r.recipient_id,
    conversationKey: r.conversation_key,
    parentId: r.parent_id ?? null,
    alsoInConversation: !!r.also_in_conversation,
    replyCount: r.reply_count ?? 0,
    lastReplyAt: r.last_reply_at ? dateOf(r.last_reply_at) : null,
  };
}

/** A published message (plain JSON) as the API shows it. */
export function payloadToMessageType(p: MessagePayload): MessageType {
  // The optional fields are added after the literal, not spread into it (see test/hot-path.test.ts).
  const m: MessageType = {
    id: p.id,
    content: p.content,
    createdAt: new Date(p.createdAt),
    clientMessageId: p.clientMessageId,
    editedAt: p.editedAt ? new Date(p.editedAt) : null,
    deletedAt: p.deletedAt ? new Date(p.deletedAt) : null,
    // A new message carries none: it has none.
    reactionList: p.reactions ?? [],
    attachmentMeta: p.attachment,
    senderId: p.senderId,
    sender: p.sender && payloadToUserType(p.sender),
    groupId: p.groupId,
    projectId: p.projectId,
    recipientId: p.recipientId,
    conversationKey: p.conversationKey,
    parentId: p.parentId ?? null,
    alsoInConversation: !!p.alsoInConversation,
    replyCount: p.thread?.replyCount ?? 0,
    lastReplyAt: p.thread?.lastReplyAt ? new Date(p.thread.lastReplyAt) : null,
    // A new message's thread is empty, its mentions are carried: neither costs a subscriber a load.
    participants: p.thread?.participants ? p.thread.participants.map(payloadToUserType) : p.version === undefined ? [] : undefined,
  };
  // A new message is not pinned: a subscription selecting pinnedAt read it from the database once per event, and fell behind the sidebar's rows (an outside probe).
  if (p.pin !== undefined) m.pin = p.pin && { at: new Date(p.pin.at), byId: p.pin.byId };
  else if (p.version === undefined) m.pin = null;
  if (p.mentions) m.mentionList = p.mentions.map(payloadToUserType);
  else if (p.version === undefined) m.mentionList = [];
  return m;
}

/** A mentioned user, or a thread's participant, as a statement returned them. */
export const mentionedUser = (u: MentionedColumns): UserType => ({ id: u.id, username: u.username, displayName: u.display_name, createdAt: new Date(u.created_at), storedLastSeenAt: null });

/** A message as a change left it (see threadRepository.changed): nothing of it is loaded after the commit. */
export function toChangedMessage(r: ChangedRow): MessageType {
  const m = toMessageType(r);
  m.reactionList = r.reaction_list;
  m.mentionList = r.mentioned.map(mentionedUser);
  if (r.participant_list) m.participants = r.participant_list.map(mentionedUser);
  return m;
}

/** What is published of a change to a message: its version, and its mentions even when none (else read where delivered, as they are then). */
export function toChangedPayload(m: MessageType, version: number): MessagePayload {
  return Object.assign(toMessagePayload(m), { version }, m.mentionList ? { mentions: m.mentionList.map(toUserPayload) } : null);
}

/** What is published for a message: ids and ISO dates, never ORM entities. */
export function toMessagePayload(m: MessageType): MessagePayload {
  return {
    id: m.id,
    conversationKey: m.conversationKey,
    senderId: m.senderId,
    sender: m.sender && toUserPayload(m.sender),
    content: m.content,
    attachment: m.attachmentMeta,
    groupId: m.groupId,
    projectId: m.projectId,
    recipientId: m.recipientId,
    clientMessageId: m.clientMessageId,
    createdAt: isoTime(m.createdAt.getTime()),
    editedAt: m.editedAt ? isoTime(m.editedAt.getTime()) : null,
    deletedAt: m.deletedAt ? isoTime(m.deletedAt.getTime()) : null,
    ...(m.reactionList?.length ? { reactions: m.reactionList } : {}),
    ...(m.parentId ? { parentId: m.parentId, alsoInConversation: m.alsoInConversation } : {}),
    ...(m.replyCount ? { thread: { replyCount: m.replyCount, lastReplyAt: m.lastReplyAt && isoTime(m.lastReplyAt.getTime()), ...(m.participants ? { participants: m.participants.map(toUserPayload) } : {}) } } : {}),
    ...(m.mentionList?.length ? { mentions: m.mentionList.map(toUserPayload) } : {}),
  };
}

/** A published edit, deletion or reaction change as the API shows it. */
export function payloadToMessageEventType(p: MessageEventPayload): MessageEventType {
  return { kind: p.kind as MessageEventKind, conversationId: p.message.conversationKey, message: payloadToMessageType(p.message) };
}

/** Per emoji, in the order first used; `reactedByMe` for the viewer (none without one). */
export function toReactionCounts(list: ReactionSummary[], viewerId: string | undefined): ReactionCountType[] {
  return list.map((r) => ({ emoji: r.emoji, count: r.userIds.length, reactedByMe: !!viewerId && r.userIds.includes(viewerId) }));
}

/** The media type alone: a text file stored before it was kept so carries `; charset=utf-8`, which the download sends. */
const mediaType = (mime: string): string => {
  const semi = mime.indexOf(';');
  return semi < 0 ? mime : mime.slice(0, semi);
};

/** Where a stored message was sent, as reading it goes (see ConversationAccess.canRead). */
export function placeOf(r: Pick<MessageRow, 'group_id' | 'project_id' | 'sender_id' | 'recipient_id'>): MessagePlace {
  return { groupId: r.group_id, projectId: r.project_id, senderId: r.sender_id, recipientId: r.recipient_id };
}
