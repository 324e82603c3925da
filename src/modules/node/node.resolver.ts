import { Arg, Authorized, Ctx, Query, Resolver } from 'type-graphql';
import { Node } from '../../shared/graphql/node';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';

/** Relay's Global Object Identification: refetch any object by its id. */
@Resolver()
export class NodeResolver {
  @Authorized()
  @Query(() => Node, {
    nullable: true,
    description:
      'The object with this id (a User, Group, Message, Project, Conversation, ProjectAction or Report), as its own query shows it to the viewer; null when there is none or the viewer may not see it (never an error that would tell which).',
  })
  async node(@Arg('id', () => IdScalar, { description: "An object's `id`, as any field returned it." }) id: string, @Ctx() ctx: Context): Promise<Node | null> {
    const [found] = await ctx.services.nodes.nodes(ctx.em, viewerOf(ctx).userId, [id], ctx.loaders);
    return found;
  }

  @Authorized()
  @Query(() => [Node], {
    nullable: 'items',
    description: '`node` for each id, in the order given (null where `node` would be null); at most 100 ids.',
  })
  nodes(@Arg('ids', () => [IdScalar], { description: 'Up to 100 ids; repeats are answered again.' }) ids: string[], @Ctx() ctx: Context): Promise<(Node | null)[]> {
    return ctx.services.nodes.nodes(ctx.em, viewerOf(ctx).userId, ids, ctx.loaders);
  }
}
