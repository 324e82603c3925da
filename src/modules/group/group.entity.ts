import { randomUUID } from 'node:crypto';
import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, PrimaryKeyProp, Property, Unique, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

@Entity({ tableName: 'groups' })
// Exactly one lobby, even when several instances start at once.
@Index({ name: 'groups_single_lobby', expression: 'create unique index "groups_single_lobby" on "groups" ("is_lobby") where "is_lobby"' })
// groups(search:) by trigram, folded and not (NameSearch, FoldedNameSearch: built concurrently, where pg_trgm is).
@Index({ name: 'groups_name_trgm', expression: 'create index "groups_name_trgm" on "groups" using gin ("name" gin_trgm_ops)' })
@Index({ name: 'groups_name_folded', expression: 'create index "groups_name_folded" on "groups" using gin (parley_fold("name") gin_trgm_ops)' })
@Index({ properties: ['createdAt', 'id'] })
export class Group {
  [OptionalProps]?: 'createdAt' | 'isPrivate' | 'isLobby' | 'memberCount' | 'slowModeSeconds';

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

  /** Seconds a plain member waits between two messages; 0: no slow mode. */
  @Property({ type: 'integer', default: 0 })
  slowModeSeconds: number = 0;

  /** When slow mode began (null while it is off): a member's messages before it never count. */
  @Property({ type: 'datetime', nullable: true })
  slowModeSince?: Date | null;

  /** Its events that told its members, counted under its row lock: the position of each live one (GroupEventPayload.pos). */
  @Property({ type: 'bigint', default: 0 })
  eventSeq?: number;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}

/** ADMIN or MEMBER; the owner is `groups.owner_id`, whatever their row says. */
export type MemberRole = 'ADMIN' | 'MEMBER';

@Entity({ tableName: 'group_members' })
@Unique({ properties: ['group', 'user'] })
@Index({ properties: ['group', 'joinedAt', 'id'] })
export class GroupMember {
  [OptionalProps]?: 'joinedAt' | 'role' | 'slowSentAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => Group, { ref: true, deleteRule: 'cascade' })
  group!: Ref<Group>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  @Index()
  user!: Ref<User>;

  @Property({ type: 'datetime' })
  joinedAt: Date = new Date();

  @Enum({ items: ['ADMIN', 'MEMBER'], columnType: 'varchar(8)', default: 'MEMBER' })
  role: MemberRole = 'MEMBER';

  /** When the member last sent while the group was in slow mode (the send statement's gate writes it). */
  @Property({ type: 'datetime', nullable: true })
  slowSentAt?: Date | null;
}

/** A user who may not join, be added or be invited until unbanned. */
@Entity({ tableName: 'group_bans' })
export class GroupBan {
  [PrimaryKeyProp]?: ['group', 'user'];
  [OptionalProps]?: 'createdAt';

  @ManyToOne(() => Group, { primary: true, ref: true, deleteRule: 'cascade' })
  group!: Ref<Group>;

  @ManyToOne(() => User, { primary: true, ref: true, deleteRule: 'cascade' })
  user!: Ref<User>;

  @ManyToOne(() => User, { ref: true, nullable: true, deleteRule: 'set null', fieldName: 'banned_by' })
  bannedBy?: Ref<User> | null;

  @Property({ type: 'datetime', defaultRaw: 'now()' })
  createdAt: Date = new Date();
}

/** A pending invitation, until accepted or declined (or the user is banned). */
@Entity({ tableName: 'group_invites' })
export class GroupInvite {
  [PrimaryKeyProp]?: ['group', 'user'];
  [OptionalProps]?: 'createdAt';

  @ManyToOne(() => Group, { primary: true, ref: true, deleteRule: 'cascade' })
  group!: Ref<Group>;

  @ManyToOne(() => User, { primary: true, ref: true, deleteRule: 'cascade' })
  @Index()
  user!: Ref<User>;

  @ManyToOne(() => User, { ref: true, nullable: true, deleteRule: 'set null', fieldName: 'invited_by' })
  invitedBy?: Ref<User> | null;

  @Property({ type: 'datetime', defaultRaw: 'now()' })
  createdAt: Date = new Date();
}
