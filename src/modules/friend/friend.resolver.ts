import { Arg, Authorized, Ctx, FieldResolver, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { Topic, type FriendEventPayload } from '../../shared/pubsub/topics';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { NotFoundError } from '../../shared/errors';
import { toUserType } from '../user/user.mapper';
import { UserType } from '../user/user.types';
import { payloadToFriendEventType, toFriendRequestType } from './friend.mapper';
import { FriendEventType, FriendRequestType } from './friend.types';

type Sub = SubscribeResolverData<unknown, Record<string, never>, Context>;

/** Friend events a subscription remembers, to tell a copy once (see friendEvent). */
const TOLD_MAX = 64;

@Resolver(() => FriendRequestType)
export class FriendResolver {
  @Authorized()
  @Query(() => [UserType])
  async friends(@Ctx() ctx: Context): Promise<UserType[]> {
    return (await ctx.services.friends.friends(ctx.em, viewerOf(ctx).userId)).map(toUserType);
  }

  @Authorized()
  @Query(() => [FriendRequestType], { description: 'Pending, incoming and outgoing.' })
  async friendRequests(@Ctx() ctx: Context): Promise<FriendRequestType[]> {
    return (await ctx.services.friends.pending(ctx.em, viewerOf(ctx).userId)).map(toFriendRequestType);
  }

  @Authorized()
  @Mutation(() => FriendRequestType)
  async sendFriendRequest(@Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<FriendRequestType> {
    const me = viewerOf(ctx).userId;
    return toFriendRequestType(await ctx.services.rates.friendRequest.spend(me, 'You are sending friend requests too fast; try again later.', () => ctx.services.friends.send(ctx.em, me, userId)));
  }

  @Authorized()
  @Mutation(() => FriendRequestType)
  async acceptFriendRequest(@Arg('requestId', () => IdScalar) requestId: string, @Ctx() ctx: Context): Promise<FriendRequestType> {
    return toFriendRequestType(await ctx.services.friends.respond(ctx.em, viewerOf(ctx).userId, requestId, true));
  }

  @Authorized()
  @Mutation(() => FriendRequestType)
  async declineFriendRequest(@Arg('requestId', () => IdScalar) requestId: string, @Ctx() ctx: Context): Promise<FriendRequestType> {
    return toFriendRequestType(await ctx.services.friends.respond(ctx.em, viewerOf(ctx).userId, requestId, false));
  }

  @Authorized()
  @Mutation(() => Boolean)
  cancelFriendRequest(@Arg('requestId', () => IdScalar) requestId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.friends.withdraw(ctx.em, viewerOf(ctx).userId, requestId);
  }

  @Authorized()
  @Mutation(() => Boolean)
  removeFriend(@Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.friends.remove(ctx.em, viewerOf(ctx).userId, userId);
  }

  @Authorized()
  @Subscription(() => FriendEventType, {
    description: "Friend requests sent, answered or withdrawn, and friendships ended, of the viewer's: to both users' sessions (a block: to the blocker's alone).",
    subscribe: ({ context }: Sub) => {
      const me = viewerOf(context).userId;
      // An event whose publish failed in a Redis outage is published again once it is back
      // (PubSub.keepUnsent), and one Redis had taken before the connection dropped may then come
      // twice: each is told once (the same change, the same moment).
      const told = new Set<string>();
      return context.services.pubsub.iterate(
        Topic.FriendEvent,
        (p) => {
          if (!p.audience.includes(me)) return undefined;
          const key = `${p.kind}:${p.userIds[0]}:${p.userIds[1]}:${p.at}`;
          if (told.has(key)) return undefined;
          if (told.size >= TOLD_MAX) told.delete(told.values().next().value!);
          told.add(key);
          return p;
        },
        { keys: me },
      );
    },
  })
  friendEvent(@Root() p: FriendEventPayload): FriendEventType {
    return payloadToFriendEventType(p);
  }

  @FieldResolver(() => UserType)
  async from(@Root() r: FriendRequestType, @Ctx() ctx: Context): Promise<UserType> {
    const u = await ctx.loaders.user.load(r.fromId);
    if (!u) throw new NotFoundError('User');
    return u;
  }

  @FieldResolver(() => UserType)
  async to(@Root() r: FriendRequestType, @Ctx() ctx: Context): Promise<UserType> {
    const u = await ctx.loaders.user.load(r.toId);
    if (!u) throw new NotFoundError('User');
    return u;
  }
}

@Resolver(() => FriendEventType)
export class FriendEventResolver {
  @FieldResolver(() => UserType, { description: 'The other user: who asked, answered or ended it, or whom the viewer did.' })
  async user(@Root() e: FriendEventType, @Ctx() ctx: Context): Promise<UserType> {
    const me = viewerOf(ctx).userId;
    const u = await ctx.loaders.user.load(e.userIds[0] === me ? e.userIds[1] : e.userIds[0]);
    if (!u) throw new NotFoundError('User');
    return u;
  }
}
