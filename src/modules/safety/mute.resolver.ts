import DataLoader from 'dataloader';
import { Arg, Authorized, Ctx, FieldResolver, Mutation, Resolver, Root } from 'type-graphql';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import type { Loaders } from '../loaders';
import { ConversationInput, ConversationType } from '../conversation/conversation.types';

/** Per operation (keyed by its loaders): the viewer's mutes of every conversation in a response, in one query. */
const mutesOf = new WeakMap<Loaders, DataLoader<string, Date | null>>();

@Resolver(() => ConversationType)
export class MuteResolver {
  @Authorized()
  @Mutation(() => ConversationType, {
    description:
      "Mutes a conversation for the viewer: it still counts unread messages (hide the badge while mutedUntil is set) and sends no offline notification, except for mentions of the viewer. The viewer's other sessions get conversationUpdated. Errors: as history for the conversation; BAD_USER_INPUT for an until not in the future or more than 366 days ahead, or a direct conversation without a message yet.",
  })
  async muteConversation(
    @Arg('conversation', () => ConversationInput, { description: 'The conversation to mute: exactly one of groupId, userId (direct) or projectId.' }) conversation: ConversationInput,
    @Arg('until', () => Date, { nullable: true, description: 'When the mute ends by itself (in the future, at most 366 days ahead). Left out: until unmuted (mutedUntil reads 9999-12-31T23:59:59.999Z).' })
    until: Date | null,
    @Ctx() ctx: Context,
  ): Promise<ConversationType> {
    const me = viewerOf(ctx).userId;
    // Each change is an event to every instance: spent from the edit rate, as pins are.
    return ctx.services.rates.edit.spend(me, 'You are changing mutes too fast; slow down.', () => ctx.services.mutes.mute(ctx.em, me, conversation, until));
  }

  @Authorized()
  @Mutation(() => ConversationType, { description: "Ends the viewer's mute of a conversation now (idempotent). The same errors as muteConversation, but for until." })
  async unmuteConversation(
    @Arg('conversation', () => ConversationInput, { description: 'The conversation to unmute: exactly one of groupId, userId (direct) or projectId.' }) conversation: ConversationInput,
    @Ctx() ctx: Context,
  ): Promise<ConversationType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are changing mutes too fast; slow down.', () => ctx.services.mutes.unmute(ctx.em, me, conversation));
  }

  @FieldResolver(() => Date, {
    nullable: true,
    description:
      "When the viewer's mute of this conversation ends (9999-12-31T23:59:59.999Z: until unmuted); null when not muted or the mute is over. Only the viewer sees their own mutes.",
  })
  mutedUntil(@Root() c: ConversationType & { mutedUntil?: Date | null }, @Ctx() ctx: Context): Date | null | Promise<Date | null> {
    if (c.mutedUntil !== undefined) return c.mutedUntil && c.mutedUntil.getTime() > Date.now() ? c.mutedUntil : null;
    const viewerId = viewerOf(ctx).userId;
    // A realtime session holds its user's mutes: an event's row costs no query.
    const held = ctx.services.mutes.held(viewerId, c.id);
    if (held !== undefined) return held;
    const loaders = ctx.loaders;
    let loader = mutesOf.get(loaders);
    if (!loader) {
      const em = ctx.em;
      loader = new DataLoader(async (keys) => {
        const found = await ctx.services.mutes.of(em, viewerId, keys);
        return keys.map((k) => found.get(k) ?? null);
      });
      mutesOf.set(loaders, loader);
    }
    return loader.load(c.id);
  }
}
