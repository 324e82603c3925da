import { ArgsType, Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { ConnectionType } from '../../shared/graphql/connection';
import { GroupRole } from './group.role';

export { GroupRole };


@ObjectType('Group', { implements: Node })
export class GroupType {
  @Field(() => IdScalar) id!: string;
  @Field() name!: string;
  @Field() isPrivate!: boolean;
  @Field() isLobby!: boolean;
  @Field(() => Int) memberCount!: number;
  @Field(() => Date) createdAt!: Date;
  @Field(() => Int, { description: 'Seconds a MEMBER must wait between two messages here (0: no slow mode). Owner and admins are exempt.' })
  slowModeSeconds!: number;
  ownerId!: string | null;
}

export const GroupConnection = ConnectionType('Group', GroupType);

export enum GroupEventKind {
  CREATED = 'CREATED',
  RENAMED = 'RENAMED',
  DELETED = 'DELETED',
  MEMBER_JOINED = 'MEMBER_JOINED',
  MEMBER_LEFT = 'MEMBER_LEFT',
  ROLE_CHANGED = 'ROLE_CHANGED',
  MEMBER_REMOVED = 'MEMBER_REMOVED',
  MEMBER_BANNED = 'MEMBER_BANNED',
  INVITED = 'INVITED',
  OWNER_CHANGED = 'OWNER_CHANGED',
  SLOW_MODE_CHANGED = 'SLOW_MODE_CHANGED',
}
registerEnumType(GroupEventKind, {
  name: 'GroupEventKind',
  valuesConfig: {
    ROLE_CHANGED: { description: '`user` became ADMIN or MEMBER (read Group.members for the role). To the members.' },
    MEMBER_REMOVED: { description: '`user` was removed by the owner or an admin. To the members and to `user`, whose access ends at once.' },
    MEMBER_BANNED: { description: '`user` was banned (and removed if a member): they cannot join, be added or invited until unbanned. To the members and to `user`.' },
    INVITED: { description: '`user` was invited: they may acceptGroupInvite or declineGroupInvite. To the members and to `user` (who can read `group` until they answer).' },
    OWNER_CHANGED: { description: '`user` is the new owner (handed over, or the owner left or deleted their account; the old owner, if still here, is an ADMIN). To the members.' },
    SLOW_MODE_CHANGED: { description: 'Group.slowModeSeconds changed. To the members.' },
  },
});

@ObjectType('GroupEvent')
export class GroupEventType {
  @Field(() => GroupEventKind) kind!: GroupEventKind;
  @Field(() => IdScalar) groupId!: string;
  @Field(() => Date) createdAt!: Date;
  userId!: string | null;
  /** As the change left them (RENAMED, SLOW_MODE_CHANGED): shown in `group` over what is read at delivery. */
  name?: string;
  slowModeSeconds?: number;
}

@ArgsType()
export class GroupsArgs {
  @Field(() => String, { nullable: true }) search?: string | null;
  @Field(() => Int, { nullable: true, defaultValue: 20 }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
  @Field(() => Int, { nullable: true }) last?: number | null;
  @Field(() => String, { nullable: true }) before?: string | null;
}

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
  @Field(() => Int, { nullable: true }) last?: number | null;
  @Field(() => String, { nullable: true }) before?: string | null;
}
