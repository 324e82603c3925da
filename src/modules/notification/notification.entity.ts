import { Entity, Index, ManyToOne, PrimaryKey, Property, Unique, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

/** What an event is about; the `kind` of its JSON (docs/API.md). */
export enum NotificationKind {
  MESSAGE = 'MESSAGE',
  MENTION = 'MENTION',
  THREAD_REPLY = 'THREAD_REPLY',
  FRIEND_REQUEST = 'FRIEND_REQUEST',
  GROUP_INVITE = 'GROUP_INVITE',
  PROJECT_ACTION = 'PROJECT_ACTION',
}

/** PENDING until the receiver answers 2xx (DELIVERED), WEBHOOK_MAX_AGE passes (DROPPED), or the recipient is connected when it is due (SKIPPED). */
export type OutboxState = 'PENDING' | 'DELIVERED' | 'DROPPED' | 'SKIPPED';

/**
 * One webhook event for one offline recipient: written by the message tail (coalesced per
 * recipient, conversation and kind) or in the transaction of what caused it (a friend request, a
 * project action), and drained by the delivery worker (jobs/webhook.job.ts). Queried with SQL in
 * notification.repository.ts; mapped here so the schema and future migrations know the table.
 */
@Entity({ tableName: 'notification_outbox' })
@Unique({ name: 'notification_outbox_source', properties: ['sourceId', 'recipient'] })
@Index({ name: 'notification_outbox_due', expression: `create index "notification_outbox_due" on "notification_outbox" ("due_at") where "state" = 'PENDING'` })
@Index({
  name: 'notification_outbox_recipient',
  expression: `create index "notification_outbox_recipient" on "notification_outbox" ("recipient_id", "conversation_key", "kind", "created_at") where "state" = 'PENDING'`,
})
@Index({ name: 'notification_outbox_done', expression: `create index "notification_outbox_done" on "notification_outbox" ("done_at") where "state" <> 'PENDING'` })
export class NotificationOutbox {
  /** The event id the receiver deduplicates by. */
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'string', length: 16 })
  kind!: NotificationKind;

  /** An account deleted takes its pending events with it. */
  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  recipient!: Ref<User>;

  /** The conversation (as Conversation.id); null for a friend request. */
  @Property({ type: 'string', length: 160, nullable: true })
  conversationKey?: string | null;

  /** The sender of the newest message it covers, or who acted. */
  @Property({ type: 'uuid', nullable: true })
  senderId?: string | null;

  /** The message, request or action that made it (the first one, when coalesced). */
  @Property({ type: 'uuid' })
  sourceId!: string;

  @Property({ type: 'string', length: 140, nullable: true })
  preview?: string | null;

  /** The message the preview is of (a message event's newest): read again at delivery, edited or deleted meanwhile. */
  @Property({ type: 'uuid', nullable: true })
  previewId?: string | null;

  /** The messages a message's event covers, oldest first (null for other events, and for rows of an earlier release): counted again at delivery for a recipient who blocks someone. */
  @Property({ type: 'uuid[]', nullable: true })
  covered?: string[] | null;

  /** Causes it covers (messages coalesced within WEBHOOK_COALESCE). */
  @Property({ type: 'integer', default: 1 })
  count: number = 1;

  /** When its first cause happened (database clock). */
  @Property({ type: 'datetime' })
  createdAt!: Date;

  /** When its newest cause happened. */
  @Property({ type: 'datetime' })
  lastAt!: Date;

  @Property({ type: 'string', length: 10, default: 'PENDING' })
  state: OutboxState = 'PENDING';

  /** Not sent before: the end of the coalescing window, then each retry's back-off. */
  @Property({ type: 'datetime' })
  dueAt!: Date;

  /** Deliveries started. */
  @Property({ type: 'integer', default: 0 })
  attempts: number = 0;

  /** An instance is delivering it until then; past it (the instance died), another takes it again. */
  @Property({ type: 'datetime', nullable: true })
  leasedUntil?: Date | null;

  /** When it left PENDING. */
  @Property({ type: 'datetime', nullable: true })
  doneAt?: Date | null;
}

/** How far the message tail has read: every message up to (at, id) has been considered. */
@Entity({ tableName: 'notification_cursors' })
export class NotificationCursor {
  @PrimaryKey({ type: 'string', length: 32 })
  name!: string;

  @Property({ type: 'datetime' })
  at!: Date;

  @Property({ type: 'uuid', nullable: true })
  id?: string | null;
}
