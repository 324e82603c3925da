import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../shared/errors';
import { decodeTimeCursor, pageSize, toConnection, type ConnectionShape } from '../../shared/graphql/connection';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type ConversationScope } from '../../shared/pubsub/topics';
import { isId } from '../../shared/validation';
import type { GroupService } from '../group/group.service';
import { scopeOf, type ConversationArgs, type MessageService } from '../message/message.service';
import { messageRepository } from '../message/message.repository';
import type { ProjectService } from '../project/project.service';
import { memberState } from './conversation.events';
import { emptyConversation, rowToConversation, toReadReceiptType } from './conversation.mapper';
import { conversationRepository } from './conversation.repository';
import type { ConversationType, ReadReceiptType } from './conversation.types';

/** What a conversation key looks like in a cursor: g:<id>, p:<id> or d:<id>:<id>. */
const KEY = /^(?:[gp]:[0-9a-f-]{36}|d:[0-9a-f-]{36}:[0-9a-f-]{36})$/;
const RECEIPTS_MAX = 100;

/** (at, id) order of messages: negative when a comes first. */
function compare(a: { at: Date; id: string }, b: { at: Date; id: string }): number {
  return a.at.getTime() - b.at.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * The sidebar and read state. Rows are kept by the transactions that change them (a message in
 * MessageService.send, joins and leaves in the group, project and friend repositories); this
 * service reads them, moves read markers, and answers who receives a conversation's events.
 */
export class ConversationService {
  constructor(
    private readonly d: { pubsub: PubSub; messages: MessageService; groups: GroupService; projects: ProjectService },
  ) {}

  /** Whether an event of this conversation reaches the viewer: memory only (the membership index, or the pair). */
  inScope(viewerId: string, s: ConversationScope): boolean {
    if (s.groupId) return this.d.groups.isMemberCached(viewerId, s.groupId);
    if (s.projectId) return this.d.projects.isMemberCached(viewerId, s.projectId);
    return !!s.userIds?.includes(viewerId);
  }

  /** The viewer's conversations, most recent activity first. Two queries whatever their number: the page and the count. */
  async list(em: EntityManager, viewerId: string, args: { first?: number | null; after?: string | null }): Promise<ConnectionShape<ConversationType>> {
    const limit = pageSize(args.first, 'first', 20);
    const after = args.after ? decodeTimeCursor(args.after, 'after', KEY) : null;
    const [rows, total] = await Promise.all([
      conversationRepository.page(em, viewerId, { after: after && { at: after.at, key: after.id }, limit }),
      conversationRepository.count(em, viewerId),
    ]);
    return toConnection(rows, {
      limit,
      backward: false,
      hasCursor: !!after,
      totalCount: total,
      key: (r) => ({ k: new Date(r.activity_at).toISOString(), id: r.conversation_key }),
      node: rowToConversation,
    });
  }

  /**
   * One conversation as the viewer's sidebar shows it; the same errors as history. A direct
   * conversation with no message yet has no row: it is shown empty, as of now.
   */
  async get(em: EntityManager, viewerId: string, input: ConversationArgs): Promise<ConversationType> {
    const conv = await this.d.messages.conversation(em, viewerId, input);
    const row = await conversationRepository.row(em, viewerId, conv.key);
    return row ? rowToConversation(row) : emptyConversation(conv);
  }

  /**
   * Moves the viewer's read marker to `messageId` (default: the newest message they may see),
   * never back. Tells the viewer's other devices (conversationUpdated) and the other members
   * (readReceipt) when it moved.
   * @throws BadUserInputError when the message is not one of this conversation's, as the viewer sees it.
   */
  async markRead(em: EntityManager, viewerId: string, input: ConversationArgs, messageId?: string | null): Promise<ConversationType> {
    const conv = await this.d.messages.conversation(em, viewerId, input);
    let target: { id: string; at: Date } | null = null;
    if (messageId !== null && messageId !== undefined) {
      const m = isId(messageId) ? await messageRepository.byId(em, messageId) : null;
      const visible = m && m.conversation_key === conv.key && (!m.recipient_id || m.sender_id === viewerId || m.recipient_id === viewerId);
      if (!visible) throw new BadUserInputError('That message is not in this conversation.', 'messageId');
      target = { id: m.id, at: new Date(m.created_at) };
    }
    const result = await em.transactional(async (t) => {
      const tem = t as EntityManager;
      // Shared: markers move together, while no message is being added to the conversation.
      await conversationRepository.lock(tem, conv.key, true);
      const row = await conversationRepository.row(tem, viewerId, conv.key, true);
      if (!row) return null;
      const to = target ?? (row.last_message_id ? { id: row.last_message_id, at: new Date(row.activity_at) } : null);
      const current = row.last_read_message_id && row.last_read_at ? { id: row.last_read_message_id, at: new Date(row.last_read_at) } : null;
      if (!to || (current && compare(to, current) <= 0)) return { row, moved: false };
      const unread = to.id === row.last_message_id ? 0 : await conversationRepository.unreadAfter(tem, conv.key, viewerId, to.at, to.id, conv.kind === 'project');
      const state = await conversationRepository.setMarker(tem, conv.key, viewerId, { ...to, unread });
      return { row: { ...row, ...state }, moved: true };
    });
    if (!result) return emptyConversation(conv);
    const { row, moved } = result;
    if (moved) {
      await this.d.pubsub.publishSafe(Topic.ConversationUpdated, {
        ...scopeOf(conv, viewerId),
        kind: row.kind,
        title: row.title,
        titles: null,
        message: null,
        members: { [viewerId]: memberState(row) },
      });
      await this.d.pubsub.publishSafe(Topic.ReadReceipt, {
        ...scopeOf(conv, viewerId),
        userId: viewerId,
        lastReadMessageId: row.last_read_message_id!,
        readAt: new Date(row.read_at!).toISOString(),
      });
    }
    return rowToConversation(row);
  }

  /** Other members' read markers (up to 100, the most advanced first). */
  async receipts(em: EntityManager, viewerId: string, input: ConversationArgs): Promise<ReadReceiptType[]> {
    const conv = await this.d.messages.conversation(em, viewerId, input);
    const rows = await conversationRepository.receipts(em, conv.key, viewerId, RECEIPTS_MAX);
    return rows.map((r) => toReadReceiptType(conv.key, r));
  }
}
