import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../shared/errors';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic } from '../../shared/pubsub/topics';
import { scopeOf, type ConversationAccess, type ConversationArgs } from '../conversation/conversation.access';
import { headOf, headPayload, ownOf, ownPayload } from '../conversation/conversation.events';
import { KINDS, emptyConversation, rowToConversation } from '../conversation/conversation.mapper';
import { conversationRepository } from '../conversation/conversation.repository';
import type { ConversationType } from '../conversation/conversation.types';
import { muteRepository } from './mute.repository';
import type { SafetyLists } from './safety.lists';

/** A mute without `until` lasts until unmuted; Conversation.mutedUntil reads this for it. */
export const MUTED_FOREVER = new Date('9999-12-31T23:59:59.999Z');
/** The furthest `until` a mute may name: beyond, a client means "until I unmute", which is no `until`. */
export const MUTE_MAX_DAYS = 366;

/** The viewer's Conversation with its mute told (mutedUntil), as the mutation answers it. */
export type MutedConversation = ConversationType & { mutedUntil: Date | null };

/**
 * Mutes, per member and conversation: a muted conversation still counts its unread messages (the
 * client drops the badge by mutedUntil) and sends no offline notification but mentions of the
 * member (NotificationService.allowedBySafety). Kept on the member's row, so it goes with it (a
 * leave, an unfriending).
 */
export class MuteService {
  constructor(
    private readonly deps: { pubsub: PubSub; access: ConversationAccess; lists: SafetyLists },
  ) {}

  /**
   * Mutes until `until` (none: until unmuted). Telling the viewer's other sessions by conversationUpdated.
   * @throws BadUserInputError for an `until` not in the future or more than MUTE_MAX_DAYS ahead, or a conversation the viewer has no row of yet (a direct one with no message).
   */
  async mute(em: EntityManager, viewerId: string, input: ConversationArgs, until: Date | null | undefined): Promise<MutedConversation> {
    let at = MUTED_FOREVER;
    if (until !== null && until !== undefined) {
      const ms = until.getTime();
      if (!Number.isFinite(ms) || ms <= Date.now()) throw new BadUserInputError('until must be in the future (leave it out to mute until you unmute).', 'until');
      if (ms > Date.now() + MUTE_MAX_DAYS * 86_400_000) throw new BadUserInputError(`until may be at most ${MUTE_MAX_DAYS} days ahead (leave it out to mute until you unmute).`, 'until');
      at = new Date(ms);
    }
    return this.set(em, viewerId, input, at);
  }

  /** Unmutes (a conversation not muted stays so: idempotent). The same errors as mute, but for `until`. */
  unmute(em: EntityManager, viewerId: string, input: ConversationArgs): Promise<MutedConversation> {
    return this.set(em, viewerId, input, null);
  }

  /** The viewer's mute of a conversation, from memory where their lists are held here (undefined: ask the database). */
  held(viewerId: string, key: string): Date | null | undefined {
    return this.deps.lists.mutedUntil(viewerId, key);
  }

  /** The viewer's mutes of `keys` not yet over, in one query. */
  of(em: EntityManager, viewerId: string, keys: readonly string[]): Promise<Map<string, Date>> {
    return muteRepository.of(em, viewerId, keys);
  }

  private async set(em: EntityManager, viewerId: string, input: ConversationArgs, until: Date | null): Promise<MutedConversation> {
    const { access, pubsub } = this.deps;
    const conv = await access.resolve(em, viewerId, input);
    const set = await muteRepository.set(em, conv.key, viewerId, until);
    if (!set) {
      // No row: a direct conversation with no message yet, or a membership (friendship) that ended
      // since the check, whose answer is then any non-member's (a leave at once read "no message
      // yet": an outside probe). Checked afresh, on a fork: the first check's entities are cached.
      await access.resolve(em.fork(), viewerId, input);
      throw new BadUserInputError('This conversation has no message yet: there is nothing to mute.', 'conversation');
    }
    const row = await conversationRepository.row(em, viewerId, conv.key);
    // The same mute again (unmuting what is not muted, say): nothing for the viewer's sessions to hear.
    if (!set.changed) return { ...(row ? rowToConversation(row) : emptyConversation(conv)), mutedUntil: until };
    // Memory first (every instance, the viewer's sessions' lists), then the row those sessions derive from it.
    // Numbered: two changes at once may be published in the other order than they were applied (an
    // outside probe: the sessions' rows kept the mute that lost, 7 of 15).
    await pubsub.publishSafe(Topic.SafetyChanged, { userId: viewerId, conversationKey: conv.key, mutedUntil: until && until.toISOString(), v: set.v });
    if (row) {
      await pubsub.publishSafe(Topic.ConversationUpdated, {
        ...scopeOf(conv, viewerId),
        kind: KINDS[conv.kind],
        title: conv.title,
        titles: null,
        message: null,
        head: headPayload(headOf(row)),
        members: { [viewerId]: ownPayload(ownOf(row)) },
        only: [viewerId],
      });
    }
    return { ...(row ? rowToConversation(row) : emptyConversation(conv)), mutedUntil: until };
  }
}
