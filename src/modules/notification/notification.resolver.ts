import { Arg, Authorized, Ctx, FieldResolver, Mutation, Resolver, Root } from 'type-graphql';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { NotFoundError } from '../../shared/errors';
import { UserType } from '../user/user.types';
import { NotificationLevel } from './notification.types';

@Resolver(() => UserType)
export class NotificationResolver {
  @Authorized()
  @Mutation(() => UserType, { description: 'Which offline notifications (webhooks) the viewer gets.' })
  async setNotificationLevel(@Arg('level', () => NotificationLevel) level: NotificationLevel, @Ctx() ctx: Context): Promise<UserType> {
    const viewer = viewerOf(ctx);
    await ctx.services.notifications.setLevel(ctx.em, viewer.userId, level);
    const user = await ctx.loaders.user.load(viewer.userId);
    if (!user) throw new NotFoundError('User');
    return user;
  }

  @FieldResolver(() => NotificationLevel, { description: "The viewer's own (on `me`); FORBIDDEN for anyone else." })
  notificationLevel(@Root() user: UserType, @Ctx() ctx: Context): Promise<NotificationLevel> {
    return ctx.services.notifications.level(ctx.em, viewerOf(ctx).userId, user.id);
  }
}
