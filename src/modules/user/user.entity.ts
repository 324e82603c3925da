import { randomUUID } from 'node:crypto';
import { Entity, Enum, Index, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';

@Entity({ tableName: 'users' })
@Index({ name: 'users_username_lower_unique', expression: 'create unique index "users_username_lower_unique" on "users" (lower("username"))' })
// The few HIDDEN users, read at start-up to mirror them in the presence store.
@Index({ name: 'users_presence_hidden', expression: `create index "users_presence_hidden" on "users" ("id") where "presence_visibility" = 'HIDDEN'` })
// users(search:) by trigram, folded and not (NameSearch, FoldedNameSearch: built concurrently, where pg_trgm is).
@Index({ name: 'users_username_trgm', expression: 'create index "users_username_trgm" on "users" using gin ("username" gin_trgm_ops)' })
@Index({ name: 'users_display_name_trgm', expression: 'create index "users_display_name_trgm" on "users" using gin ("display_name" gin_trgm_ops)' })
@Index({ name: 'users_username_folded', expression: 'create index "users_username_folded" on "users" using gin (parley_fold("username") gin_trgm_ops)' })
@Index({ name: 'users_display_name_folded', expression: 'create index "users_display_name_folded" on "users" using gin (parley_fold("display_name") gin_trgm_ops)' })
export class User {
  [OptionalProps]?: 'createdAt' | 'displayName' | 'lastSeenAt' | 'deletedAt' | 'notificationLevel' | 'presenceVisibility';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  /** Case kept as typed; uniqueness ignores case (index on lower(username)). */
  @Property({ type: 'string', length: 64 })
  username!: string;

  @Property({ type: 'string', length: 64, nullable: true })
  displayName?: string | null;

  @Property({ type: 'text', hidden: true, lazy: true })
  passwordHash!: string;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();

  @Property({ type: 'datetime', nullable: true })
  lastSeenAt?: Date | null;

  /** Set when the account was deleted: the row stays as the placeholder sender of old messages. */
  @Property({ type: 'datetime', nullable: true })
  deletedAt?: Date | null;

  /** Which offline notifications (webhooks) the user gets: ALL, MENTIONS or NONE (see modules/notification). */
  @Enum({ items: ['ALL', 'MENTIONS', 'NONE'], columnType: 'varchar(8)', default: 'ALL' })
  notificationLevel: string = 'ALL';

  /** VISIBLE, or HIDDEN: reads as OFFLINE to everyone else (see modules/presence). */
  @Enum({ items: ['VISIBLE', 'HIDDEN'], columnType: 'varchar(8)', default: 'VISIBLE' })
  presenceVisibility: string = 'VISIBLE';
}
