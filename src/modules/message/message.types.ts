import type { UserType } from '../user/user.types';
import { Field, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { PageInfo, type LazyCount } from '../../shared/graphql/connection';
import type { AttachmentPayload, ReactionSummary } from '../../shared/pubsub/topics';

@ObjectType('Attachment')
export class AttachmentType {
  @Field(() => IdScalar) id!: string;
  @Field() fileName!: string;
  @Field() mimeType!: string;
  @Field(() => Int, { description: 'Decoded size in bytes.' }) size!: number;
}

@ObjectType('Message', { implements: Node })
export class MessageType {
  @Field(() => IdScalar) id!: string;
  @Field(() => String, { nullable: true }) content!: string | null;
  @Field(() => Date) createdAt!: Date;
  @Field(() => String, { nullable: true }) clientMessageId!: string | null;
  @Field(() => Date, { nullable: true }) editedAt!: Date | null;
  @Field(() => Date, { nullable: true, description: 'A deleted message keeps its id, sender and createdAt (and its place in a thread: parentId, and as a root its replies, replyCount, lastReplyAt and threadParticipants); content and attachment become null, reactions, mentions and its pin go.' })
  deletedAt!: Date | null;
  /** Reactions as an event carried them (a new message has none); loaded when absent. */
  reactionList?: ReactionSummary[];
  attachmentMeta!: AttachmentPayload | null;
  senderId!: string;
  /** The sender as read with the message (history) or carried by the event (subscriptions). */
  sender?: UserType;
  groupId!: string | null;
  projectId!: string | null;
  recipientId!: string | null;
  conversationKey!: string;
  /** The pin as a PINNED or UNPINNED event carried it (null: none); loaded when absent (see pin.resolver.ts). */
  pin?: { at: Date; byId: string | null } | null;
  parentId!: string | null;
  alsoInConversation!: boolean;
  replyCount!: number;
  lastReplyAt!: Date | null;
  /** The thread's first participants as a send or an event carried them; loaded when absent (see thread.resolver.ts). */
  participants?: UserType[];
  /** Whether the viewer follows its thread and has replies there to read, as `threads` read it; loaded when absent (see thread.resolver.ts). */
  hasUnreadReplies?: boolean;
  /** The mentioned users as a send or an event carried them; loaded when absent (see mention.resolver.ts). */
  mentionList?: UserType[];
}

@ObjectType('MessageEdge')
export class MessageEdge {
  @Field() cursor!: string;
  @Field(() => MessageType) node!: MessageType;
}

/** Edges always oldest first; totalCount is counted only when a client asks for it (its field resolver calls it). */
@ObjectType('MessageConnection')
export class MessageConnection {
  @Field(() => [MessageEdge]) edges!: MessageEdge[];
  @Field(() => PageInfo) pageInfo!: PageInfo;
  totalCount!: LazyCount;
}

@InputType()
export class AttachmentInput {
  @Field({ description: 'txt pdf png jpg jpeg gif doc' }) fileName!: string;
  @Field() base64!: string;
}

@InputType()
export class SendMessageInput {
  @Field(() => IdScalar, { nullable: true }) groupId?: string | null;
  @Field(() => IdScalar, { nullable: true, description: 'Direct message; with projectId, a private message inside the project.' }) toUserId?: string | null;
  @Field(() => IdScalar, { nullable: true }) projectId?: string | null;
  @Field(() => String, { nullable: true }) content?: string | null;
  @Field(() => AttachmentInput, { nullable: true }) attachment?: AttachmentInput | null;
  @Field(() => String, { nullable: true, description: 'Idempotency key: a retry returns the first message, never a duplicate.' })
  clientMessageId?: string | null;
  @Field(() => IdScalar, {
    nullable: true,
    description:
      'Reply in the thread of this message, which must be a message of the conversation named (else BAD_USER_INPUT, as for a deleted one or a private project message); a reply to a reply joins its root\'s thread.',
  })
  parentId?: string | null;
  @Field(() => Boolean, {
    nullable: true,
    defaultValue: false,
    description: "With parentId: the reply shows in the conversation's history and sidebar too (Slack's \"also send to channel\"). Otherwise it stays in its thread.",
  })
  alsoInConversation?: boolean | null;
}

@ObjectType('ReactionCount')
export class ReactionCountType {
  @Field() emoji!: string;
  @Field(() => Int) count!: number;
  @Field() reactedByMe!: boolean;
}

export enum MessageEventKind {
  EDITED = 'EDITED',
  DELETED = 'DELETED',
  REACTIONS_CHANGED = 'REACTIONS_CHANGED',
  PINNED = 'PINNED',
  UNPINNED = 'UNPINNED',
  THREAD_UPDATED = 'THREAD_UPDATED',
}
registerEnumType(MessageEventKind, {
  name: 'MessageEventKind',
  valuesConfig: { THREAD_UPDATED: { description: "A reply arrived in the message's thread: its replyCount, lastReplyAt and threadParticipants as they are now." } },
});

@ObjectType('MessageEvent')
export class MessageEventType {
  @Field(() => MessageEventKind) kind!: MessageEventKind;
  @Field(() => IdScalar) conversationId!: string;
  @Field(() => MessageType) message!: MessageType;
}
