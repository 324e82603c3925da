import { randomUUID } from 'node:crypto';
import { Entity, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

@Entity({ tableName: 'groups' })
// Exactly one lobby, even when several instances start at once.
@Index({ name: 'groups_single_lobby', expression: 'create unique index "groups_single_lobby" on "groups" ("is_lobby") where "is_lobby"' })
@Index({ properties: ['createdAt', 'id'] })
export class Group {
  [OptionalProps]?: 'createdAt' | 'isPrivate' | 'isLobby' | 'memberCount';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'string', length: 100 })
  name!: string;

  /** Null only for the lobby, which no one owns. */
  @ManyToOne(() => User, { ref: true, nullable: true, deleteRule: 'set null' })
  owner?: Ref<User> | null;

  @Property({ type: 'boolean' })
  isPrivate: boolean = false;

  @Property({ type: 'boolean' })
  isLobby: boolean = false;

  /** Kept in step with group_members inside the same transactions. */
  @Property({ type: 'integer' })
  memberCount: number = 0;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}

@Entity({ tableName: 'group_members' })
@Unique({ properties: ['group', 'user'] })
@Index({ properties: ['group', 'joinedAt', 'id'] })
export class GroupMember {
  [OptionalProps]?: 'joinedAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => Group, { ref: true, deleteRule: 'cascade' })
  group!: Ref<Group>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  @Index()
  user!: Ref<User>;

  @Property({ type: 'datetime' })
  joinedAt: Date = new Date();
}
