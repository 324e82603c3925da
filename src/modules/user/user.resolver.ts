import { Arg, Args, ArgsType, Authorized, Ctx, Field, FieldResolver, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf, type Context } from '../../graphql/context';
import { decodeCursor, pageSize, toConnection, type ConnectionShape } from '../../shared/graphql/connection';
import { cleanSearch, isId } from '../../shared/validation';
import { User } from './user.entity';
import { toUserType } from './user.mapper';
import { userRepository } from './user.repository';
import { PresenceStatus, UserConnection, UserType } from './user.types';

@ArgsType()
class UsersArgs {
  @Field(() => String, { nullable: true }) search?: string | null;
  @Field(() => Int, { nullable: true, defaultValue: 20 }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
}

@Resolver(() => UserType)
export class UserResolver {
  @Query(() => UserType, { nullable: true, description: 'Null without a token.' })
  async me(@Ctx() ctx: Context): Promise<UserType | null> {
    if (!ctx.viewer) return null;
    return ctx.loaders.user.load(ctx.viewer.userId);
  }

  @Authorized()
  @Query(() => UserType, { nullable: true })
  async user(@Arg('id', () => IdScalar) id: string, @Ctx() ctx: Context): Promise<UserType | null> {
    if (!isId(id)) return null;
    const user = await ctx.em.findOne(User, { id, deletedAt: null });
    return user ? toUserType(user) : null;
  }

  @Authorized()
  @Query(() => UserConnection)
  async users(@Args() args: UsersArgs, @Ctx() ctx: Context): Promise<ConnectionShape<UserType>> {
    const limit = pageSize(args.first, 'first', 20);
    const after = args.after ? decodeCursor(args.after, 'after') : null;
    const { rows, total } = await userRepository.search(ctx.em, { search: cleanSearch(args.search), after, limit });
    return toConnection(rows, { limit, backward: false, hasCursor: !!after, totalCount: total, key: (u) => ({ k: u.username.toLowerCase(), id: u.id }), node: toUserType });
  }

  @Authorized()
  @Mutation(() => UserType)
  async updateProfile(
    @Arg('username', () => String, { nullable: true }) username: string | null,
    @Arg('displayName', () => String, { nullable: true }) displayName: string | null | undefined,
    @Ctx() ctx: Context,
  ): Promise<UserType> {
    return toUserType(await ctx.services.auth.updateProfile(ctx.em, viewerOf(ctx), { username, displayName }));
  }

  @FieldResolver(() => PresenceStatus)
  async status(@Root() user: UserType, @Ctx() ctx: Context): Promise<PresenceStatus> {
    return (await ctx.loaders.presence.load(user.id)).status as PresenceStatus;
  }

  @FieldResolver(() => Date, { nullable: true })
  async lastSeenAt(@Root() user: UserType, @Ctx() ctx: Context): Promise<Date | null> {
    return (await ctx.loaders.presence.load(user.id)).lastSeenAt;
  }
}
