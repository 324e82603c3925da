import { Arg, Args, ArgsType, Authorized, Ctx, Field, FieldResolver, Info, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { argumentGiven, type ConnectionShape } from '../../shared/graphql/connection';
import type { GraphQLResolveInfo } from 'graphql';
import { SYSTEM_USER, toUserType } from './user.mapper';
import { PresenceStatus, UserConnection, UserType } from './user.types';

@ArgsType()
class UsersArgs {
  @Field(() => String, { nullable: true }) search?: string | null;
  @Field(() => Int, { nullable: true, defaultValue: 20 }) first?: number | null;
  @Field(() => String, { nullable: true }) after?: string | null;
  @Field(() => Int, { nullable: true }) last?: number | null;
  @Field(() => String, { nullable: true }) before?: string | null;
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
    // The placeholder that stands for no account (see NodeService), as every field showed it.
    if (id === SYSTEM_USER.id) return SYSTEM_USER;
    const user = await ctx.services.users.find(ctx.em, id);
    return user ? toUserType(user) : null;
  }

  @Authorized()
  @Query(() => UserConnection)
  users(@Args() args: UsersArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<ConnectionShape<UserType>> {
    return ctx.services.users.list(ctx.em, args, (name) => argumentGiven(info, name));
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
