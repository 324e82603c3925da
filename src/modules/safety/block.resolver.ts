import { Arg, Authorized, Ctx, Mutation, Query, Resolver } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { toUserType } from '../user/user.mapper';
import { UserType } from '../user/user.types';

@Resolver()
export class BlockResolver {
  @Authorized()
  @Query(() => [UserType], { description: 'The users the viewer blocks, by username; an account deleted since as its placeholder (the block still hides its messages). Private: no one else, the blocked users included, can tell.' })
  async blockedUsers(@Ctx() ctx: Context): Promise<UserType[]> {
    return (await ctx.services.blocks.blocked(ctx.em, viewerOf(ctx).userId)).map(toUserType);
  }

  @Authorized()
  @Mutation(() => Boolean, {
    description:
      "Blocks a user: your friendship and any pending request between you end, they can't send you a friend request or a direct message (FORBIDDEN, worded as for any stranger), and their messages in shared groups and projects, their typing and their presence are left out of what you see (history, subscriptions, sidebar, unread counts; they read as OFFLINE). They are not told. Idempotent: true. Yourself: BAD_USER_INPUT; an unknown or malformed id: NOT_FOUND.",
  })
  async blockUser(@Arg('userId', () => IdScalar, { description: 'The user to block.' }) userId: string, @Ctx() ctx: Context): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    // Each change is an event to every instance: spent from the edit rate, as pins are.
    return ctx.services.rates.edit.spend(me, 'You are changing blocks too fast; slow down.', () => ctx.services.blocks.block(ctx.em, me, userId));
  }

  @Authorized()
  @Mutation(() => Boolean, {
    description: 'Lifts a block, also one on an account deleted since: their messages, typing and presence show again (the friendship does not come back). Idempotent: true. The same errors as blockUser.',
  })
  async unblockUser(@Arg('userId', () => IdScalar, { description: 'The user to unblock.' }) userId: string, @Ctx() ctx: Context): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are changing blocks too fast; slow down.', () => ctx.services.blocks.unblock(ctx.em, me, userId));
  }
}
