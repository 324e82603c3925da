import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Ref } from '@mikro-orm/core';
import { Group } from '../group/group.entity';
import { Message } from '../message/message.entity';
import { User } from '../user/user.entity';

export type ReportStatusValue = 'OPEN' | 'RESOLVED';

/**
 * A user's report of a message, one per user and message. `group` is the message's group (its
 * owner and admins handle it); null for a direct or project message (the instance's MODERATORS).
 */
@Entity({ tableName: 'reports' })
@Unique({ properties: ['message', 'reporter'] })
@Index({ properties: ['group', 'status', 'createdAt', 'id'] })
@Index({ name: 'reports_status_created_at_index', expression: 'create index "reports_status_created_at_index" on "reports" ("status", "created_at", "id") where "group_id" is null' })
export class Report {
  [OptionalProps]?: 'status';

  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @ManyToOne(() => Message, { ref: true, deleteRule: 'cascade' })
  message!: Ref<Message>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  reporter!: Ref<User>;

  @ManyToOne(() => Group, { ref: true, nullable: true, deleteRule: 'cascade' })
  group?: Ref<Group> | null;

  @Property({ type: 'string', length: 500 })
  reason!: string;

  @Enum({ items: ['OPEN', 'RESOLVED'], columnType: 'varchar(8)', default: 'OPEN' })
  status: ReportStatusValue = 'OPEN';

  @Property({ type: 'datetime' })
  createdAt!: Date;

  @Property({ type: 'datetime', nullable: true })
  resolvedAt?: Date | null;

  @ManyToOne(() => User, { ref: true, nullable: true, deleteRule: 'set null', fieldName: 'resolved_by' })
  resolvedBy?: Ref<User> | null;
}
