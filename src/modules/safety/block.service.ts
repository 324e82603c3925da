import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, ForbiddenError, NotFoundError } from '../../shared/errors';
import { transact } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic } from '../../shared/pubsub/topics';
import { isId } from '../../shared/validation';
import { directKey } from '../conversation/conversation.keys';
import { friendEvent } from '../friend/friend.mapper';
import { friendRepository } from '../friend/friend.repository';
import { groupRepository } from '../group/group.repository';
import type { ConversationUpdatedPayload } from '../../shared/pubsub/topics';
import { rowToConversation } from '../conversation/conversation.mapper';
import { conversationRepository } from '../conversation/conversation.repository';
import type { ConversationType } from '../conversation/conversation.types';
import type { User } from '../user/user.entity';
import { userRepository } from '../user/user.repository';
import { blockRepository } from './block.repository';
import type { SafetyLists } from './safety.lists';

/**
 * Blocks, private to the blocker. A block ends the pair's friendship and pending requests and
 * refuses new ones; the blocked user's messages, typing and presence leave the blocker's views
 * (the filters ask `hides`, the queries `blockedBy` in block.repository.ts). The blocked user is
 * never told: what they are refused reads as it would for any stranger.
 */
export class BlockService {
  /** Told once a block is made or lifted, after its commit (the blocker's shared rows: see onBlockChanged). */
  private changed: ((em: EntityManager, viewerId: string, userId: string) => Promise<void>) | undefined;

  constructor(
    private readonly pubsub: PubSub,
    private readonly lists: SafetyLists,
  ) {}

  /** `listener` runs once a block is made or lifted, with the blocker and the blocked. */
  onBlockChanged(listener: (em: EntityManager, viewerId: string, userId: string) => Promise<void>): void {
    this.changed = listener;
  }

  /** Blocks `userId`; true, also when they were blocked already (nothing changes then). */
  async block(em: EntityManager, viewerId: string, userId: string): Promise<boolean> {
    await this.target(em, viewerId, userId);
    const made = await transact(em, this.pubsub, async (tem, outbox) => {
      // After any request, answer or unfriending between the two that is under way (see lockPair).
      await friendRepository.lockPair(tem, viewerId, userId);
      if (!(await blockRepository.block(tem, viewerId, userId))) return false;
      // The friendship ends for both (the direct conversation leaves both sidebars, as removeFriend does), and any request between them.
      const pending = await friendRepository.pendingBetween(tem, viewerId, userId);
      const ended = await friendRepository.unfriend(tem, viewerId, userId);
      await friendRepository.dropPendingBetween(tem, viewerId, userId);
      // So do the blocked user's pending group invitations to the blocker, as a decline takes one
      // (no event): the blocker's groups showed them, a private group's members included (a probe).
      await groupRepository.dropInvitesBetween(tem, viewerId, userId);
      // Told to the blocker's sessions alone (the blocked user is not told): their other devices kept
      // the friend and the direct conversation, or the request, until they read them again (an outside probe).
      if (ended) outbox.add(Topic.FriendEvent, friendEvent('REMOVED', [viewerId, userId], null, [viewerId]));
      if (pending) outbox.add(Topic.FriendEvent, friendEvent('CANCELLED', [pending.from.id, pending.to.id], pending, [viewerId]));
      // Their direct conversation's rows went, and any mute on them with the rows.
      const key = directKey(viewerId, userId);
      outbox.add(Topic.SafetyChanged, { userId: viewerId, blockedId: userId, blocked: true, conversationKey: key, mutedUntil: null });
      outbox.add(Topic.SafetyChanged, { userId, conversationKey: key, mutedUntil: null });
      // A friendship may have ended: the two users' presence contacts are read again (contacts mode).
      outbox.add(Topic.ContactsChanged, { userIds: [viewerId, userId] });
      return true;
    });
    if (made) await this.changed?.(em, viewerId, userId);
    return true;
  }

  /** Lifts a block; true, also when there was none. */
  async unblock(em: EntityManager, viewerId: string, userId: string): Promise<boolean> {
    // A block outlives its blocked account (their messages stay hidden from the blocker), and is lifted as any other.
    const lifted = isId(userId) && userId !== viewerId && (await blockRepository.unblock(em, viewerId, userId));
    if (lifted) {
      await this.pubsub.publishSafe(Topic.SafetyChanged, { userId: viewerId, blockedId: userId, blocked: false });
      await this.changed?.(em, viewerId, userId);
    }
    // No block lifted: yourself, an unknown id, or nothing to lift (true for an account, NOT_FOUND for a deleted one).
    else await this.target(em, viewerId, userId, 'unblock');
    return true;
  }

  /** The users the viewer blocks, by username: a deleted account too, as its placeholder (its block still hides its messages, and can be lifted). */
  async blocked(em: EntityManager, viewerId: string): Promise<User[]> {
    return userRepository.byIdsByUsername(em, await blockRepository.blockedIds(em, viewerId), { deleted: true });
  }

  /**
   * Refuses a friend request between a blocked pair, whichever of them asks. The blocked user is
   * told what any refused request says, not why.
   */
  async checkContact(em: EntityManager, fromId: string, toId: string): Promise<void> {
    const { aBlocksB, bBlocksA } = await blockRepository.between(em, fromId, toId);
    if (aBlocksB) throw new ForbiddenError('You blocked this user: unblock them first.');
    if (bBlocksA) throw new ForbiddenError('This user does not accept your friend request.');
  }

  /**
   * Refuses a group invitation to a user who blocks the inviter, in the words any refused
   * invitation would use: the inviter is not told why. (Blocking the invitee does not stop the
   * inviter: it is their own choice to invite.)
   */
  async checkInvite(em: EntityManager, inviterId: string, inviteeId: string): Promise<void> {
    // Under the pair's lock, as a block takes it: a block committed meanwhile is seen, and one under
    // way waits for this invitation to commit and then drops it. Unlocked, each missed the other:
    // an invitation made as its invitee blocked the inviter survived the block (an outside probe).
    await friendRepository.lockPair(em, inviterId, inviteeId);
    const { bBlocksA } = await blockRepository.between(em, inviterId, inviteeId);
    if (bBlocksA) throw new ForbiddenError('This user does not accept your invitation.');
  }

  /**
   * Whether `viewerId` blocks `subjectId` (presence and typing hidden, messages left out), from
   * memory where the viewer's lists are held here (a realtime session), else false: the
   * subscription filters' predicate. Queries use `blockedAmong` or the SQL predicate instead.
   */
  hides(viewerId: string, subjectId: string): boolean {
    return this.lists.hides(viewerId, subjectId);
  }

  /** Whether the viewer blocks anyone (their lists held here): one Map lookup. */
  blocksAnyone(viewerId: string): boolean {
    return this.lists.blocksAnyone(viewerId);
  }

  /**
   * A conversationUpdated row (`derived` from the event in memory) as a viewer who blocks someone
   * sees it. An event caused by a blocked user's message is not theirs at all. Otherwise their row
   * of a group or project is read again, with the blocked senders left out of its unread count and
   * last message as the sidebar leaves them: one query per such event, for such viewers only
   * (everyone else's row stands as derived).
   */
  rowFor(
    viewerId: string,
    p: ConversationUpdatedPayload,
    derived: ConversationType | Promise<ConversationType> | undefined,
    em: EntityManager,
  ): ConversationType | Promise<ConversationType> | undefined {
    if (derived === undefined || (p.message && this.lists.hides(viewerId, p.message.senderId))) return undefined;
    if (p.kind === 'DIRECT') return derived;
    return Promise.resolve(derived).then(async (row) => {
      // The row with its last message, in one query; gone meanwhile (a leave): as derived.
      const read = await conversationRepository.row(em, viewerId, p.conversationKey);
      if (!read) return row;
      // The badge as the event told it (or to be read again): the row read here carries none, and
      // without it the subscription showed the one last told (stuck at the first mention's 1).
      const fresh = rowToConversation(read);
      if (row.unreadMentionCount !== undefined) fresh.unreadMentionCount = row.unreadMentionCount;
      if (row.reloadBadge) fresh.reloadBadge = true;
      return fresh;
    });
  }

  /** Of `ids`, those the viewer blocks: from memory when held here, else one query. */
  async blockedAmong(em: EntityManager, viewerId: string, ids: readonly string[]): Promise<ReadonlySet<string>> {
    const held = this.lists.blockedBy(viewerId);
    if (held) return held;
    return blockRepository.blockedAmong(em, viewerId, ids);
  }

  private async target(em: EntityManager, viewerId: string, userId: string, what: 'block' | 'unblock' = 'block'): Promise<void> {
    if (userId === viewerId) throw new BadUserInputError(`You cannot ${what} yourself.`, 'userId');
    if (!isId(userId) || !(await userRepository.activeById(em, userId))) throw new NotFoundError('User');
  }
}
