import { ArgsType, Field, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { ConnectionType } from '../../shared/graphql/connection';
import type { MessageType } from '../message/message.types';
import { UserType } from '../user/user.types';

export enum ConversationKind {
  GROUP = 'GROUP',
  DIRECT = 'DIRECT',
  PROJECT = 'PROJECT',
}
registerEnumType(ConversationKind, { name: 'ConversationKind' });

/** One conversation as the viewer sees it: what a chat sidebar shows. */
@ObjectType('Conversation', { implements: Node })
export class ConversationType {
  @Field(() => IdScalar, { description: 'The same in every query and event (Message.conversationId, TypingEvent, ReadReceipt).' }) id!: string;
  @Field(() => ConversationKind) kind!: ConversationKind;
  @Field({ description: "The group's name, the project's title, or the peer's display name (else username)." }) title!: string;
  @Field(() => Int, { description: "Messages from others after the viewer's read marker that the viewer may see." }) unreadCount!: number;
  @Field(() => IdScalar, { nullable: true }) lastReadMessageId!: string | null;
  @Field(() => Date, {
    description:
      "What the sidebar is ordered by: the time of the conversation's newest message the viewer may see, else when they joined (a direct conversation: when the two became friends). That is lastMessage's time: a message from a user the viewer blocks moves neither.",
  })
  updatedAt!: Date;
  groupId!: string | null;
  projectId!: string | null;
  peerId!: string | null;
  lastMessageId!: string | null;
  /** The last message when the event that made this row carried it; loaded by id otherwise. */
  lastMessage?: MessageType | null;
  /** Unread mentions when the event that made this row told them; loaded otherwise (see mention.resolver.ts). */
  unreadMentionCount?: number;
  /** The event's count did not hold for this row (a late event, a marker moved since): read it, not the one last told. */
  reloadBadge?: boolean;
  /** The head's seq this instance knew as it made the row: what a count told or read for it is as of, at least (see ThreadService.rememberBadge). */
  badgeSeq?: number;
  /** The viewer's read position the row shows: a badge read for it counts the mentions after it, up to badgeSeq. */
  badgeFrom?: number;
  /** The viewer's mute as their row read it (null: none); asked for otherwise (see mute.resolver.ts). */
  mutedUntil?: Date | null;
}

/** How a client names one conversation (ConversationAccess.resolve checks it). */
@InputType()
export class ConversationInput {
  @Field(() => IdScalar, { nullable: true }) groupId?: string | null;
  @Field(() => IdScalar, { nullable: true, description: 'A direct conversation with this user.' }) userId?: string | null;
  @Field(() => IdScalar, { nullable: true }) projectId?: string | null;
  @Field(() => IdScalar, {
    nullable: true,
    description: "messageAdded only: stream the replies of this thread (its root's id; a message of this conversation, else BAD_USER_INPUT). Without it messageAdded streams the timeline, replies kept in their thread left out. Ignored elsewhere.",
  })
  threadId?: string | null;
}

export const ConversationConnection = ConnectionType('Conversation', ConversationType);

@ArgsType()
export class ConversationsArgs {
  @Field(() => Int, { nullable: true, defaultValue: 20 }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
  @Field(() => Int, { nullable: true }) last?: number | null;
  @Field(() => String, { nullable: true }) before?: string | null;
}

@ObjectType('ReadReceipt')
export class ReadReceiptType {
  @Field(() => IdScalar) conversationId!: string;
  @Field(() => IdScalar) lastReadMessageId!: string;
  @Field(() => Date, { description: 'When the marker moved there.' }) readAt!: Date;
  userId!: string;
}

@ObjectType('TypingEvent')
export class TypingEventType {
  @Field(() => IdScalar) conversationId!: string;
  @Field(() => UserType) user!: UserType;
  @Field() typing!: boolean;
  @Field() privateThread!: boolean;
}

export enum SessionEventKind {
  NEW_LOGIN = 'NEW_LOGIN',
}
registerEnumType(SessionEventKind, { name: 'SessionEventKind' });

@ObjectType('SessionEvent')
export class SessionEventType {
  @Field(() => SessionEventKind) kind!: SessionEventKind;
  @Field(() => Date) at!: Date;
  @Field(() => String, { nullable: true, description: "The new session's User-Agent, as its login request sent it." }) userAgent!: string | null;
}
