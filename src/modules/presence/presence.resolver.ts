import { Arg, Authorized, Ctx, FieldResolver, Int, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf, type Context } from '../../graphql/context';
import { NotFoundError } from '../../shared/errors';
import { decodeCursor, pageSize, toConnection, type ConnectionShape } from '../../shared/graphql/connection';
import { Topic, type PresencePayload } from '../../shared/pubsub/topics';
import { isId } from '../../shared/validation';
import { PresenceStatus, UserConnection, UserType } from '../user/user.types';
import { PresenceType } from './presence.types';
import type { PresenceState } from './presence.service';

const toPresence = (s: PresenceState): PresenceType => ({ userId: s.userId, status: s.status as PresenceStatus, lastSeenAt: s.lastSeenAt });

@Resolver(() => PresenceType)
export class PresenceResolver {
  @Authorized()
  @Mutation(() => PresenceType, { description: 'Keeps the viewer ONLINE.' })
  async heartbeat(@Ctx() ctx: Context): Promise<PresenceType> {
    const viewer = viewerOf(ctx);
    return toPresence(await ctx.services.presence.heartbeat(viewer.userId, viewer.sessionId));
  }

  @Authorized()
  @Query(() => UserConnection, { description: 'totalCount is how many users are online.' })
  async onlineUsers(
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: Context,
  ): Promise<ConnectionShape<UserType>> {
    const limit = pageSize(first, 'first', 50);
    const cursor = after ? decodeCursor(after, 'after') : null;
    const [ids, total] = await Promise.all([ctx.services.presence.page(cursor?.id ?? null, limit + 1), ctx.services.presence.count()]);
    const users = (await ctx.loaders.user.loadMany(ids)).filter((u): u is UserType => !!u && !(u instanceof Error));
    return toConnection(users, { limit, backward: false, hasCursor: !!cursor, totalCount: total, key: (u) => ({ k: u.id, id: u.id }), node: (u) => u });
  }

  @Authorized()
  @Query(() => PresenceType)
  async userStatus(@Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<PresenceType> {
    if (!isId(userId) || !(await ctx.loaders.user.load(userId))) throw new NotFoundError('User');
    return toPresence(await ctx.loaders.presence.load(userId));
  }

  @Authorized()
  @Subscription(() => PresenceType, {
    description: "Without userIds: everyone's changes.",
    subscribe: ({ args, context }: SubscribeResolverData<unknown, { userIds?: string[] | null }, Context>) => {
      const ids = args.userIds;
      // With userIds, routed by the user each event is about: other users' changes never reach it.
      return context.services.pubsub.iterate(Topic.PresenceChanged, (p) => p, { keys: ids ? [...new Set(ids)] : undefined });
    },
  })
  presenceChanged(@Root() p: PresencePayload, @Arg('userIds', () => [IdScalar], { nullable: true }) _userIds?: string[] | null): PresenceType {
    return { userId: p.userId, status: p.status as PresenceStatus, lastSeenAt: p.lastSeenAt ? new Date(p.lastSeenAt) : null };
  }

  @FieldResolver(() => UserType)
  async user(@Root() p: PresenceType, @Ctx() ctx: Context): Promise<UserType> {
    const user = p.user ?? (await ctx.loaders.user.load(p.userId));
    if (!user) throw new NotFoundError('User');
    return user;
  }
}
