import { Arg, Authorized, Ctx, FieldResolver, Info, Int, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { NotFoundError } from '../../shared/errors';
import { argumentGiven, type ConnectionShape, type PageArgs } from '../../shared/graphql/connection';
import type { GraphQLResolveInfo } from 'graphql';
import { Topic, type PresencePayload } from '../../shared/pubsub/topics';
import { UserConnection, UserType } from '../user/user.types';
import { SYSTEM_USER } from '../user/user.mapper';
import { payloadToPresenceType, toPresenceType } from './presence.mapper';
import { PresenceType, PresenceVisibilityChoice } from './presence.types';
import { watcherKey } from './presence.routing';
import { BadUserInputError } from '../../shared/errors';

/** Most users one presenceChanged may name. */
const MAX_WATCHED = 1000;

@Resolver(() => PresenceType)
export class PresenceResolver {
  @Authorized()
  @Mutation(() => PresenceType, { description: 'Keeps the viewer ONLINE.' })
  async heartbeat(@Ctx() ctx: Context): Promise<PresenceType> {
    const viewer = viewerOf(ctx);
    return toPresenceType(await ctx.services.presence.heartbeat(viewer.userId, viewer.sessionId));
  }

  @Authorized()
  @Query(() => UserConnection, {
    description:
      'Online users the viewer may see, by id. With PRESENCE_VISIBILITY=contacts: the viewer’s online contacts (and the viewer). HIDDEN users are never listed (to anyone). totalCount is how many such users are online.',
  })
  onlineUsers(
    @Arg('first', () => Int, { nullable: true, defaultValue: 50 }) first: number,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Arg('last', () => Int, { nullable: true }) last: number | null,
    @Arg('before', () => String, { nullable: true }) before: string | null,
    @Ctx() ctx: Context,
    @Info() info: GraphQLResolveInfo,
  ): Promise<ConnectionShape<UserType>> {
    const given = (name: keyof PageArgs) => argumentGiven(info, name);
    return ctx.services.presence.onlineUsers(viewerOf(ctx).userId, { first, after, last, before }, (ids) => ctx.loaders.user.loadMany(ids), given);
  }

  @Authorized()
  @Query(() => PresenceType, { description: 'A user’s presence as the viewer may see it: OFFLINE with no lastSeenAt when the viewer may not (never an error for that). NOT_FOUND for an unknown user or a deleted account (as `user` is null for it); the lobby’s owner, the system user, is OFFLINE.' })
  async userStatus(@Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<PresenceType> {
    // The system user has no row, but `user` and `node` answer it: a client showing the lobby's owner asks this too.
    if (userId !== SYSTEM_USER.id && !(await ctx.services.users.find(ctx.em, userId))) throw new NotFoundError('User');
    return toPresenceType(await ctx.loaders.presence.load(userId));
  }

  @Authorized()
  @Subscription(() => PresenceType, {
    description:
      'Presence transitions the viewer may see. Without userIds: everyone’s (PRESENCE_VISIBILITY=everyone) or the viewer’s contacts’ and their own (contacts); a contact gained while subscribed is told at once when online, a contact lost as OFFLINE with no lastSeenAt. With userIds (at most 1000): those users’ transitions, only those the viewer may see. HIDDEN users’ transitions are not published.',
    subscribe: ({ args, context }: SubscribeResolverData<unknown, { userIds?: string[] | null }, Context>) => {
      const ids = args.userIds;
      if (ids && ids.length > MAX_WATCHED) throw new BadUserInputError(`userIds takes at most ${MAX_WATCHED} users.`, 'userIds');
      const viewer = viewerOf(context).userId;
      const visibility = context.services.presence.visibility;
      // A user the viewer blocks is one of the hiding rules (modules/safety). With userIds, routed by the user each event is about: other users' changes never reach it.
      // Without, in contacts mode, by the viewer: only transitions of users they may see are offered.
      const keys = ids ? [...new Set(ids)] : visibility.mode === 'contacts' ? watcherKey(viewer) : undefined;
      // A contact gained or lost is told to its viewer alone; going HIDDEN (or VISIBLE again) is a
      // change to everyone but the user, who reads themselves as they are throughout.
      const select = (p: PresencePayload) => {
        if ((p.to !== undefined && p.to !== viewer) || ((p.hiding || p.showing) && p.userId === viewer)) return undefined;
        return p.lost || visibility.sees(viewer, p.userId) ? p : undefined;
      };
      return context.services.pubsub.iterate(Topic.PresenceChanged, select, { keys });
    },
  })
  presenceChanged(
    @Root() p: PresencePayload,
    @Arg('userIds', () => [IdScalar], { nullable: true, description: 'Users to watch (at most 1000); transitions of those the viewer may not see are left out.' }) _userIds?: string[] | null,
  ): PresenceType {
    return payloadToPresenceType(p);
  }

  @FieldResolver(() => UserType)
  async user(@Root() p: PresenceType, @Ctx() ctx: Context): Promise<UserType> {
    const user = p.user ?? (p.userId === SYSTEM_USER.id ? SYSTEM_USER : await ctx.loaders.user.load(p.userId));
    if (!user) throw new NotFoundError('User');
    return user;
  }
}

/** The viewer's presence visibility (User.presenceVisibility, setPresenceVisibility). */
@Resolver(() => UserType)
export class PresenceVisibilityResolver {
  @Authorized()
  @Mutation(() => UserType, {
    description: 'HIDDEN: the viewer reads OFFLINE with no lastSeenAt to everyone else, in every mode, and their transitions are not published (going HIDDEN while online is told to others as OFFLINE). VISIBLE: shown again (as ONLINE at once when online).',
  })
  async setPresenceVisibility(@Arg('visibility', () => PresenceVisibilityChoice, { description: 'VISIBLE or HIDDEN.' }) visibility: PresenceVisibilityChoice, @Ctx() ctx: Context): Promise<UserType> {
    const viewer = viewerOf(ctx);
    await ctx.services.presence.setVisibility(ctx.em, viewer.userId, visibility, viewer.sessionId);
    const user = await ctx.loaders.user.load(viewer.userId);
    if (!user) throw new NotFoundError('User');
    return user;
  }

  @FieldResolver(() => PresenceVisibilityChoice, { description: "Whether others may see the user's presence: the viewer's own (on `me`); FORBIDDEN for anyone else." })
  async presenceVisibility(@Root() user: UserType, @Ctx() ctx: Context): Promise<PresenceVisibilityChoice> {
    return (await ctx.services.presence.visibilityOf(ctx.em, viewerOf(ctx).userId, user.id)) as PresenceVisibilityChoice;
  }
}
