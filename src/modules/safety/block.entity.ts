import { Entity, Index, ManyToOne, PrimaryKeyProp, Property, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

/**
 * One user blocking another, private to the blocker: the blocked user is never told. Stored once
 * per (blocker, blocked); the primary key answers "does A block B" and "whom does A block" by index.
 */
@Entity({ tableName: 'user_blocks' })
// "Who blocks B" (B's messages and presence left out of their views): by index too.
@Index({ name: 'user_blocks_blocked', properties: ['blocked'] })
export class UserBlock {
  [PrimaryKeyProp]?: ['blocker', 'blocked'];

  @ManyToOne(() => User, { primary: true, ref: true, deleteRule: 'cascade' })
  blocker!: Ref<User>;

  @ManyToOne(() => User, { primary: true, ref: true, deleteRule: 'cascade' })
  blocked!: Ref<User>;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}
