import { Arg, Authorized, Ctx, FieldResolver, Info, Int, Query, Resolver, Root } from 'type-graphql';
import type { GraphQLResolveInfo } from 'graphql';
import { argumentGiven } from '../../shared/graphql/connection';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { ConversationInput } from '../conversation/conversation.types';
import { SearchHitConnection } from './search.types';

@Resolver(() => SearchHitConnection)
export class SearchResolver {
  @Authorized()
  @Query(() => SearchHitConnection, {
    description:
      'Messages the viewer may read now, best match first (among the 200 newest matches; for words found in more than 5% of all messages, among the newest 600 messages), each with a highlighted snippet. Every word must match; the last one, still being typed, as a prefix. One conversation, or all of them.',
  })
  async searchMessages(
    @Arg('query') query: string,
    @Arg('conversation', () => ConversationInput, { nullable: true }) conversation: ConversationInput | null,
    @Arg('first', () => Int, { nullable: true, defaultValue: 20 }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Arg('last', () => Int, { nullable: true }) last: number | null,
    @Arg('before', () => String, { nullable: true }) before: string | null,
    @Ctx() ctx: Context,
    @Info() info: GraphQLResolveInfo,
  ): Promise<SearchHitConnection> {
    const me = viewerOf(ctx).userId;
    // Past the limit RATE_LIMITED answers first, whatever the query (CONFIGURATION.md); a refused search gives its point back.
    return ctx.services.rates.search.spend(me, 'You are searching too fast; slow down.', () =>
      ctx.services.search.search(ctx.em, me, { query, conversation, first, after, last, before }, (name) => argumentGiven(info, name)),
    );
  }

  @FieldResolver(() => Int, { description: 'Every match the viewer may read, not only the ranked ones the pages hold (over 200 matches, more than the pages reach): counted only when asked for.' })
  totalCount(@Root() c: SearchHitConnection): Promise<number> {
    return c.totalCount();
  }
}
