import { randomUUID } from 'node:crypto';
import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

export enum ProjectRole {
  OWNER = 'OWNER',
  COACH = 'COACH',
  PARTICIPANT = 'PARTICIPANT',
}

export enum ProjectActionKind {
  ADDED_TO_PROJECT = 'ADDED_TO_PROJECT',
  PARTICIPANT_ADDED = 'PARTICIPANT_ADDED',
  PROJECT_DELETED = 'PROJECT_DELETED',
  PROJECT_RENAMED = 'PROJECT_RENAMED',
  PARTICIPANT_LEFT = 'PARTICIPANT_LEFT',
  COACH_DESIGNATED = 'COACH_DESIGNATED',
  COACH_WITHDRAWN = 'COACH_WITHDRAWN',
  PARTICIPANT_REMOVED = 'PARTICIPANT_REMOVED',
}

@Entity({ tableName: 'projects' })
export class Project {
  [OptionalProps]?: 'createdAt' | 'actionSeq';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'string', length: 100 })
  title!: string;

  /** Its changes that told its members, counted under its row lock: the position of each one's live actions (ProjectActionPayload.pos). */
  @Property({ type: 'bigint', default: 0 })
  actionSeq?: number;

  @ManyToOne(() => User, { ref: true })
  owner!: Ref<User>;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}

@Entity({ tableName: 'project_members' })
@Unique({ properties: ['project', 'user'] })
export class ProjectMember {
  [OptionalProps]?: 'joinedAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => Project, { ref: true, deleteRule: 'cascade' })
  project!: Ref<Project>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  @Index()
  user!: Ref<User>;

  @Enum({ items: () => ProjectRole, nativeEnumName: 'project_role' })
  role!: ProjectRole;

  @Property({ type: 'datetime' })
  joinedAt: Date = new Date();
}

/**
 * One inbox entry: a project change as one member reads it. It outlives the project
 * (no foreign key on projectId) so that PROJECT_DELETED stays readable.
 */
@Entity({ tableName: 'project_actions' })
@Index({ properties: ['recipient', 'createdAt', 'id'] })
@Index({ properties: ['recipient', 'projectId', 'createdAt', 'id'] })
export class ProjectAction {
  [OptionalProps]?: 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  recipient!: Ref<User>;

  @Enum({ items: () => ProjectActionKind, nativeEnumName: 'project_action_kind' })
  kind!: ProjectActionKind;

  @Property({ type: 'text' })
  message!: string;

  @Property({ type: 'uuid' })
  projectId!: string;

  @Property({ type: 'string', length: 100 })
  projectTitle!: string;

  @Property({ type: 'uuid', nullable: true })
  actorId?: string | null;

  @Property({ type: 'uuid', nullable: true })
  targetId?: string | null;

  @Property({ type: 'string', length: 100, nullable: true })
  previousTitle?: string | null;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}
