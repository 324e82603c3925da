import { Entity, Index, ManyToOne, PrimaryKeyProp, Property, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';
import { Message } from './message.entity';

/**
 * A member mentioned by a message, as resolved at send (and edit) time. `seq` is the message's
 * place in the timeline, so a mention is unread while it is past the member's read_seq;
 * `inTimeline` is false for a reply kept in its thread (it counts in `threads`, not the sidebar).
 */
@Entity({ tableName: 'message_mentions' })
@Index({ name: 'message_mentions_user', properties: ['user', 'createdAt', 'message'] })
@Index({
  name: 'message_mentions_unread',
  expression: 'create index "message_mentions_unread" on "message_mentions" ("user_id", "conversation_key", "seq") where "in_timeline"',
})
export class MessageMention {
  [PrimaryKeyProp]?: ['message', 'user'];

  @ManyToOne(() => Message, { primary: true, ref: true, deleteRule: 'cascade' })
  message!: Ref<Message>;

  @ManyToOne(() => User, { primary: true, ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  @Property({ type: 'string', length: 160 })
  conversationKey!: string;

  @Property({ type: 'bigint' })
  seq!: number;

  @Property({ type: 'boolean' })
  inTimeline!: boolean;

  @Property({ type: 'datetime' })
  createdAt!: Date;
}
