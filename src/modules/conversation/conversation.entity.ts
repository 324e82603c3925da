import { Entity, Index, ManyToOne, PrimaryKey, PrimaryKeyProp, Property, type Ref } from '@mikro-orm/core';
import { Message } from '../message/message.entity';

/**
 * One conversation's head: what every member shares, written once per message whatever the
 * number of members. `seq` numbers the messages every member sees (a project's private messages
 * are not among them: see ConversationMember.privateSeq); a member's unread count is the head's
 * seq minus the seq of their read marker, plus their own private messages after it.
 * Sends to the conversation take this row's lock, so they commit one at a time in created_at order.
 */
@Entity({ tableName: 'conversation_heads' })
// The sidebar probes one head per conversation of the user by key: a hash probe reads about half
// the pages of a B-tree descent, and costs sends nothing (the key never changes, so updates stay HOT).
@Index({ name: 'conversation_heads_key_hash', expression: 'create index "conversation_heads_key_hash" on "conversation_heads" using hash ("conversation_key")' })
export class ConversationHead {
  /** As on messages: g:<group>, d:<userA>:<userB>, p:<project>. */
  @PrimaryKey({ type: 'string', length: 160 })
  conversationKey!: string;

  /** Messages every member sees, so far (the seq of the last of them). */
  @Property({ type: 'bigint', default: 0 })
  seq: number = 0;

  /** Every message so far, private ones included (the pos of the last of them): their order on the way to subscribers. */
  @Property({ type: 'bigint', default: 0 })
  pos: number = 0;

  /** The last of them. */
  @Property({ type: 'uuid', nullable: true })
  lastMessageId?: string | null;

  /** Its createdAt: the conversation's activity in the sidebar's order. */
  @Property({ type: 'datetime', nullable: true })
  activityAt?: Date | null;

  /** createdAt of the last message of any kind: the next one is stamped after it, so created_at order is send order. */
  @Property({ type: 'datetime' })
  lastAt!: Date;

  /** The last message found the conversation small (at most SIDEBAR_FANOUT_MAX members): it wrote every member's sortAt. */
  @Property({ type: 'boolean', default: false })
  memberSort: boolean = false;

  /** lastAt of the message that found it grown past the bound and cleared the members' sortAt. */
  @Property({ type: 'datetime', nullable: true })
  sortClearedAt?: Date | null;

  /** Its group or project was deleted: no message is written here again (see conversationRepository.close). */
  @Property({ type: 'datetime', nullable: true })
  closedAt?: Date | null;
}

/**
 * One member's own state in one conversation: when they joined and their read marker, written
 * by their own actions (their sends and markers, a private message to them, a join); others'
 * messages write only its sortAt, and only in a small conversation.
 */
@Entity({ tableName: 'conversation_members' })
// The sidebar's cut reads a user's rows in sortAt order from this index alone (those of large
// conversations, sortAt null, together), with what orders the null ones through their heads.
@Index({
  name: 'conversation_members_user',
  expression: 'create index "conversation_members_user" on "conversation_members" ("user_id", "sort_at", "conversation_key") include ("joined_at", "private_at")',
})
// A user's mutes, loaded with each of their sessions: a few rows, found without reading their others.
@Index({ name: 'conversation_members_muted', expression: 'create index "conversation_members_muted" on "conversation_members" ("user_id") where "muted_until" is not null' })
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

  /** The head's seq at the read marker: the messages every member sees, up to and including it. */
  @Property({ type: 'bigint', default: 0 })
  readSeq: number = 0;

  /** Project: private messages received so far (each one stores its recipient's count as recipient_seq). */
  @Property({ type: 'bigint', default: 0 })
  privateSeq: number = 0;

  /** Project: private messages received up to the read marker. */
  @Property({ type: 'bigint', default: 0 })
  privateRead: number = 0;

  @Property({ type: 'uuid', nullable: true })
  lastReadMessageId?: string | null;

  /** createdAt of the marker's message: the marker's place in the conversation's (created_at, id) order. */
  @Property({ type: 'datetime', nullable: true })
  lastReadAt?: Date | null;

  /** When the marker last moved. */
  @Property({ type: 'datetime', nullable: true })
  readAt?: Date | null;

  /** Project: the newest private message this member sent or received (their own activity). */
  @Property({ type: 'uuid', nullable: true })
  privateMessageId?: string | null;

  @Property({ type: 'datetime', nullable: true })
  privateAt?: Date | null;

  /**
   * The sidebar's sort key, kept in the row while the conversation is small: when set, exactly
   * what the head gives (the newest message this member may see, else when they joined). Null in
   * a conversation larger than SIDEBAR_FANOUT_MAX, and until the first message after a join.
   */
  @Property({ type: 'datetime', nullable: true })
  sortAt?: Date | null;

  /** Muted by this member until then (modules/safety/mute.*): no offline notification but mentions. Null: not muted. */
  @Property({ type: 'datetime', nullable: true })
  mutedUntil?: Date | null;
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
