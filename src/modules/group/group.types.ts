import { ArgsType, Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { ConnectionType } from '../../shared/graphql/connection';

@ObjectType('Group', { implements: Node })
export class GroupType {
  @Field(() => IdScalar) id!: string;
  @Field() name!: string;
  @Field() isPrivate!: boolean;
  @Field() isLobby!: boolean;
  @Field(() => Int) memberCount!: number;
  @Field(() => Date) createdAt!: Date;
  ownerId!: string | null;
}

export const GroupConnection = ConnectionType('Group', GroupType);

export enum GroupEventKind {
  CREATED = 'CREATED',
  RENAMED = 'RENAMED',
  DELETED = 'DELETED',
  MEMBER_JOINED = 'MEMBER_JOINED',
  MEMBER_LEFT = 'MEMBER_LEFT',
}
registerEnumType(GroupEventKind, { name: 'GroupEventKind' });

@ObjectType('GroupEvent')
export class GroupEventType {
  @Field(() => GroupEventKind) kind!: GroupEventKind;
  @Field(() => IdScalar) groupId!: string;
  @Field(() => Date) createdAt!: Date;
  userId!: string | null;
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
