import type { GraphQLResolveInfo } from 'graphql';
import { Arg, Authorized, Ctx, FieldResolver, Info, Int, Query, Resolver, Root } from 'type-graphql';
import { argumentGiven } from '../../shared/graphql/connection';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { ConversationType } from '../conversation/conversation.types';
import { SYSTEM_USER } from '../user/user.mapper';
import { UserType } from '../user/user.types';
import { MENTIONS_SHOWN } from './mention.repository';
import { MessageConnection, MessageType } from './message.types';

@Resolver(() => MessageType)
export class MentionResolver {
  @Authorized()
  @Query(() => MessageConnection, {
    description:
      "Messages that mention the viewer, newest first, in conversations they are still a member of (deleted messages never, nor those of users the viewer blocks, mentions made before the block included). first/after pages forward (the default), last/before back from the oldest end; at most 100 a page. Both ways at once, or a cursor this connection did not issue: BAD_USER_INPUT.",
  })
  mentions(
    @Arg('first', () => Int, { nullable: true, defaultValue: 20, description: 'Mentions after `after`, newest first: at most 100 (default 20).' }) first: number | null,
    @Arg('after', () => String, { nullable: true, description: 'A cursor from this connection: the page starts after it.' }) after: string | null,
    @Arg('last', () => Int, { nullable: true, description: 'Mentions before `before` (or the oldest ones), at most 100 (default 20); not with first/after.' }) last: number | null,
    @Arg('before', () => String, { nullable: true, description: 'A cursor from this connection: the page ends before it; not with first/after.' }) before: string | null,
    @Ctx() ctx: Context,
    @Info() info: GraphQLResolveInfo,
  ): Promise<MessageConnection> {
    return ctx.services.threads.mentions(ctx.em, viewerOf(ctx).userId, { first, after, last, before }, (name) => argumentGiven(info, name));
  }
}

@Resolver(() => MessageType)
export class MessageMentionsResolver {
  @FieldResolver(() => [UserType], {
    description:
      `Users its text mentions (@username, @here, @all), resolved when it was sent and again at each edit (an @here or @all the edit keeps reaches whom it reached when sent): members of the conversation only, never the sender; names that match no member stay plain text. Username order, the first ${MENTIONS_SHOWN} (an @all or @here mentions every member it names: unreadMentionCount, the mentions query and notifications count each one).`,
  })
  async mentions(@Root() m: MessageType, @Ctx() ctx: Context): Promise<UserType[]> {
    if (m.mentionList) return m.mentionList;
    const ids = await ctx.loaders.mentions.load(m.id);
    return (await ctx.loaders.user.loadMany(ids)).map((u) => (u && !(u instanceof Error) ? u : SYSTEM_USER));
  }
}

@Resolver(() => ConversationType)
export class ConversationMentionsResolver {
  @FieldResolver(() => Int, {
    description:
      "Messages of this conversation's timeline after the viewer's read marker that mention them (the red badge), counted up to 100 (show 99+ beyond); mentions by users the viewer blocks don't count. Mentions in replies kept in a thread count in `threads` instead.",
  })
  unreadMentionCount(@Root() c: ConversationType, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): number | Promise<number> {
    // A query counts; a conversationUpdated row takes the count its event carried, else the one last told (see ThreadService.badges).
    const viewerId = info.operation.operation === 'subscription' ? ctx.viewer?.userId : undefined;
    if (!viewerId) return c.unreadMentionCount ?? badgeOf(c, ctx).load(c.id);
    const { threads } = ctx.services;
    const unsure = threads.badgeUnsure(viewerId);
    if (c.unreadMentionCount !== undefined && !unsure) {
      threads.rememberBadge(viewerId, c, c.unreadMentionCount);
      return c.unreadMentionCount;
    }
    return threads.badge(viewerId, c, badgeOf(c, ctx), !!c.reloadBadge || unsure);
  }
}

/**
 * Where a row's badge is read: as of the marker and newest message the row shows (every row says:
 * see conversation.mapper), so that it agrees with the row's unread count.
 */
function badgeOf(c: ConversationType, ctx: Context): { load(key: string): Promise<number> } {
  return { load: (key) => ctx.loaders.mentionsBetween.load({ key, from: c.badgeFrom ?? 0, to: c.badgeSeq ?? 0 }) };
}
