import type { GraphQLResolveInfo } from 'graphql';
import { Arg, Authorized, Ctx, FieldResolver, Info, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import { argumentGiven } from '../../shared/graphql/connection';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { UserType } from '../user/user.types';
import { MessageConnection, MessageType } from './message.types';

@Resolver(() => MessageType)
export class ThreadResolver {
  @Authorized()
  @Query(() => MessageConnection, {
    description:
      "A thread's replies, oldest first, paged as history is: default the newest 10; last/before pages back, first/after forward (at most 100). Replies of users the viewer blocks are left out (and not counted in totalCount). messageId names the root (a reply names its root's thread). NOT_FOUND for a message the viewer can't read.",
  })
  thread(
    @Arg('messageId', () => IdScalar, { description: 'The root, or one of its replies.' }) messageId: string,
    @Arg('first', () => Int, { nullable: true, description: 'Replies after `after`, oldest first.' }) first: number | null,
    @Arg('after', () => String, { nullable: true, description: 'A cursor from this connection.' }) after: string | null,
    @Arg('last', () => Int, { nullable: true, description: 'Replies before `before` (without first or last: the newest 10).' }) last: number | null,
    @Arg('before', () => String, { nullable: true, description: 'A cursor from this connection.' }) before: string | null,
    @Ctx() ctx: Context,
  ): Promise<MessageConnection> {
    return ctx.services.threads.thread(ctx.em, viewerOf(ctx).userId, messageId, { first, after, last: last ?? null, before });
  }

  @Authorized()
  @Query(() => MessageConnection, {
    description:
      "Roots of the threads the viewer takes part in (wrote the root, replied, was mentioned in a reply, or marked read), the latest reply first, in conversations they are still in (not a root by a user the viewer blocks); Message.hasUnreadReplies tells which have replies they have not read (replies of users the viewer blocks don't count). first/after pages forward (the default), last/before back from the oldest end; at most 100 a page. Both ways at once, or a cursor this connection did not issue: BAD_USER_INPUT.",
  })
  threads(
    @Arg('first', () => Int, { nullable: true, defaultValue: 20, description: 'Threads after `after`, latest reply first: at most 100 (default 20).' }) first: number | null,
    @Arg('after', () => String, { nullable: true, description: 'A cursor from this connection: the page starts after it.' }) after: string | null,
    @Arg('last', () => Int, { nullable: true, description: 'Threads before `before` (or the oldest ones), at most 100 (default 20); not with first/after.' }) last: number | null,
    @Arg('before', () => String, { nullable: true, description: 'A cursor from this connection: the page ends before it; not with first/after.' }) before: string | null,
    @Ctx() ctx: Context,
    @Info() info: GraphQLResolveInfo,
  ): Promise<MessageConnection> {
    return ctx.services.threads.threads(ctx.em, viewerOf(ctx).userId, { first, after, last, before }, (name) => argumentGiven(info, name));
  }

  @Authorized()
  @Mutation(() => MessageType, {
    description: "Marks the thread read up to its newest reply (its hasUnreadReplies is false until another reply comes); the viewer follows it from now on. Returns the root.",
  })
  async markThreadRead(@Arg('messageId', () => IdScalar, { description: 'The root, or one of its replies.' }) messageId: string, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are marking threads read too fast; slow down.', () => ctx.services.threads.markRead(ctx.em, me, messageId));
  }

  @FieldResolver(() => Boolean, {
    description: "Whether the viewer takes part in this message's thread (see threads) and it has replies they have not read; false for a message nobody answered, a reply, or a thread the viewer doesn't follow.",
  })
  hasUnreadReplies(@Root() m: MessageType, @Ctx() ctx: Context): boolean | Promise<boolean> {
    if (m.hasUnreadReplies !== undefined) return m.hasUnreadReplies;
    return m.replyCount ? ctx.loaders.unreadReplies.load(m.id) : false;
  }

  @FieldResolver(() => IdScalar, { nullable: true, description: 'The root of the thread this message replies to; null for a message that is not a reply.' })
  parentId(@Root() m: MessageType): string | null {
    return m.parentId;
  }

  @FieldResolver(() => Int, { description: 'Replies in its thread (0 for a reply, or a message nobody answered).' })
  replyCount(@Root() m: MessageType): number {
    return m.replyCount;
  }

  @FieldResolver(() => Date, { nullable: true, description: 'When the newest reply in its thread was sent (null: none).' })
  lastReplyAt(@Root() m: MessageType): Date | null {
    return m.lastReplyAt;
  }

  @FieldResolver(() => [UserType], { description: "The thread's first participants, at most 5: the root's author, then who replied, in the order they first took part; empty while the root has no reply." })
  threadParticipants(@Root() m: MessageType, @Ctx() ctx: Context): UserType[] | Promise<UserType[]> {
    if (m.participants) return m.participants;
    return m.replyCount ? ctx.loaders.threadParticipants.load(m.id) : [];
  }
}
