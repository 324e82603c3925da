import { Arg, Args, Authorized, Ctx, Int, Mutation, Resolver } from 'type-graphql';
import { viewerOf } from './auth.viewer';
import type { Context } from '../context';
import { toAuthPayload } from './auth.mapper';
import { AuthPayload, LoginArgs, SignupArgs } from './auth.types';

@Resolver()
export class AuthResolver {
  @Mutation(() => AuthPayload)
  async signup(@Args() args: SignupArgs, @Ctx() ctx: Context): Promise<AuthPayload> {
    const result = await ctx.services.rates.signup.spendWhenMade(ctx.ip, 'Too many signups from your address; try again later.', (made) => ctx.services.auth.signup(ctx.em, args, ctx.ip, made));
    return withOwnPresence(ctx, toAuthPayload(result));
  }

  @Mutation(() => AuthPayload, { description: 'The user goes ONLINE.' })
  async login(@Args() args: LoginArgs, @Ctx() ctx: Context): Promise<AuthPayload> {
    await ctx.services.rates.login.consume(ctx.ip, 'Too many sign-in attempts from your address; try again later.');
    return withOwnPresence(ctx, toAuthPayload(await ctx.services.auth.login(ctx.em, args.username, args.password, ctx.ip, ctx.userAgent ?? null)));
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Revokes this token; OFFLINE unless another session is live.' })
  logout(@Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.auth.logout(ctx.em, viewerOf(ctx));
  }

  @Authorized()
  @Mutation(() => Int, {
    description:
      "Revokes every other token of the viewer's account (a lost device, a leaked token): their sockets close with 4403 and their SSE streams end, on every instance, and their requests are UNAUTHENTICATED. This token stays. The password is required (BAD_USER_INPUT when wrong, counted with logins' failures). How many were revoked (0: none).",
  })
  async logoutOtherSessions(@Arg('password', () => String, { description: "The account's password, as deleteAccount asks: a token alone (a stolen one) can't end its owner's sessions." }) password: string, @Ctx() ctx: Context): Promise<number> {
    return ctx.services.auth.logoutOthers(ctx.em, viewerOf(ctx), password, ctx.ip);
  }

  @Authorized()
  @Mutation(() => String, {
    description:
      'A single-use ticket, valid 60 s, that stands for this token in `/graphql/stream?ticket=` (a plain EventSource cannot send an Authorization header): it reads (subscriptions, queries), never a mutation (FORBIDDEN). Counted with the SSE streams per user (RATE_LIMIT_WS_MESSAGES): past it, RATE_LIMITED.',
  })
  async streamTicket(@Ctx() ctx: Context): Promise<string> {
    const viewer = viewerOf(ctx);
    // Each stream needs one: a ticket costs what a stream does, and no one can pile them up.
    await ctx.services.rates.streams.consume(viewer.userId, 'Too many stream tickets; slow down.');
    return ctx.services.tickets.issue(viewer);
  }

  @Authorized()
  @Mutation(() => Boolean)
  deleteAccount(@Arg('password') password: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.auth.deleteAccount(ctx.em, viewerOf(ctx), password, ctx.ip);
  }
}

/**
 * The payload's user is the one who just signed in, though the request carried no token: their
 * presence reads as they see it themselves (whatever PRESENCE_VISIBILITY and their own visibility).
 */
async function withOwnPresence(ctx: Context, payload: AuthPayload): Promise<AuthPayload> {
  const id = payload.user.id;
  const [own] = await ctx.services.presence.statesFor(id, [id]);
  ctx.loaders.presence.prime(id, own);
  return payload;
}
