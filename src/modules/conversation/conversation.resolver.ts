import { Arg, Args, Authorized, Ctx, FieldResolver, Info, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { BadUserInputError, RateLimitedError } from '../../shared/errors';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { argumentGiven, type ConnectionShape } from '../../shared/graphql/connection';
import type { GraphQLResolveInfo } from 'graphql';
import { Topic, type ReadReceiptPayload, type SessionEventPayload, type TypingPayload } from '../../shared/pubsub/topics';
import { GroupType } from '../group/group.types';
import { MessageType } from '../message/message.types';
import { ProjectType } from '../project/project.types';
import { UserType } from '../user/user.types';
import { payloadToReadReceiptType, payloadToSessionEventType, payloadToTypingEventType } from './conversation.mapper';
import { ConversationConnection, ConversationInput, ConversationsArgs, ConversationType, ReadReceiptType, SessionEventType, TypingEventType } from './conversation.types';
import type { ConversationFilter } from './conversation.access';

type Sub<A = Record<string, never>> = SubscribeResolverData<unknown, A, Context>;

/** The check of the conversation a subscription narrows to (see PubSub.iterateChecked), or null for all of the viewer's. */
function only(context: Context, conversation?: ConversationInput | null) {
  return conversation ? context.services.conversationAccess.subscriptionFilter(context.em, viewerOf(context).userId, conversation) : null;
}

/** Typists a typing subscription remembers as shown (see its filter). */
const SHOWN_TYPISTS_MAX = 256;

@Resolver(() => ConversationType)
export class ConversationResolver {
  @Authorized()
  @Query(() => ConversationConnection, { description: 'Most recent activity first; a direct conversation appears once a message was exchanged.' })
  conversations(@Args() args: ConversationsArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<ConnectionShape<ConversationType>> {
    return ctx.services.conversations.list(ctx.em, viewerOf(ctx).userId, args, (name) => argumentGiven(info, name));
  }

  @Authorized()
  @Query(() => ConversationType, { nullable: true, description: 'The same errors as history for a conversation the viewer is not in.' })
  conversation(@Arg('conversation', () => ConversationInput) conversation: ConversationInput, @Ctx() ctx: Context): Promise<ConversationType | null> {
    return ctx.services.conversations.get(ctx.em, viewerOf(ctx).userId, conversation);
  }

  @Authorized()
  @Query(() => [ReadReceiptType], { description: "Other members' read markers (groups: up to 100, the most advanced first), not those of users the viewer blocks." })
  readReceipts(@Arg('conversation', () => ConversationInput) conversation: ConversationInput, @Ctx() ctx: Context): Promise<ReadReceiptType[]> {
    return ctx.services.conversations.receipts(ctx.em, viewerOf(ctx).userId, conversation);
  }

  @Authorized()
  @Mutation(() => ConversationType, { description: 'No messageId: up to the newest; never moves back.' })
  markRead(
    @Arg('conversation', () => ConversationInput) conversation: ConversationInput,
    @Arg('messageId', () => IdScalar, { nullable: true }) messageId: string | null,
    @Ctx() ctx: Context,
  ): Promise<ConversationType> {
    return ctx.services.conversations.markRead(ctx.em, viewerOf(ctx).userId, conversation, messageId);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Ephemeral, never stored; others get at most one event per 2 s; lapses after 6 s without a refresh.' })
  async setTyping(
    @Arg('conversation', () => ConversationInput) conversation: ConversationInput,
    @Arg('typing', () => Boolean, { nullable: true, defaultValue: true }) typing: boolean | null,
    @Ctx() ctx: Context,
  ): Promise<boolean> {
    const me = viewerOf(ctx).userId;
    // Left out means true; an explicit null says neither.
    if (typing === null) throw new BadUserInputError('typing is true or false (left out: true).', 'typing');
    const set = () => ctx.services.typing.set(() => ctx.em, me, conversation, typing);
    const done = ctx.services.rates.typing.spend(me, 'You are sending typing updates too fast; slow down.', set);
    if (typing) return done;
    // A stop only ends an indicator: refused past the limit, the others saw typing till its lapse
    // (an outside probe). Past it, one where the user is typing per throttle window still goes through.
    return done.catch((e: unknown) => {
      if (!(e instanceof RateLimitedError) || !ctx.services.typing.stopPastLimit(me, conversation)) throw e;
      return set();
    });
  }

  @Authorized()
  @Subscription(() => ConversationType, {
    description: "The viewer's row changed: a new message, its unread count, its read marker (from another device too), a rename.",
    subscribe: ({ context }: Sub) => {
      const me = viewerOf(context).userId;
      const { blocks, conversations, pubsub } = context.services;
      // A viewer who blocks someone sees their rows without the blocked users' messages (modules/safety).
      return pubsub.iterate(Topic.ConversationUpdated, (p) => (blocks.blocksAnyone(me) ? blocks.rowFor(me, p, conversations.rowFor(me, p), context.em) : conversations.rowFor(me, p)), {
        keys: me,
      });
    },
  })
  conversationUpdated(@Root() c: ConversationType | Promise<ConversationType>): ConversationType | Promise<ConversationType> {
    // A promise while the viewer's read state is being read (see ConversationService.rowFor).
    return c;
  }

  @Authorized()
  @Subscription(() => ReadReceiptType, {
    description: "Other members' read markers as they move (not those of users the viewer blocks). No argument: all the viewer's conversations.",
    subscribe: async ({ args, context }: Sub<{ conversation?: ConversationInput | null }>) => {
      const me = viewerOf(context).userId;
      const { conversationAccess, pubsub, blocks } = context.services;
      const reaches = (p: ReadReceiptPayload, conv: { key: string } | null) =>
        p.userId !== me &&
        (!conv || p.conversationKey === conv.key) &&
        conversationAccess.receiptReaches(me, p) &&
        !blocks.hides(me, p.userId) &&
        !(p.markedSenderId !== undefined && p.markedSenderId !== me && blocks.hides(me, p.markedSenderId));
      return pubsub.iterateChecked(Topic.ReadReceipt, only(context, args.conversation), (p, conv) => (reaches(p, conv) ? p : undefined), {
        keys: me,
      });
    },
  })
  readReceipt(@Root() p: ReadReceiptPayload, @Arg('conversation', () => ConversationInput, { nullable: true }) _c?: ConversationInput | null): ReadReceiptType {
    return payloadToReadReceiptType(p);
  }

  @Authorized()
  @Subscription(() => TypingEventType, {
    description: "Never the viewer's own; typing: false on a stop, a sent message, the typist's departure, or 6 s without a refresh.",
    subscribe: async ({ args, context }: Sub<{ conversation?: ConversationInput | null }>) => {
      const me = viewerOf(context).userId;
      const { conversationAccess, pubsub } = context.services;
      const { blocks } = context.services;
      // A private thread's typing reaches its other user only, and a subscription to a private thread (privateWith) gets only that thread's.
      const thread = (p: TypingPayload, conv: ConversationFilter | null) => (p.only ? p.only.includes(me) && (!conv || conv.privateWith === p.userId) : !conv?.privateWith);
      // Typists this subscription was last told `typing: true` of: blocked meanwhile, their end still
      // comes, once (else the indicator stayed on). Bounded: an end lost to a Redis outage leaves one.
      const shown = new Set<string>();
      // Typists whose end this subscription told last: an end told again (a friendship's end told
      // at once, then its lapse; a block's and its friendship's) is not (an outside probe). Bounded,
      // the oldest forgotten first: forgotten, an end goes through as before.
      const ended = new Set<string>();
      const end = (slot: string, p: TypingPayload): TypingPayload | undefined => {
        shown.delete(slot);
        if (ended.has(slot)) return undefined;
        ended.add(slot);
        if (ended.size > SHOWN_TYPISTS_MAX) ended.delete(ended.values().next().value!);
        return p;
      };
      const reaches = (p: TypingPayload, conv: ConversationFilter | null): TypingPayload | undefined => {
        if (p.userId === me || (conv && p.conversationKey !== conv.key) || !thread(p, conv) || !conversationAccess.inScope(me, p)) return undefined;
        // A project's private thread is its own indicator (its events carry the project's key).
        const slot = `${p.conversationKey}\u0000${p.userId}\u0000${p.only ? 'thread' : ''}`;
        if (blocks.hides(me, p.userId)) return !p.typing && shown.has(slot) ? end(slot, p) : undefined;
        if (!p.typing) return end(slot, p);
        ended.delete(slot);
        if (shown.size < SHOWN_TYPISTS_MAX) shown.add(slot);
        return p;
      };
      return pubsub.iterateChecked(Topic.Typing, only(context, args.conversation), reaches, {
        keys: me,
      });
    },
  })
  typing(@Root() p: TypingPayload, @Arg('conversation', () => ConversationInput, { nullable: true }) _c?: ConversationInput | null): TypingEventType {
    return payloadToTypingEventType(p);
  }

  @Authorized()
  @Subscription(() => SessionEventType, {
    description: "The account was logged in elsewhere (this socket's own session is not told).",
    subscribe: ({ context }: Sub) => {
      const viewer = viewerOf(context);
      return context.services.pubsub.iterate(Topic.SessionEvent, (p) => (p.userId === viewer.userId && p.sessionId !== viewer.sessionId ? p : undefined), {
        keys: viewer.userId,
      });
    },
  })
  sessionEvent(@Root() p: SessionEventPayload): SessionEventType {
    return payloadToSessionEventType(p);
  }

  @FieldResolver(() => GroupType, { nullable: true })
  group(@Root() c: ConversationType, @Ctx() ctx: Context): Promise<GroupType | null> {
    return c.groupId ? ctx.loaders.group.load(c.groupId) : Promise.resolve(null);
  }

  @FieldResolver(() => ProjectType, { nullable: true })
  project(@Root() c: ConversationType, @Ctx() ctx: Context): Promise<ProjectType | null> {
    return c.projectId ? ctx.loaders.project.load(c.projectId) : Promise.resolve(null);
  }

  @FieldResolver(() => UserType, { nullable: true, description: 'Direct: the other user.' })
  peer(@Root() c: ConversationType, @Ctx() ctx: Context): Promise<UserType | null> {
    return c.peerId ? ctx.loaders.user.load(c.peerId) : Promise.resolve(null);
  }

  @FieldResolver(() => MessageType, { nullable: true, description: 'The newest message the viewer may see (a deleted one shows as deleted).' })
  lastMessage(@Root() c: ConversationType, @Ctx() ctx: Context): MessageType | null | Promise<MessageType | null> {
    // An event carries it: answered at once, so executing the event needs no promise.
    if (c.lastMessage !== undefined) return c.lastMessage;
    return c.lastMessageId ? ctx.loaders.message.load(c.lastMessageId) : null;
  }
}

@Resolver(() => ReadReceiptType)
export class ReadReceiptResolver {
  @FieldResolver(() => UserType)
  async user(@Root() r: ReadReceiptType, @Ctx() ctx: Context): Promise<UserType> {
    return (await ctx.loaders.user.load(r.userId))!;
  }
}
