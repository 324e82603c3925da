import { Entity, Index, ManyToOne, PrimaryKeyProp, Property, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';
import { Message } from './message.entity';

/**
 * A user who follows a thread: its root's author, whoever replied (`replied`), whoever a reply
 * mentioned. `readAt` is their marker in the thread (the newest reply they read; null: none).
 * Written by the reply's statement and markThreadRead (thread.repository.ts).
 */
@Entity({ tableName: 'thread_members' })
@Index({ name: 'thread_members_user', properties: ['user'] })
export class ThreadMember {
  [PrimaryKeyProp]?: ['root', 'user'];

  @ManyToOne(() => Message, { primary: true, ref: true, deleteRule: 'cascade' })
  root!: Ref<Message>;

  @ManyToOne(() => User, { primary: true, ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  @Property({ type: 'string', length: 160 })
  conversationKey!: string;

  @Property({ type: 'datetime' })
  joinedAt!: Date;

  @Property({ type: 'boolean', default: false })
  replied: boolean = false;

  @Property({ type: 'datetime', nullable: true })
  readAt?: Date | null;
}
