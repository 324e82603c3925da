import { Arg, Authorized, Ctx, FieldResolver, Int, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { NotFoundError } from '../../shared/errors';
import type { ConnectionShape } from '../../shared/graphql/connection';
import { Topic, type PresencePayload } from '../../shared/pubsub/topics';
import { isId } from '../../shared/validation';
import { UserConnection, UserType } from '../user/user.types';
import { payloadToPresenceType, toPresenceType } from './presence.mapper';
import { PresenceType } from './presence.types';

@Resolver(() => PresenceType)
export class PresenceResolver {
  @Authorized()
  @Mutation(() => PresenceType, { description: 'Keeps the viewer ONLINE.' })
  async heartbeat(@Ctx() ctx: Context): Promise<PresenceType> {
    const viewer = viewerOf(ctx);
    return toPresenceType(await ctx.services.presence.heartbeat(viewer.userId, viewer.sessionId));
  }

  @Authorized()
  @Query(() => UserConnection, { description: 'totalCount is how many users are online.' })
  onlineUsers(
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: Context,
  ): Promise<ConnectionShape<UserType>> {
    // Users the viewer blocks are left out (modules/safety).
    const me = viewerOf(ctx).userId;
    return ctx.services.presence.onlineUsers({ first, after }, (ids) => ctx.services.blocks.leaveOut(ctx.em, me, ids, (some) => ctx.loaders.user.loadMany(some)));
  }

  @Authorized()
  @Query(() => PresenceType)
  async userStatus(@Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<PresenceType> {
    if (!isId(userId) || !(await ctx.loaders.user.load(userId))) throw new NotFoundError('User');
    return toPresenceType(await ctx.loaders.presence.load(userId));
  }

  @Authorized()
  @Subscription(() => PresenceType, {
    description: "Without userIds: everyone's changes.",
    subscribe: ({ args, context }: SubscribeResolverData<unknown, { userIds?: string[] | null }, Context>) => {
      const ids = args.userIds;
      const me = viewerOf(context).userId;
      const { blocks } = context.services;
      // With userIds, routed by the user each event is about: other users' changes never reach it. Nor do those of a user the viewer blocks.
      return context.services.pubsub.iterate(Topic.PresenceChanged, (p) => (blocks.hides(me, p.userId) ? undefined : p), { keys: ids ? [...new Set(ids)] : undefined });
    },
  })
  presenceChanged(@Root() p: PresencePayload, @Arg('userIds', () => [IdScalar], { nullable: true }) _userIds?: string[] | null): PresenceType {
    return payloadToPresenceType(p);
  }

  @FieldResolver(() => UserType)
  async user(@Root() p: PresenceType, @Ctx() ctx: Context): Promise<UserType> {
    const user = p.user ?? (await ctx.loaders.user.load(p.userId));
    if (!user) throw new NotFoundError('User');
    return user;
  }
}
