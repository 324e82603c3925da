import { randomUUID } from 'node:crypto';
import { Entity, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

/** File bytes live here, apart from messages, and are loaded only on demand (lazy). */
@Entity({ tableName: 'attachments' })
export class Attachment {
  [OptionalProps]?: 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'string', length: 255 })
  fileName!: string;

  @Property({ type: 'string', length: 100 })
  mimeType!: string;

  @Property({ type: 'integer' })
  size!: number;

  @Property({ type: 'blob', lazy: true })
  data!: Buffer;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}

/** Every ASCII punctuation mark but '?' (a bind parameter's mark to the driver; the parser reads it as a space already). */
export const SEARCH_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>@[\\]^_`{|}~";

/**
 * Search's words of a text column, as its index reads them (Migration20261126150000_SearchRuns):
 * every ASCII punctuation mark as a space, so that the index's words are runs of letters and digits
 * as the query's are (PostgreSQL's parser keeps `3.14`, `2024-01-05` or `a@b.org` whole, and takes
 * `<a few words>` for a tag and drops them).
 */
export function searchVector(column: string): string {
  return `to_tsvector('parley_search'::regconfig, translate(${column}, '${SEARCH_PUNCTUATION.replace(/'/g, "''")}', '${' '.repeat(SEARCH_PUNCTUATION.length)}'))`;
}

/**
 * A message in one conversation. `conversationKey` names the conversation
 * (see conversation.keys.ts: g:<group>, d:<userA>:<userB>, p:<project>; a project's private
 * messages share their project's key and carry a recipient) so that every kind pages through one
 * keyset index.
 */
@Entity({ tableName: 'messages' })
@Index({ name: 'messages_conversation_keyset', properties: ['conversationKey', 'createdAt', 'id'] })
@Index({
  name: 'messages_private_inbox',
  expression:
    'create index "messages_private_inbox" on "messages" ("conversation_key", "recipient_id", "created_at", "id") where "project_id" is not null and "recipient_id" is not null',
})
// The notification tail reads new messages by created_at; rows arrive in that order, so BRIN serves it at almost no cost to a send.
@Index({ name: 'messages_created_at_brin', expression: 'create index "messages_created_at_brin" on "messages" using brin ("created_at") with (pages_per_range = 32)' })
@Index({ name: 'messages_thread', expression: 'create index "messages_thread" on "messages" ("parent_id", "created_at", "id") where "parent_id" is not null' })
@Index({ name: 'messages_search_runs', expression: `create index "messages_search_runs" on "messages" using gin (${searchVector('"content"')}) where "content" is not null` })
@Unique({ name: 'messages_sender_client_id', properties: ['sender', 'clientMessageId'] })
export class Message {
  [OptionalProps]?: 'createdAt' | 'alsoInConversation' | 'replyCount';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'string', length: 160 })
  conversationKey!: string;

  @ManyToOne(() => User, { ref: true })
  sender!: Ref<User>;

  @Property({ type: 'text', nullable: true })
  content?: string | null;

  @ManyToOne(() => Attachment, { ref: true, nullable: true })
  attachment?: Ref<Attachment> | null;

  /** Not indexed: a group's messages are found through their conversation_key (see Migration20261130030000_DropMessagesGroupIndex). */
  @Property({ type: 'uuid', nullable: true })
  groupId?: string | null;

  @Property({ type: 'uuid', nullable: true })
  projectId?: string | null;

  @Property({ type: 'uuid', nullable: true })
  recipientId?: string | null;

  @Property({ type: 'string', length: 64, nullable: true })
  clientMessageId?: string | null;

  /** With a clientMessageId, once edited or deleted: what the send carried (`sentDigest`), which its retries must match. */
  @Property({ type: 'blob', nullable: true, lazy: true })
  sentDigest?: Buffer | null;

  /**
   * Its place among the messages every member of the conversation sees (ConversationHead.seq
   * when it was sent); a project's private message, which is not one of them, holds the seq of
   * the last one before it.
   */
  @Property({ type: 'bigint' })
  seq!: number;

  /** A project's private message: how many private messages its recipient had received in the project, this one included. */
  @Property({ type: 'bigint', nullable: true })
  recipientSeq?: number | null;

  /** Its position among all its conversation's messages (the head's pos); none for those stored before positions. */
  @Property({ type: 'bigint', nullable: true })
  pos?: number | null;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();

  @Property({ type: 'datetime', nullable: true })
  editedAt?: Date | null;

  /** A deleted message stays as a tombstone: id, sender and createdAt; content and attachment go. */
  @Property({ type: 'datetime', nullable: true })
  deletedAt?: Date | null;

  /** A thread's reply: its root (never another reply). */
  @Property({ type: 'uuid', nullable: true })
  parentId?: string | null;

  /** A reply also shown in the conversation's timeline (history, the sidebar); a plain reply stays in its thread. */
  @Property({ type: 'boolean', default: false })
  alsoInConversation: boolean = false;

  /** A root's replies, counted by each reply's statement. */
  @Property({ type: 'integer', default: 0 })
  replyCount: number = 0;

  @Property({ type: 'datetime', nullable: true })
  lastReplyAt?: Date | null;

  /** One more with each edit, deletion and reaction change: events carry it, and a receiver drops an older copy. */
  @Property({ type: 'integer', default: 0 })
  version: number = 0;
}
