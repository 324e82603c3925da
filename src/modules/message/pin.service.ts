import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, ForbiddenError, NotFoundError } from '../../shared/errors';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type MessageEventPayload } from '../../shared/pubsub/topics';
import { isoTime } from '../../shared/time';
import { isId } from '../../shared/validation';
import { ProjectRole } from '../project/project.entity';
import type { ProjectService } from '../project/project.service';
import { messageRepository, type MessageRow } from './message.repository';
import { placeOf, toChangedMessage, toChangedPayload, toMessageType } from './message.mapper';
import { threadRepository } from './thread.repository';
import type { MessageType } from './message.types';
import type { Conversation, ConversationAccess } from '../conversation/conversation.access';
import { pinRepository } from './pin.repository';
import { MessageGoneError, unlessGone } from './message.gone';
import { blocksSender } from '../safety/block.repository';

const deletedPin = (done: 'pinned' | 'unpinned') => new BadUserInputError(`A deleted message cannot be ${done}.`, 'messageId');

/** Pins one conversation may hold at once. */
export const MAX_PINS = 50;

export interface PinServiceDeps {
  pubsub: PubSub;
  projects: ProjectService;
  /** The one access check for a conversation (NOT_FOUND or FORBIDDEN for one the viewer may not use). */
  access: ConversationAccess;
}

/**
 * Pinning: any member of a group or a direct conversation may pin or unpin, in a project only its
 * owner; a private message inside a project is not pinned for everyone. A deleted message's pin
 * shows nowhere.
 */
export class PinService {
  private readonly pubsub: PubSub;
  private readonly projects: ProjectService;
  private readonly access: ConversationAccess;

  constructor(deps: PinServiceDeps) {
    this.pubsub = deps.pubsub;
    this.projects = deps.projects;
    this.access = deps.access;
  }

  async pin(em: EntityManager, viewerId: string, messageId: string): Promise<MessageType> {
    return unlessGone(em, messageId, async () => {
      const { row, conv } = await this.pinnable(em, viewerId, messageId);
      // Nor one of a sender the viewer blocks, which their pinnedMessages and history leave out
      // (unpinning their own pin of it stays theirs to do: see unpin).
      if (await blocksSender(em, viewerId, row.sender_id)) throw new NotFoundError('Message');
      await this.mayPinIn(em, viewerId, row, conv);
      if (row.deleted_at) throw deletedPin('pinned');
      const result = await em.transactional(async (tem) => {
        await this.access.stillReads(tem as EntityManager, viewerId, placeOf(row));
        const done = await pinRepository.pin(tem as EntityManager, { id: row.id, conversationKey: conv.key }, viewerId, MAX_PINS);
        return done === 'pinned' || done === 'already' ? { told: done === 'pinned', now: await this.now(tem as EntityManager, row.id) } : done;
      });
      // Deleted, or gone with its conversation, while this waited for the message's row.
      if (result === 'deleted') throw deletedPin('pinned');
      if (result === 'gone') throw new MessageGoneError();
      if (result === 'full') throw new BadUserInputError(`A conversation holds at most ${MAX_PINS} pinned messages; unpin one first.`, 'messageId');
      // Pinned already: nothing changed, no one is told.
      return result.told ? this.tell(result.now, 'PINNED') : result.now.message;
    });
  }

  /** Unpinning a message that is not pinned changes nothing (and tells no one). */
  async unpin(em: EntityManager, viewerId: string, messageId: string): Promise<MessageType> {
    return unlessGone(em, messageId, async () => {
      const { row, conv } = await this.pinnable(em, viewerId, messageId);
      // One of a sender the viewer blocks is a message they can't see, but for a pin they made
      // before the block (as their own reaction stays theirs to remove): anyone else's pin of it
      // is the others' to keep, and the answer would show the viewer what the block hides.
      if (await blocksSender(em, viewerId, row.sender_id)) {
        const [pin] = await this.pinsOf(em, [row.id]);
        if (pin?.byId !== viewerId) throw new NotFoundError('Message');
      }
      await this.mayPinIn(em, viewerId, row, conv);
      // A deleted message's pin is no longer shown nor counted: there is nothing to unpin.
      if (row.deleted_at) throw deletedPin('unpinned');
      const result = await em.transactional(async (tem) => {
        await this.access.stillReads(tem as EntityManager, viewerId, placeOf(row));
        const done = await pinRepository.unpin(tem as EntityManager, row.id);
        return typeof done === 'boolean' ? { told: done, now: await this.now(tem as EntityManager, row.id) } : done;
      });
      if (result === 'deleted') throw deletedPin('unpinned');
      if (result === 'gone') throw new MessageGoneError();
      return result.told ? this.tell(result.now, 'UNPINNED') : result.now.message;
    });
  }

  /** A conversation's pinned messages, newest pin first (the conversation is the viewer's already), but those of users the viewer blocks. */
  async pinnedMessages(em: EntityManager, conversationKey: string, viewerId: string): Promise<MessageType[]> {
    const rows = await pinRepository.ofConversation(em, conversationKey, viewerId);
    return rows.map((r) => ({ ...toMessageType(r), pin: { at: new Date(r.pinned_at), byId: r.pinned_by_id } }));
  }

  /** Pins of several messages (a loader's batch): null for one not pinned. */
  async pinsOf(em: EntityManager, ids: readonly string[]): Promise<({ at: Date; byId: string | null } | null)[]> {
    const found = await pinRepository.ofMessages(em, ids);
    return ids.map((id) => {
      const p = found.get(id);
      return p ? { at: new Date(p.pinned_at), byId: p.pinned_by_id } : null;
    });
  }

  /**
   * The message and its conversation, if the viewer can see it there: NOT_FOUND for a message they
   * can't (the same answer as for none). What they may do with it is mayPinIn's to say, after.
   */
  private async pinnable(em: EntityManager, viewerId: string, messageId: string): Promise<{ row: MessageRow; conv: Conversation }> {
    const row = isId(messageId) ? await messageRepository.byId(em, messageId) : null;
    if (!row) throw new NotFoundError('Message');
    const party = viewerId === row.sender_id || viewerId === row.recipient_id;
    // A direct message is its two users'; a project's private one too.
    if (!row.group_id && row.recipient_id && !party) throw new NotFoundError('Message');
    const peer = row.group_id || row.project_id ? null : row.sender_id === viewerId ? row.recipient_id : row.sender_id;
    let conv: Conversation;
    try {
      conv = await this.access.resolve(em, viewerId, { groupId: row.group_id, projectId: row.project_id, userId: peer });
    } catch {
      throw new NotFoundError('Message');
    }
    return { row, conv };
  }

  /**
   * In a project, only its owner pins, and never a private message. Asked once the message is
   * known to be one the viewer sees: one of a sender they block is NOT_FOUND to every member, as
   * it is to reactions and reports (a participant was told FORBIDDEN: an outside probe).
   */
  private async mayPinIn(em: EntityManager, viewerId: string, row: MessageRow, conv: Conversation): Promise<void> {
    if (conv.kind !== 'project') return;
    if (row.recipient_id) throw new BadUserInputError('A private message is not pinned for the whole project.', 'messageId');
    const { role } = await this.projects.asMember(em, conv.projectId!, viewerId);
    if (role !== ProjectRole.OWNER) throw new ForbiddenError("Only the project's owner can pin or unpin its messages.");
  }

  /**
   * The message with its pin as a pin or unpin left it (or found it, changing nothing), read in its
   * transaction under the message's row lock (see MessageService.tell: read after the commit, a pin
   * or unpin, a reaction, an edit or a deletion committed since was told in its place, or twice,
   * and answered: a pin that found the message pinned answered it unpinned: an outside probe).
   */
  private async now(tem: EntityManager, id: string): Promise<{ row: MessageRow; message: MessageType }> {
    const row = await threadRepository.changed(tem, id);
    if (!row) throw new MessageGoneError();
    const [pin] = await this.pinsOf(tem, [id]);
    return { row, message: Object.assign(toChangedMessage(row), { pin }) };
  }

  /** Tells every messageEvent subscriber of the message's conversation the change, once committed. */
  private async tell({ row, message }: { row: MessageRow; message: MessageType }, kind: MessageEventPayload['kind']): Promise<MessageType> {
    const pin = message.pin;
    const payload = { ...toChangedPayload(message, row.version), pin: pin && { at: isoTime(pin.at.getTime()), byId: pin.byId }, pos: row.pos === null ? undefined : Number(row.pos) };
    await this.pubsub.publishSafe(Topic.MessageEvent, { kind, message: payload });
    return message;
  }
}
