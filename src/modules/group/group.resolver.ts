import { Arg, Args, Authorized, Ctx, FieldResolver, Info, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { argumentGiven, type ConnectionShape } from '../../shared/graphql/connection';
import type { GraphQLResolveInfo } from 'graphql';
import { Topic, type GroupEventPayload } from '../../shared/pubsub/topics';
import { SYSTEM_USER } from '../user/user.mapper';
import { UserConnection, UserType } from '../user/user.types';
import { payloadToGroupEventType, toGroupType } from './group.mapper';
import { GroupConnection, GroupEventType, GroupType, GroupsArgs, PageArgs } from './group.types';

@Resolver(() => GroupType)
export class GroupResolver {
  @Authorized()
  @Query(() => GroupConnection, { description: 'Public groups and mine.' })
  groups(@Args() args: GroupsArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<ConnectionShape<GroupType>> {
    return ctx.services.groups.list(ctx.em, viewerOf(ctx).userId, args, (name) => argumentGiven(info, name));
  }

  @Authorized()
  @Query(() => GroupType, { nullable: true })
  async group(@Arg('id', () => IdScalar) id: string, @Ctx() ctx: Context): Promise<GroupType | null> {
    const g = await ctx.services.groups.find(ctx.em, id, viewerOf(ctx).userId);
    return g ? toGroupType(g) : null;
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Everyone gets GroupEvent CREATED for a public group.' })
  async createGroup(
    @Arg('name') name: string,
    @Arg('isPrivate', () => Boolean, { nullable: true, defaultValue: false }) isPrivate: boolean,
    @Ctx() ctx: Context,
  ): Promise<GroupType> {
    const me = viewerOf(ctx).userId;
    await ctx.services.rates.createGroup.consume(me, 'You are creating groups too fast; try again later.');
    return toGroupType(await ctx.services.groups.create(ctx.em, me, name, isPrivate ?? false));
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Owner only.' })
  async renameGroup(@Arg('groupId', () => IdScalar) groupId: string, @Arg('name') name: string, @Ctx() ctx: Context): Promise<GroupType> {
    return toGroupType(await ctx.services.groups.rename(ctx.em, viewerOf(ctx).userId, groupId, name));
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Owner only; members get DELETED and lose access.' })
  deleteGroup(@Arg('groupId', () => IdScalar) groupId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.groups.delete(ctx.em, viewerOf(ctx).userId, groupId);
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Public groups; private ones by addGroupMember.' })
  async joinGroup(@Arg('groupId', () => IdScalar) groupId: string, @Ctx() ctx: Context): Promise<GroupType> {
    const me = viewerOf(ctx).userId;
    await ctx.services.rates.groupMembership.consume(me, 'You are joining and leaving groups too fast; try again later.');
    return toGroupType(await ctx.services.groups.join(ctx.em, me, groupId));
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Owner only.' })
  async addGroupMember(@Arg('groupId', () => IdScalar) groupId: string, @Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<GroupType> {
    return toGroupType(await ctx.services.groups.addMember(ctx.em, viewerOf(ctx).userId, groupId, userId));
  }

  @Authorized()
  @Mutation(() => Boolean)
  async leaveGroup(@Arg('groupId', () => IdScalar) groupId: string, @Ctx() ctx: Context): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    await ctx.services.rates.groupMembership.consume(me, 'You are joining and leaving groups too fast; try again later.');
    return ctx.services.groups.leave(ctx.em, me, groupId);
  }

  @FieldResolver(() => UserType)
  async owner(@Root() g: GroupType, @Ctx() ctx: Context): Promise<UserType> {
    return (g.ownerId && (await ctx.loaders.user.load(g.ownerId))) || SYSTEM_USER;
  }

  @FieldResolver(() => UserConnection)
  members(@Root() g: GroupType, @Args() args: PageArgs, @Ctx() ctx: Context): Promise<ConnectionShape<UserType>> {
    // Reaching a Group means the viewer may see it (visibility is checked where groups are loaded).
    return ctx.services.groups.members(ctx.em, g, args);
  }

  @Authorized()
  @Subscription(() => GroupEventType, {
    description: 'CREATED of public groups to all; the rest to members.',
    subscribe: ({ context }: SubscribeResolverData<unknown, unknown, Context>) => {
      const me = viewerOf(context).userId;
      return context.services.pubsub.iterate(Topic.GroupEvent, (e) => (e.audience === null || e.audience.includes(me) ? e : undefined), { keys: me });
    },
  })
  groupEvent(@Root() e: GroupEventPayload): GroupEventType {
    return payloadToGroupEventType(e);
  }
}

@Resolver(() => GroupEventType)
export class GroupEventResolver {
  @FieldResolver(() => GroupType, { nullable: true, description: 'Null once the group is gone or out of sight.' })
  async group(@Root() e: GroupEventType, @Ctx() ctx: Context): Promise<GroupType | null> {
    const g = await ctx.services.groups.find(ctx.em, e.groupId, viewerOf(ctx).userId);
    return g ? toGroupType(g) : null;
  }

  @FieldResolver(() => UserType, { nullable: true })
  user(@Root() e: GroupEventType, @Ctx() ctx: Context): Promise<UserType | null> {
    return e.userId ? ctx.loaders.user.load(e.userId) : Promise.resolve(null);
  }
}
