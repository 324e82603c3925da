import type { GraphQLResolveInfo } from 'graphql';
import { Arg, Authorized, Ctx, FieldResolver, Info, Int, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { argumentGiven, encodeCursor } from '../../shared/graphql/connection';
import { isoOf } from '../../shared/time';
import { viewerOf } from '../auth/auth.viewer';
import { eventToLocalMember, type Context } from '../context';
import { PayloadTooLargeError } from '../../shared/errors';
import { Topic, type MessageEventPayload, type MessagePayload } from '../../shared/pubsub/topics';
import { GroupType } from '../group/group.types';
import { SYSTEM_USER } from '../user/user.mapper';
import { UserType } from '../user/user.types';
import { ConversationInput } from '../conversation/conversation.types';
import { inStream } from './thread.service';
import { MAX_REACTION_KINDS } from './reaction.validation';
import { payloadToMessageEventType, payloadToMessageType, toReactionCounts } from './message.mapper';
import {
  AttachmentType,
  MessageConnection,
  MessageEventType,
  MessageType,
  ReactionCountType,
  SendMessageInput,
} from './message.types';

@Resolver(() => MessageType)
export class MessageResolver {
  @Authorized()
  @Mutation(() => MessageType, { description: 'Persisted before it is published.' })
  async sendMessage(@Arg('input', () => SendMessageInput) input: SendMessageInput, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    // The context forks its EntityManager on first use: a batched send never asks for it.
    // A retry (its clientMessageId stored already) writes nothing: it costs nothing, and past the limit it still gets the first message.
    const messages = ctx.services.messages;
    const retry = input.clientMessageId ? { limited: () => messages.retryPastLimit(ctx.em, me, input), free: (m: MessageType) => messages.wasRetry(m) } : undefined;
    return ctx.services.rates.sendMessage.spend(me, 'You are sending messages too fast; slow down.', () => ctx.services.messages.send(() => ctx.em, me, input), retry);
  }

  @Authorized()
  @Query(() => MessageConnection, {
    description: 'Default: the newest 10; last/before pages back in time; first/after catches up after a reconnect. Edges oldest first.',
  })
  history(
    @Arg('conversation', () => ConversationInput) conversation: ConversationInput,
    @Arg('last', () => Int, { nullable: true, defaultValue: 10 }) last: number | null,
    @Arg('before', () => String, { nullable: true }) before: string | null,
    @Arg('first', () => Int, { nullable: true }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() ctx: Context,
    @Info() info: GraphQLResolveInfo,
  ): Promise<MessageConnection> {
    // `last` as the client gave it: its default (10) must not clash with first/after.
    return ctx.services.messages.history(() => ctx.em, viewerOf(ctx).userId, conversation, { last: argumentGiven(info, 'last') ? last : null, before, first, after });
  }

  @Authorized()
  @Subscription(() => MessageType, {
    description:
      "Without a conversation: every conversation the viewer is in. New messages of the timeline (replies kept in their thread left out); with conversation.threadId, that thread's replies only.",
    subscribe: async ({ args, context }: SubscribeResolverData<unknown, { conversation?: ConversationInput | null }, Context>) => {
      const me = viewerOf(context).userId;
      const { threads, conversationAccess, pubsub, blocks } = context.services;
      // Checked once here; afterwards membership (and blocks) are read from memory, so leaving stops delivery at once.
      // It listens while the check runs (iterateChecked), so nothing sent meanwhile is missed.
      const check = args.conversation ? threads.subscriptionFilter(context.em, me, args.conversation) : null;
      return pubsub.iterateChecked(Topic.MessageAdded, check, (p, only) => (inStream(p, only?.threadId) && conversationAccess.visibleTo(me, p, only) && !blocks.hides(me, p.senderId) ? p : undefined), {
        keys: me,
      });
    },
  })
  messageAdded(
    @Root() p: MessagePayload,
    @Arg('conversation', () => ConversationInput, { nullable: true }) _conversation?: ConversationInput | null,
  ): MessageType {
    return payloadToMessageType(p);
  }

  @Authorized()
  @Mutation(() => MessageType, { description: 'Sender only.' })
  async editMessage(@Arg('messageId', () => IdScalar) messageId: string, @Arg('content') content: string, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are editing too fast; slow down.', () => ctx.services.messages.edit(ctx.em, me, messageId, content));
  }

  @Authorized()
  @Mutation(() => Boolean, { description: "Sender, or the group's owner or an admin (the lobby's admins too). A tombstone stays: id, sender, createdAt." })
  async deleteMessage(@Arg('messageId', () => IdScalar) messageId: string, @Ctx() ctx: Context): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.edit.spend(me, 'You are deleting too fast; slow down.', () => ctx.services.messages.delete(ctx.em, me, messageId));
  }

  @Authorized()
  @Mutation(() => MessageType, { description: `One emoji (a single grapheme); idempotent. A message takes at most ${MAX_REACTION_KINDS} different emoji: another is BAD_USER_INPUT.` })
  async addReaction(@Arg('messageId', () => IdScalar) messageId: string, @Arg('emoji') emoji: string, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.reaction.spend(me, 'You are reacting too fast; slow down.', () => ctx.services.messages.react(ctx.em, me, messageId, emoji, true));
  }

  @Authorized()
  @Mutation(() => MessageType, { description: 'Idempotent.' })
  async removeReaction(@Arg('messageId', () => IdScalar) messageId: string, @Arg('emoji') emoji: string, @Ctx() ctx: Context): Promise<MessageType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.reaction.spend(me, 'You are reacting too fast; slow down.', () => ctx.services.messages.react(ctx.em, me, messageId, emoji, false));
  }

  @Authorized()
  @Subscription(() => MessageEventType, {
    description: "Edits, deletions, reactions, pins and THREAD_UPDATED (a reply came: the root's counters). No argument: all the viewer's conversations.",
    subscribe: async ({ args, context }: SubscribeResolverData<unknown, { conversation?: ConversationInput | null }, Context>) => {
      const me = viewerOf(context).userId;
      const { messages, conversationAccess, pubsub, blocks } = context.services;
      const check = args.conversation ? messages.subscriptionFilter(context.em, me, args.conversation) : null;
      return pubsub.iterateChecked(
        Topic.MessageEvent,
        check,
        (p, only) => (conversationAccess.visibleTo(me, p.message, only) && !blocks.hides(me, p.message.senderId) && !(p.replySenderId && blocks.hides(me, p.replySenderId)) ? p : undefined),
        { keys: me },
      );
    },
  })
  messageEvent(
    @Root() p: MessageEventPayload,
    @Arg('conversation', () => ConversationInput, { nullable: true }) _conversation?: ConversationInput | null,
  ): MessageEventType {
    return payloadToMessageEventType(p);
  }

  @FieldResolver(() => IdScalar, { description: 'The id of its Conversation, the same in every query and event.' })
  conversationId(@Root() m: MessageType): string {
    return m.conversationKey;
  }

  @FieldResolver(() => String, {
    description:
      "Its place in its conversation's history, the cursor history's edge of it has: history(first/after: cursor) reads what came after it, as a reconnected client catches up from the last message pushed to it; a reply's, given to thread(first/after), the replies after it.",
  })
  cursor(@Root() m: MessageType): string {
    return encodeCursor({ k: isoOf(m.createdAt), id: m.id });
  }

  @FieldResolver(() => [ReactionCountType], { description: 'Per emoji, in the order first used.' })
  async reactions(@Root() m: MessageType, @Ctx() ctx: Context): Promise<ReactionCountType[]> {
    return toReactionCounts(m.reactionList ?? (await ctx.loaders.reactions.load(m.id)), ctx.viewer?.userId);
  }

  @FieldResolver(() => UserType)
  sender(@Root() m: MessageType, @Ctx() ctx: Context): UserType | Promise<UserType> {
    // Events carry their sender: answered at once, so executing an event needs no promise.
    return m.sender ?? ctx.loaders.user.load(m.senderId).then((u) => u ?? SYSTEM_USER);
  }

  @FieldResolver(() => UserType, { nullable: true, description: 'Set for direct messages, and for private messages inside a project.' })
  recipient(@Root() m: MessageType, @Ctx() ctx: Context): Promise<UserType | null> {
    return m.recipientId ? ctx.loaders.user.load(m.recipientId) : Promise.resolve(null);
  }

  @FieldResolver(() => GroupType, { nullable: true, description: 'Set for group messages (the lobby is a group).' })
  group(@Root() m: MessageType, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<GroupType | null> {
    if (!m.groupId) return Promise.resolve(null);
    // An event to a member connected here: the group as every subscriber here reads it (one read a
    // group for a moment, not one an event a subscriber: see GroupSnapshots).
    return eventToLocalMember(ctx, info, 'group', m.groupId) ? ctx.services.groupSnapshots.get(ctx.em, m.groupId) : ctx.loaders.visibleGroup.load(m.groupId);
  }

  @FieldResolver(() => AttachmentType, { nullable: true })
  attachment(@Root() m: MessageType): AttachmentType | null {
    return m.attachmentMeta;
  }
}

@Resolver(() => AttachmentType)
export class AttachmentResolver {
  @FieldResolver(() => String, {
    description:
      'An absolute link that needs no token (for <img src> and <a href>), signed and valid for ATTACHMENT_URL_TTL (5 minutes): ask again for a fresh one. `/attachments/<id>` with the bearer token works too, for members of the conversation.',
  })
  url(@Root() a: AttachmentType, @Ctx() ctx: Context): string {
    return ctx.services.attachmentLinks.url(a.id, ctx.origin);
  }

  @FieldResolver(() => String, {
    description:
      'The file itself; loaded only when asked for. In a subscription only for files up to 256 KiB (less when WS_MAX_BUFFERED_BYTES is below 683 KiB; past it PAYLOAD_TOO_LARGE, fetch it by url or with history), and in at most 4 of a user\'s subscriptions at once on an instance (the next is refused with RATE_LIMITED). One response carries at most ATTACHMENT_MAX_BYTES_PER_RESPONSE of it (beyond: PAYLOAD_TOO_LARGE, and as this field is non-null the error makes that message\'s whole `attachment` null in the answer), and a user\'s queries RATE_LIMIT_ATTACHMENT_DATA (100 MiB per 10 s; beyond: RATE_LIMITED, the same way); url has no such limit, so a page of messages asks for url and fetches bytes one message at a time.',
  })
  async base64(@Root() a: AttachmentType, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<string> {
    // A subscription's shape runs per event: its executions share one load, for small files only.
    if (info.operation.operation === 'subscription') return ctx.services.eventAttachments.base64(ctx.em, a);
    // Spent before loading: resolvers of a page run together, and the bytes must not be read to be refused.
    if (!ctx.attachmentBudget.take(a.size)) {
      const max = ctx.services.env.ATTACHMENT_MAX_BYTES_PER_RESPONSE;
      throw new PayloadTooLargeError(`One response carries at most ${max} bytes of attachment data; fetch the others by url or in another request.`, 'base64');
    }
    // And a user's responses together, at most RATE_LIMIT_ATTACHMENT_DATA (url costs nothing to serve).
    // A file refused there carries no bytes: the response's budget gets its size back (a smaller file
    // after it was told PAYLOAD_TOO_LARGE when the rate was what stopped it: an outside probe).
    try {
      ctx.services.rates.attachmentData.spend(ctx.viewer?.userId ?? ctx.ip, a.size / (1024 * 1024), 'Too much attachment data read as base64 lately; fetch files by url, or try again later.');
    } catch (e) {
      ctx.attachmentBudget.giveBack(a.size);
      throw e;
    }
    const file = await ctx.services.messages.attachmentData(ctx.em, a.id);
    return file ? file.data.toString('base64') : '';
  }
}

@Resolver(() => MessageConnection)
export class MessageConnectionResolver {
  @FieldResolver(() => Int)
  totalCount(@Root() c: MessageConnection): Promise<number> {
    return c.totalCount();
  }
}
