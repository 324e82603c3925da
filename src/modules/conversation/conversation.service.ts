import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../shared/errors';
import { decodeTimeCursor, pageRequest, toConnection, type ConnectionShape, type PageArgs } from '../../shared/graphql/connection';
import type { Outbox } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type ConversationUpdatedPayload } from '../../shared/pubsub/topics';
import { isId } from '../../shared/validation';
import { messageRepository } from '../message/message.repository';
import { mentionRepository } from '../message/mention.repository';
import { blocksSender } from '../safety/block.repository';
import { scopeOf, type ConversationAccess, type ConversationArgs } from './conversation.access';
import { headFromPayload, headOf, headPayload, ownFromPayload, ownOf, ownPayload, ownRowUpdate, retitled, view, type HeadState, type OwnState } from './conversation.events';
import { KINDS, emptyConversation, payloadToConversation, rowToConversation, toReadReceiptType } from './conversation.mapper';
import { directKey, KEY_PATTERN, scopeKey } from './conversation.keys';
import { conversationRepository } from './conversation.repository';
import { NewestHeads, type MemberStates } from './conversation.states';
import type { ConversationType, ReadReceiptType } from './conversation.types';
import { isoTime } from '../../shared/time';

const RECEIPTS_MAX = 100;
/** The blocker's shared rows a block tells again (see blockChanged). */
const SHARED_ROWS_MAX = 50;

/** A member without a row (left meanwhile): everything up to the head read, as a join leaves it. */
function upToHead(head: HeadState | null): OwnState {
  return { readSeq: head?.seq ?? 0, privateSeq: 0, privateRead: 0, lastReadMessageId: null, lastReadAt: null, privateMessageId: null, privateAt: null, joinedAt: Date.now() };
}

/**
 * The sidebar and read state. A conversation's head and its members' own rows are kept by what
 * changes them (a message in MessageService.send, joins and leaves in the group, project and
 * friend repositories); this service reads them, moves read markers, and derives each
 * receiver's row of a conversationUpdated event.
 */
export class ConversationService {
  private off?: () => void;
  /** Rows in events are derived from the newest head seen, so a late event never moves one back. */
  private readonly heads = new NewestHeads();

  private readonly pubsub: PubSub;
  private readonly access: ConversationAccess;
  /** Members' read states known here. */
  private readonly states: MemberStates;
  /** Told of each event a member's row is derived from, as it arrives, before the row executes (see ThreadService.eventHeard). */
  private readonly heard: (viewerId: string, p: ConversationUpdatedPayload) => void;

  constructor(deps: { pubsub: PubSub; access: ConversationAccess; states: MemberStates; heard?: (viewerId: string, p: ConversationUpdatedPayload) => void }) {
    this.pubsub = deps.pubsub;
    this.access = deps.access;
    this.states = deps.states;
    this.heard = deps.heard ?? (() => {});
  }

  /** Keeps the members' states known here current with what every instance's events carry. */
  start(): void {
    const offs = [
      // `wants`: a row published here goes uncopied when this instance holds none of the states it carries (EventOrder.wanted).
      this.pubsub.on(Topic.ConversationUpdated, {
        receive: (p) => this.states.absorb(p as ConversationUpdatedPayload),
        wants: (p) => this.states.holdsAny(p as ConversationUpdatedPayload),
      }),
      // A membership's row goes or starts anew (read up to the head) without an event of its own.
      this.pubsub.on(Topic.MembershipChanged, (p) => {
        for (const c of p.changes) this.states.drop(c.userId, scopeKey(p.scope, p.id));
      }),
      // A friendship ended or begun again: their direct conversation's rows went, or came back as
      // they were kept (or, ended before markers were kept, behind what was held here), without an event of their own.
      this.pubsub.on(Topic.ContactsChanged, ({ userIds }) => {
        if (userIds.length !== 2) return;
        const key = directKey(userIds[0], userIds[1]);
        for (const u of userIds) this.states.drop(u, key);
      }),
    ];
    this.off = () => offs.forEach((off) => off());
  }

  dispose(): void {
    this.off?.();
    this.states.clear();
    this.heads.clear();
  }

  /**
   * The viewer's row in a conversationUpdated event, or undefined when it doesn't reach them:
   * the event's head with the viewer's own state (carried by the event when it changed, else as
   * known here, else read with the other receivers' in one query).
   */
  rowFor(viewerId: string, p: ConversationUpdatedPayload): ConversationType | Promise<ConversationType> | undefined {
    if (p.only ? !p.only.includes(viewerId) : !this.access.inScope(viewerId, p)) return undefined;
    this.heard(viewerId, p);
    const carried = p.members[viewerId];
    const own = carried ? this.states.put(viewerId, p.conversationKey, ownFromPayload(carried)) : this.states.get(viewerId, p.conversationKey);
    const head = this.heads.newest(p.conversationKey, headFromPayload(p.head));
    if (own) {
      const row = payloadToConversation(viewerId, p, head, own);
      // An edit of a message that isn't this viewer's last one changes nothing they see, unless it
      // changed their mention badge. (A state read first is sent as it is: a project member's newer
      // private message makes it a no-op.)
      return p.lastMessageOnly && row.lastMessageId !== p.message?.id && p.mentionCounts?.[viewerId] === undefined ? undefined : row;
    }
    return this.states.fetch(viewerId, p.conversationKey).then((s) => payloadToConversation(viewerId, p, head, s ?? upToHead(head)));
  }

  /** The viewer's conversations, most recent activity first. Two queries whatever their number: the page and the count. */
  async list(em: EntityManager, viewerId: string, args: PageArgs, given?: (name: keyof PageArgs) => boolean): Promise<ConnectionShape<ConversationType>> {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const from = cursor ? decodeTimeCursor(cursor, cursorField, KEY_PATTERN, 'sidebar') : null;
    const [rows, total] = await Promise.all([
      conversationRepository.page(em, viewerId, { from: from && { at: from.at, key: from.id }, backward, limit }),
      conversationRepository.count(em, viewerId),
    ]);
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      // The cursor's row may have gone since (a group deleted, left): one row looked for on its side, its own included.
      cursorSide: from ? async () => (await conversationRepository.page(em, viewerId, { from: { at: from.at, key: from.id }, backward: !backward, limit: 0, inclusive: true })).length > 0 : undefined,
      totalCount: total,
      key: (r) => ({ k: isoTime(new Date(r.activity_at).getTime()), id: r.conversation_key }),
      node: rowToConversation,
      scope: 'sidebar',
    });
  }

  /**
   * One conversation as the viewer's sidebar shows it; the same errors as history. A direct
   * conversation with no message yet has no row: it is shown empty, as of now.
   */
  async get(em: EntityManager, viewerId: string, input: ConversationArgs): Promise<ConversationType> {
    const conv = await this.access.resolve(em, viewerId, input);
    const row = await conversationRepository.row(em, viewerId, conv.key);
    return row ? rowToConversation(row) : emptyConversation(conv);
  }

  /**
   * A friendship made: where the two had a direct conversation, each one's row comes back as it was
   * kept when the friendship ended (its marker, its unread messages) and goes to their sessions, as
   * the row of a group joined again does; a live sidebar showed nothing of it until read again (an
   * outside probe). A conversation with no message has no row, and tells nothing.
   */
  async befriended(em: EntityManager, a: string, b: string): Promise<void> {
    const key = directKey(a, b);
    for (const userId of [a, b]) {
      const row = await conversationRepository.row(em, userId, key);
      if (!row) continue;
      const badges = await mentionRepository.unreadCounts(em, userId, [key]);
      // Its two users: the receiver's peer is read from them (it was null in the row told: a probe).
      const update = Object.assign(ownRowUpdate(row, userId, badges.get(key) ?? 0, true), { userIds: [a, b] });
      await this.pubsub.publishSafe(Topic.ConversationUpdated, update);
    }
  }

  /**
   * A user's name as others see it changed (display name, else username): the title of each of
   * their direct conversations in the friend's sidebar, told to the friend with the profile's commit.
   */
  async retitled(em: EntityManager, userId: string, title: string, outbox: Outbox): Promise<void> {
    for (const d of await conversationRepository.directsOf(em, userId)) outbox.add(Topic.ConversationUpdated, retitled(d.key, userId, d.peerId, title, d.head));
  }

  /**
   * A block made or lifted changes the blocker's rows of the groups and projects shared with the
   * other user (their unread and mention counts, the last message): each goes to the blocker's
   * sessions, as a mute's does (the most recently active SHARED_ROWS_MAX: a sidebar's first pages).
   */
  async blockChanged(em: EntityManager, viewerId: string, otherId: string): Promise<void> {
    const rows = await conversationRepository.sharedRows(em, viewerId, otherId, SHARED_ROWS_MAX);
    // The badges as they stand now, which a receiver can't derive (the ones told before counted the
    // other's mentions, or left them out): one query for every row, each counted from its marker.
    const badges = await mentionRepository.unreadCounts(
      em,
      viewerId,
      rows.map((r) => r.conversation_key),
    );
    for (const row of rows) await this.pubsub.publishSafe(Topic.ConversationUpdated, ownRowUpdate(row, viewerId, badges.get(row.conversation_key) ?? 0));
  }

  /**
   * Account deletion's last step: whatever rows of the user's the other steps left. Each step drops
   * its own under its group's or project's lock; dropped all at once at the start, they were taken
   * before those locks, against the order of a removal's or a group deletion's (the group's row,
   * then the member's): deadlocks, an outside probe's 4 of 4 runs.
   */
  forgetUser(em: EntityManager, userId: string): Promise<void> {
    return conversationRepository.dropUser(em, userId);
  }

  /**
   * Moves the viewer's read marker to `messageId` (default: the newest message they may see),
   * never back. Tells the viewer's other devices (conversationUpdated) and the other members
   * (readReceipt) when it moved.
   * @throws BadUserInputError when the message is not one of this conversation's, as the viewer sees it.
   */
  async markRead(em: EntityManager, viewerId: string, input: ConversationArgs, messageId?: string | null): Promise<ConversationType> {
    const conv = await this.access.resolve(em, viewerId, input);
    if (messageId !== null && messageId !== undefined) {
      const m = isId(messageId) ? await messageRepository.byId(em, messageId) : null;
      const inView = m && this.access.inView(conv, viewerId, { conversationKey: m.conversation_key, senderId: m.sender_id, recipientId: m.recipient_id });
      // Nor one of a sender the viewer blocks, which history and lastMessage leave out: a marker no client could place.
      const hidden = inView && (await blocksSender(em, viewerId, m.sender_id));
      if (!inView || hidden) throw new BadUserInputError('That message is not in this conversation.', 'messageId');
      // Not in the timeline (history, the unread count): a client could place no marker on it.
      if (m.parent_id && !m.also_in_conversation) throw new BadUserInputError("That message is a reply kept in its thread: markThreadRead marks it, markRead marks the conversation's timeline.", 'messageId');
    }
    const row = await conversationRepository.markRead(em, conv.key, viewerId, { messageId: messageId ?? null, project: conv.kind === 'project' });
    if (!row) return emptyConversation(conv);
    const head = headOf(row);
    const own = ownOf(row);
    if (row.moved) {
      // Every read a client marks: assigned, not spread into literals (see test/hot-path.test.ts).
      await this.pubsub.publishSafe(
        Topic.ConversationUpdated,
        Object.assign(scopeOf(conv, viewerId), {
          kind: KINDS[conv.kind],
          title: conv.title,
          titles: null,
          message: null,
          head: headPayload(head),
          members: { [viewerId]: ownPayload(own) },
          only: [viewerId],
        }),
      );
      const receipt = Object.assign(scopeOf(conv, viewerId), {
        userId: viewerId,
        lastReadMessageId: own.lastReadMessageId!,
        readAt: new Date(row.read_at!).toISOString(),
        markedAt: own.lastReadAt ?? undefined,
        markedSenderId: row.marked_sender_id ?? undefined,
      });
      // A marker on a private project message names it to its two users only; the others see the
      // marker on the newest message before it that they may read, as readReceipts shows it.
      if (row.marked_recipient_id) {
        const pair = [row.marked_sender_id!, row.marked_recipient_id];
        await this.pubsub.publishSafe(Topic.ReadReceipt, Object.assign({}, receipt, { only: pair }));
        // The shown message is another one, whose sender the row doesn't name; told only if the
        // others saw another one before (the same again, with a new readAt, would tell them that a
        // private message was read).
        if (row.marked_shown_id && row.marked_shown_id !== row.prev_shown_id) await this.pubsub.publishSafe(Topic.ReadReceipt, Object.assign({}, receipt, { lastReadMessageId: row.marked_shown_id, except: pair, markedSenderId: undefined }));
      } else {
        await this.pubsub.publishSafe(Topic.ReadReceipt, receipt);
      }
    }
    // A member who blocks someone sees the row without their messages (its last message, its
    // count), as conversations shows it: read again. (The answer carried the blocked user's text.)
    if (row.blocks_anyone) {
      const read = await conversationRepository.row(em, viewerId, conv.key);
      if (read) return rowToConversation(read);
    }
    // The last message is loaded by id if asked for; the badge as of the marker and head it shows.
    return Object.assign(emptyConversation(conv), view(head, own), { lastMessage: undefined, badgeSeq: head?.seq ?? 0, badgeFrom: own.readSeq });
  }

  /** Other members' read markers (up to 100, the most advanced first). */
  async receipts(em: EntityManager, viewerId: string, input: ConversationArgs): Promise<ReadReceiptType[]> {
    const conv = await this.access.resolve(em, viewerId, input);
    const rows = await conversationRepository.receipts(em, conv.key, viewerId, RECEIPTS_MAX, conv.kind === 'project');
    return rows.map((r) => toReadReceiptType(conv.key, r));
  }
}
