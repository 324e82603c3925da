import { ArgsType, Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { ConnectionType } from '../../shared/graphql/connection';
import { ProjectActionKind, ProjectRole } from './project.entity';

registerEnumType(ProjectActionKind, { name: 'ProjectActionKind' });
registerEnumType(ProjectRole, { name: 'ProjectRole', description: 'A coach is a participant with the coach role.' });

/** One member as the Project type needs it; users are resolved through the per-request loader. */
export interface ProjectMemberShape {
  userId: string;
  role: ProjectRole;
  joinedAt: Date;
}

/**
 * A project as its members see it. Every member is either the owner or a participant:
 * `participants` lists everyone but the owner, coaches included ("a coach is a participant
 * with the coach role"), longest-standing first; `coaches` is the subset with that role.
 */
@ObjectType('Project', { implements: Node })
export class ProjectType {
  @Field(() => IdScalar) id!: string;
  @Field() title!: string;
  @Field(() => Date) createdAt!: Date;
  ownerId!: string;
  /** Every member with their role, oldest first. */
  members!: ProjectMemberShape[];
}

@ObjectType('ProjectAction', { implements: Node, description: "One project change, with a message written for the viewer who receives it." })
export class ProjectActionType {
  @Field(() => IdScalar) id!: string;
  @Field(() => ProjectActionKind) kind!: ProjectActionKind;
  @Field() message!: string;
  @Field(() => IdScalar) projectId!: string;
  @Field(() => String, { nullable: true, description: 'Set for PROJECT_RENAMED: the title before.' }) previousTitle!: string | null;
  @Field(() => Date) createdAt!: Date;
  actorId!: string | null;
  targetId!: string | null;
}

/**
 * The inbox, edges oldest first as for messages. startCursor is the oldest
 * edge of the page and hasPreviousPage tells whether older entries exist, so `before: startCursor`
 * fetches the next older page.
 */
export const ProjectActionConnection = ConnectionType('ProjectAction', ProjectActionType);

@ArgsType()
export class ProjectActionsArgs {
  @Field(() => IdScalar, { nullable: true, description: "Only this project's entries; without it, every project's." }) projectId?: string | null;
  @Field(() => Int, { nullable: true, defaultValue: 20 }) last?: number | null;
  @Field(() => String, { nullable: true, description: 'Entries older than this cursor.' }) before?: string | null;
  @Field(() => Int, { nullable: true }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
}
