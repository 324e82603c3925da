import { Arg, Authorized, Ctx, FieldResolver, Mutation, Resolver, Root } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { ConversationType } from '../conversation/conversation.types';
import { UserType } from '../user/user.types';
import { MessageType } from './message.types';

@Resolver(() => MessageType)
export class PinResolver {
  @Authorized()
  @Mutation(() => MessageType, { description: 'Any member of a group or direct conversation; in a project, its owner. At most 50 per conversation; pinning twice changes nothing.' })
  async pinMessage(@Arg('messageId', () => IdScalar) messageId: string, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are pinning too fast; slow down.', () => ctx.services.pins.pin(ctx.em, me, messageId));
  }

  @Authorized()
  @Mutation(() => MessageType, { description: 'Whoever may pin; unpinning a message that is not pinned changes nothing.' })
  async unpinMessage(@Arg('messageId', () => IdScalar) messageId: string, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are unpinning too fast; slow down.', () => ctx.services.pins.unpin(ctx.em, me, messageId));
  }

  @FieldResolver(() => Date, { nullable: true, description: 'When it was pinned in its conversation (null: not pinned, or deleted).' })
  async pinnedAt(@Root() m: MessageType, @Ctx() ctx: Context): Promise<Date | null> {
    const pin = m.pin !== undefined ? m.pin : await ctx.loaders.pin.load(m.id);
    return pin?.at ?? null;
  }

  @FieldResolver(() => UserType, { nullable: true, description: 'Who pinned it.' })
  async pinnedBy(@Root() m: MessageType, @Ctx() ctx: Context): Promise<UserType | null> {
    const pin = m.pin !== undefined ? m.pin : await ctx.loaders.pin.load(m.id);
    return pin?.byId ? ctx.loaders.user.load(pin.byId) : null;
  }
}

@Resolver(() => ConversationType)
export class ConversationPinsResolver {
  @FieldResolver(() => [MessageType], { description: 'Its pinned messages, newest pin first (at most 50).' })
  pinnedMessages(@Root() c: ConversationType, @Ctx() ctx: Context): Promise<MessageType[]> {
    return ctx.services.pins.pinnedMessages(ctx.em, c.id, viewerOf(ctx).userId);
  }
}
