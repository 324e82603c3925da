import { Entity, Index, ManyToOne, PrimaryKey, PrimaryKeyProp, Property, type Ref } from '@mikro-orm/core';
import { Message } from '../message/message.entity';

/**
 * One member's row of one conversation: what the sidebar shows, kept current in the
 * transactions that change it (a message, a read marker, a join or leave), so that a page of
 * `conversations` reads these rows by one index and never counts messages.
 */
@Entity({ tableName: 'conversation_members' })
@Index({ name: 'conversation_members_activity', properties: ['userId', 'activityAt', 'conversationKey'] })
export class ConversationMember {
  [PrimaryKeyProp]?: ['conversationKey', 'userId'];

  /** As on messages: g:<group>, d:<userA>:<userB>, p:<project>. */
  @PrimaryKey({ type: 'string', length: 160 })
  conversationKey!: string;

  @PrimaryKey({ type: 'uuid' })
  userId!: string;

  /** GROUP, DIRECT or PROJECT. */
  @Property({ type: 'string', length: 16 })
  kind!: string;

  @Property({ type: 'uuid', nullable: true })
  groupId?: string | null;

  @Property({ type: 'uuid', nullable: true })
  projectId?: string | null;

  /** Direct: the other user. */
  @Property({ type: 'uuid', nullable: true })
  peerId?: string | null;

  @Property({ type: 'datetime' })
  joinedAt!: Date;

  /** The sort key: the time of the newest message this member may see, else when they joined. */
  @Property({ type: 'datetime' })
  activityAt!: Date;

  @Property({ type: 'uuid', nullable: true })
  lastMessageId?: string | null;

  /** Messages from others after the read marker that this member may see. */
  @Property({ type: 'integer', default: 0 })
  unreadCount: number = 0;

  @Property({ type: 'uuid', nullable: true })
  lastReadMessageId?: string | null;

  /** createdAt of the marker's message: the marker's place in the conversation's (created_at, id) order. */
  @Property({ type: 'datetime', nullable: true })
  lastReadAt?: Date | null;

  /** When the marker last moved. */
  @Property({ type: 'datetime', nullable: true })
  readAt?: Date | null;
}

/** One user's reaction to one message; a message holds each (user, emoji) once. */
@Entity({ tableName: 'message_reactions' })
export class MessageReaction {
  [PrimaryKeyProp]?: ['message', 'userId', 'emoji'];

  /** Reactions go with their message (a group or project deleted, say). */
  @ManyToOne(() => Message, { primary: true, ref: true, deleteRule: 'cascade' })
  message!: Ref<Message>;

  @PrimaryKey({ type: 'uuid' })
  userId!: string;

  @PrimaryKey({ type: 'string', length: 64 })
  emoji!: string;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}
