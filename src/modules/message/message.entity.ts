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

/**
 * A message in one conversation. `conversationKey` names the conversation
 * (g:<group>, d:<userA>:<userB>, p:<project>, p:<project>:<userA>:<userB>) so that
 * every kind pages through one keyset index.
 */
@Entity({ tableName: 'messages' })
@Index({ name: 'messages_conversation_keyset', properties: ['conversationKey', 'createdAt', 'id'] })
@Unique({ name: 'messages_sender_client_id', properties: ['sender', 'clientMessageId'] })
export class Message {
  [OptionalProps]?: 'createdAt';

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

  @Property({ type: 'uuid', nullable: true })
  @Index()
  groupId?: string | null;

  @Property({ type: 'uuid', nullable: true })
  projectId?: string | null;

  @Property({ type: 'uuid', nullable: true })
  recipientId?: string | null;

  @Property({ type: 'string', length: 64, nullable: true })
  clientMessageId?: string | null;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();

  @Property({ type: 'datetime', nullable: true })
  editedAt?: Date | null;

  /** A deleted message stays as a tombstone: id, sender and createdAt; content and attachment go. */
  @Property({ type: 'datetime', nullable: true })
  deletedAt?: Date | null;
}
