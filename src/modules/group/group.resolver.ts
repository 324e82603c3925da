import { Arg, Args, Authorized, Ctx, FieldResolver, Info, Int, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { argumentGiven, type ConnectionShape } from '../../shared/graphql/connection';
import type { GraphQLResolveInfo } from 'graphql';
import { Topic, type GroupEventPayload } from '../../shared/pubsub/topics';
import { SYSTEM_USER } from '../user/user.mapper';
import { UserConnection, UserType } from '../user/user.types';
import { payloadToGroupEventType, toGroupType } from './group.mapper';
import { GroupConnection, GroupEventType, GroupRole, GroupType, GroupsArgs, PageArgs } from './group.types';

const MEMBERSHIP_TOO_FAST = 'You are joining and leaving groups too fast; try again later.';

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
    return toGroupType(await ctx.services.rates.createGroup.spend(me, 'You are creating groups too fast; try again later.', () => ctx.services.groups.create(ctx.em, me, name, isPrivate ?? false)));
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Owner and admins; not the lobby. Members get RENAMED.' })
  async renameGroup(@Arg('groupId', () => IdScalar) groupId: string, @Arg('name') name: string, @Ctx() ctx: Context): Promise<GroupType> {
    return toGroupType(await ctx.services.groups.rename(ctx.em, viewerOf(ctx).userId, groupId, name));
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Owner only; members (and invitees) get DELETED and lose access.' })
  deleteGroup(@Arg('groupId', () => IdScalar) groupId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.groups.delete(ctx.em, viewerOf(ctx).userId, groupId);
  }

  @Authorized()
  @Mutation(() => GroupType, {
    description: 'Public groups, or one the viewer was invited to (takes the invitation). Private groups otherwise NOT_FOUND; banned users FORBIDDEN.',
  })
  async joinGroup(@Arg('groupId', () => IdScalar) groupId: string, @Ctx() ctx: Context): Promise<GroupType> {
    const me = viewerOf(ctx).userId;
    return toGroupType(await ctx.services.rates.groupMembership.spendWhenMade(me, MEMBERSHIP_TOO_FAST, (made) => ctx.services.groups.join(ctx.em, me, groupId, made)));
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Owner and admins (lobby admins too): adds a user at once; a banned user is CONFLICT until unbanned; a user who blocks the adder FORBIDDEN, as for an invitation.' })
  async addGroupMember(@Arg('groupId', () => IdScalar) groupId: string, @Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<GroupType> {
    return toGroupType(await ctx.services.groups.addMember(ctx.em, viewerOf(ctx).userId, groupId, userId));
  }

  @Authorized()
  @Mutation(() => Boolean)
  async leaveGroup(@Arg('groupId', () => IdScalar) groupId: string, @Ctx() ctx: Context): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.groupMembership.spend(me, MEMBERSHIP_TOO_FAST, () => ctx.services.groups.leave(ctx.em, me, groupId));
  }

  @Authorized()
  @Mutation(() => GroupType, {
    description:
      'Owner only (not the lobby): role ADMIN or MEMBER for a member; OWNER hands ownership over (the old owner becomes ADMIN). Members get ROLE_CHANGED or OWNER_CHANGED.',
  })
  setGroupRole(
    @Arg('groupId', () => IdScalar, { description: 'The group.' }) groupId: string,
    @Arg('userId', () => IdScalar, { description: 'A member other than the owner.' }) userId: string,
    @Arg('role', () => GroupRole, { description: 'The new role; OWNER makes them the owner.' }) role: GroupRole,
    @Ctx() ctx: Context,
  ): Promise<GroupType> {
    return this.group$(ctx.services.groups.setRole(ctx.em, viewerOf(ctx).userId, groupId, userId, role));
  }

  @Authorized()
  @Mutation(() => GroupType, {
    description: 'Owner and admins (lobby admins too): the member leaves at once (MEMBER_REMOVED to the members and to them). Not the owner; an admin only by the owner. They may join a public group again.',
  })
  removeGroupMember(
    @Arg('groupId', () => IdScalar, { description: 'The group.' }) groupId: string,
    @Arg('userId', () => IdScalar, { description: 'The member to remove.' }) userId: string,
    @Ctx() ctx: Context,
  ): Promise<GroupType> {
    return this.group$(ctx.services.groups.remove(ctx.em, viewerOf(ctx).userId, groupId, userId));
  }

  @Authorized()
  @Mutation(() => GroupType, {
    description:
      'Owner and admins (lobby admins too): removes the user if a member and keeps them out (no join, add or invitation) until unbanned; MEMBER_BANNED to the members and to them. Not the owner; an admin only by the owner.',
  })
  banFromGroup(
    @Arg('groupId', () => IdScalar, { description: 'The group.' }) groupId: string,
    @Arg('userId', () => IdScalar, { description: 'The user to ban (a member or not).' }) userId: string,
    @Ctx() ctx: Context,
  ): Promise<GroupType> {
    return this.group$(ctx.services.groups.ban(ctx.em, viewerOf(ctx).userId, groupId, userId));
  }

  @Authorized()
  @Mutation(() => GroupType, { description: 'Owner and admins: lifts a ban (the user is not added back). Unbanning someone not banned changes nothing.' })
  unbanFromGroup(
    @Arg('groupId', () => IdScalar, { description: 'The group.' }) groupId: string,
    @Arg('userId', () => IdScalar, { description: 'The banned user.' }) userId: string,
    @Ctx() ctx: Context,
  ): Promise<GroupType> {
    return this.group$(ctx.services.groups.unban(ctx.em, viewerOf(ctx).userId, groupId, userId));
  }

  @Authorized()
  @Mutation(() => Boolean, {
    description: 'Owner and admins (not the lobby): the user gets a live INVITED and may accept or decline. A member or a banned user is CONFLICT; a user who blocks the viewer is FORBIDDEN (worded as any refusal, the block not told); inviting again changes nothing.',
  })
  async inviteToGroup(
    @Arg('groupId', () => IdScalar, { description: 'The group.' }) groupId: string,
    @Arg('userId', () => IdScalar, { description: 'The user to invite.' }) userId: string,
    @Ctx() ctx: Context,
  ): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.groupInvite.spendWhenMade(me, 'You are sending invitations too fast; try again later.', (made) => ctx.services.groups.invite(ctx.em, me, groupId, userId, made));
  }

  @Authorized()
  @Mutation(() => GroupType, { description: "Joins a group the viewer was invited to (MEMBER_JOINED to the members). NOT_FOUND without a pending invitation." })
  async acceptGroupInvite(@Arg('groupId', () => IdScalar, { description: 'The group of the invitation.' }) groupId: string, @Ctx() ctx: Context): Promise<GroupType> {
    const me = viewerOf(ctx).userId;
    return this.group$(ctx.services.rates.groupMembership.spendWhenMade(me, MEMBERSHIP_TOO_FAST, (made) => ctx.services.groups.acceptInvite(ctx.em, me, groupId, made)));
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Drops a pending invitation. NOT_FOUND without one.' })
  declineGroupInvite(@Arg('groupId', () => IdScalar, { description: 'The group of the invitation.' }) groupId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.groups.declineInvite(ctx.em, viewerOf(ctx).userId, groupId);
  }

  @Authorized()
  @Mutation(() => GroupType, {
    description: 'Owner and admins (lobby admins too): each MEMBER may then send one message per `seconds` (0 to 21600; 0 turns it off); a send too soon is RATE_LIMITED. SLOW_MODE_CHANGED to the members.',
  })
  setSlowMode(
    @Arg('groupId', () => IdScalar, { description: 'The group.' }) groupId: string,
    @Arg('seconds', () => Int, { description: 'Seconds between two messages of a member, 0 (off) to 21600 (6 hours).' }) seconds: number,
    @Ctx() ctx: Context,
  ): Promise<GroupType> {
    return this.group$(ctx.services.groups.setSlowMode(ctx.em, viewerOf(ctx).userId, groupId, seconds));
  }

  @FieldResolver(() => GroupRole, { nullable: true, description: "The viewer's role in this group; null when not a member (an invitee, say)." })
  myRole(@Root() g: GroupType, @Ctx() ctx: Context): Promise<GroupRole | null> {
    return ctx.loaders.groupRole.load(g.id);
  }

  @FieldResolver(() => [UserType], { description: 'Users banned from this group, newest first (at most 500). Only the owner and admins see them; others get an empty list.' })
  async bannedUsers(@Root() g: GroupType, @Ctx() ctx: Context): Promise<UserType[]> {
    const ids = await ctx.services.groups.bannedIds(ctx.em, g.id, viewerOf(ctx).userId);
    const users = await ctx.loaders.user.loadMany(ids);
    return users.filter((u): u is UserType => !!u && !(u instanceof Error));
  }

  private async group$(p: Promise<Parameters<typeof toGroupType>[0]>): Promise<GroupType> {
    return toGroupType(await p);
  }

  @FieldResolver(() => UserType, { description: "The group's owner. The lobby has none: it shows the system user (id 00000000-0000-0000-0000-000000000000, username 'parley'); its admins are Group.members edges with role ADMIN." })
  async owner(@Root() g: GroupType, @Ctx() ctx: Context): Promise<UserType> {
    return (g.ownerId && (await ctx.loaders.user.load(g.ownerId))) || SYSTEM_USER;
  }

  @FieldResolver(() => UserConnection, { description: 'Members, oldest first, each edge with their role.' })
  members(@Root() g: GroupType, @Args() args: PageArgs, @Ctx() ctx: Context): Promise<ConnectionShape<UserType>> {
    // Reaching a Group means the viewer may see it (visibility is checked where groups are loaded).
    return ctx.services.groups.members(ctx.em, g, args);
  }

  @Authorized()
  @Subscription(() => GroupEventType, {
    description: 'CREATED of public groups to all; the rest to members (RENAMED and DELETED to invitees too; INVITED to the invitee).',
    subscribe: ({ context }: SubscribeResolverData<unknown, unknown, Context>) => {
      const me = viewerOf(context).userId;
      const { groups } = context.services;
      // No audience: a public group's CREATED (everyone's), or the lobby's events (its members' as
      // they stand, not one removed or banned from it, and the member concerned: one put out is told).
      const reaches = (e: GroupEventPayload) =>
        e.audience === null ? e.kind === 'CREATED' || e.userId === me || groups.isMemberCached(me, e.groupId) : e.audience.includes(me);
      return context.services.pubsub.iterate(Topic.GroupEvent, (e) => (reaches(e) ? e : undefined), { keys: me });
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
    if (!g) return null;
    const t = toGroupType(g);
    if (e.name !== undefined) t.name = e.name;
    if (e.slowModeSeconds !== undefined) t.slowModeSeconds = e.slowModeSeconds;
    return t;
  }

  @FieldResolver(() => UserType, { nullable: true })
  user(@Root() e: GroupEventType, @Ctx() ctx: Context): Promise<UserType | null> {
    return e.userId ? ctx.loaders.user.load(e.userId) : Promise.resolve(null);
  }
}
