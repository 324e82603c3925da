import { Entity, Index, ManyToOne, PrimaryKeyProp, Property, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';
import { Message } from './message.entity';

/** A message pinned in its conversation: at most MAX_PINS per conversation (see PinService). */
@Entity({ tableName: 'message_pins' })
@Index({ name: 'message_pins_conversation', properties: ['conversationKey', 'pinnedAt'] })
export class MessagePin {
  [PrimaryKeyProp]?: 'message';

  /** A pin goes with its message. */
  @ManyToOne(() => Message, { primary: true, ref: true, deleteRule: 'cascade' })
  message!: Ref<Message>;

  /** The message's conversation, so a conversation's pins are read by index. */
  @Property({ type: 'string', length: 160 })
  conversationKey!: string;

  @ManyToOne(() => User, { ref: true, nullable: true, deleteRule: 'set null' })
  pinnedBy?: Ref<User> | null;

  @Property({ type: 'datetime' })
  pinnedAt!: Date;
}
