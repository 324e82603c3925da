import type { EntityManager } from '@mikro-orm/postgresql';
import { boundedLru } from '../../shared/lru';
import { BadUserInputError, NotFoundError } from '../../shared/errors';
import { blockRepository } from '../safety/block.repository';
import { cursorSideOf, decodeTimeCursor, pageRequest, toConnection, type ConnectionShape, type LazyCount, type PageArgs } from '../../shared/graphql/connection';
import { isoOf } from '../../shared/time';
import type { ConversationFilter } from '../conversation/conversation.access';
import type { ConversationArgs } from '../conversation/conversation.access';
import type { UserType } from '../user/user.types';
import { toMessageType } from './message.mapper';
import type { MessageRow } from './message.repository';
import { timelinePage, type MessageService } from './message.service';
import type { MessageType } from './message.types';
import { mentionRepository, type BadgeSpan } from './mention.repository';
import { threadRepository } from './thread.repository';
import { unlessGone } from './message.gone';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type ConversationUpdatedPayload } from '../../shared/pubsub/topics';

export interface ThreadServiceDeps {
  /** Who may read which message, and the conversations' errors. */
  messages: MessageService;
  /** Where blocks and unblocks are heard, which change what a badge counts (see badges). */
  pubsub: PubSub;
}

/** How long a badge told here is reused (see ThreadService.badges). */
const BADGE_TTL_MS = 60_000;
/** How long after a block or unblock the counts events carry are read again instead (see badgeUnsure). */
const BLOCK_SETTLE_MS = 5_000;

/** What a badge is kept by: a subscriber's sidebar row (ConversationType). */
type BadgeRow = { id: string; lastReadMessageId: string | null; badgeSeq?: number };

/** A subscription to one thread: the conversation's filter and the root whose replies it keeps. */
export type ThreadFilter = ConversationFilter & { threadId: string | null };

/**
 * Threads and mentions as a reader sees them: a thread's replies, the threads a user follows and
 * which have unread replies, their mentions, their marker in a thread. A reply's writing is the send's
 * (MessageService.send, thread.repository's statement).
 */
export class ThreadService {
  private readonly messages: MessageService;
  /**
   * Unread mention counts this instance told a subscriber, by user and conversation, with the read
   * marker they were counted at: a conversationUpdated row that carries no count (a message that
   * mentions someone else) reuses it while the marker is the same, instead of one query per member
   * and event. A new mention carries its count; a moved marker counts again; so does the row an edit
   * or deletion that adds or removes a mention sends (MessageService.sidebarsChanged).
   */
  private readonly badges = boundedLru<string, { n: number; marker: string | null; at: number; seq: number; order: number }>({ max: 100_000, ttlMs: BADGE_TTL_MS });
  /** Orders counts as of one head: the one asked or told last is kept (see rememberBadge). */
  private badgeOrder = 0;
  /**
   * Badge reads in flight, by user and conversation. A subscriber's events execute at once, each
   * frame written after the one before: a row that would reuse the badge while an earlier row's
   * read is on its way waits for it, or it would show the count from before that read.
   */
  private readonly badgeReads = new Map<string, Promise<number>>();
  /**
   * The newest head as of which an event that changes a subscriber's badge arrived here, by user
   * and conversation, before its row executes: a later row reuses no count told before it. Rows
   * execute at once and some wait (a member's state read first), so a row without a count could
   * run before the mention's row and show the count from before it, after that row's frame
   * showed the new one (an outside probe: 3 then 0 on one sidebar).
   */
  private readonly badgeChanges = boundedLru<string, number>({ max: 100_000, ttlMs: BADGE_TTL_MS });
  /**
   * The timeline messages (by seq) whose events arrived here, by conversation: a count told as of
   * one message holds for a later one only if every message between was heard and none changed the
   * badge. One sent through another instance can arrive after the next one's: its row reused the
   * count from before that mention (an outside probe: 7 mentions shown for 8, three instances).
   */
  private readonly heard = boundedLru<string, Heard>({ max: 100_000, ttlMs: BADGE_TTL_MS });
  private lastEvent: ConversationUpdatedPayload | undefined;
  /**
   * When each user last blocked or unblocked someone, heard on every instance: a badge told before
   * counted (or left out) that user's mentions as the block stood then, so it is counted again.
   * Kept as long as a badge is.
   */
  private readonly blocksChanged = boundedLru<string, number>({ max: 100_000, ttlMs: BADGE_TTL_MS });
  private readonly pubsub: PubSub;
  private off: (() => void) | undefined;

  constructor(deps: ThreadServiceDeps) {
    this.messages = deps.messages;
    this.pubsub = deps.pubsub;
  }

  start(): void {
    this.off = this.pubsub.on(Topic.SafetyChanged, (p) => {
      if (p.blockedId !== undefined) this.blocksChanged.set(p.userId, Date.now());
    });
  }

  dispose(): void {
    this.off?.();
    this.badges.clear();
    this.badgeReads.clear();
    this.badgeChanges.clear();
    this.heard.clear();
    this.lastEvent = undefined;
    this.blocksChanged.clear();
  }

  /** The root of the thread `messageId` names (a reply names its root's), if the viewer may read it; NOT_FOUND otherwise, BAD_USER_INPUT for a private message (no thread). */
  private async root(em: EntityManager, viewerId: string, messageId: string, field = 'messageId'): Promise<MessageRow> {
    const row = await this.messages.visibleMessage(em, viewerId, messageId).catch((e) => {
      if (field !== 'messageId') throw new BadUserInputError(`${field} must name a message of this conversation.`, field);
      throw e;
    });
    const root = row.parent_id ? await this.messages.visibleMessage(em, viewerId, row.parent_id) : row;
    if (root.project_id && root.recipient_id) throw new BadUserInputError('A private message has no thread.', field);
    // A message of a user the viewer blocks is not there for them, as history leaves it out: nor its
    // thread (before, markThreadRead handed the blocker its text: an outside probe).
    const senders = [...new Set([row.sender_id, root.sender_id])].filter((id) => id !== viewerId);
    if (senders.length && (await blockRepository.blockedAmong(em, viewerId, senders)).size) {
      if (field !== 'messageId') throw new BadUserInputError(`${field} must name a message of this conversation.`, field);
      throw new NotFoundError('Message');
    }
    return root;
  }

  /** A thread's replies, oldest first, paged as history is (first/after forward, last/before back; default the newest 10). */
  async thread(
    em: EntityManager,
    viewerId: string,
    messageId: string,
    args: { first?: number | null; after?: string | null; last?: number | null; before?: string | null },
  ): Promise<ConnectionShape<MessageType, LazyCount>> {
    // A reply's own cursor too (Message.cursor, history's): a client streaming the thread catches up from the last reply pushed to it.
    const { forward, limit, cursor, direction } = timelinePage(args, 'thread', '');
    const root = await this.root(em, viewerId, messageId);
    const rows = await threadRepository.page(em, root.id, viewerId, { direction, cursor, limit });
    return toConnection(rows, {
      limit,
      backward: !forward,
      hasCursor: !!cursor,
      // Another thread's cursor is a time with maybe no reply of this one beyond it (see history).
      cursorSide: cursorSideOf(cursor, { backward: !forward, ascending: true }, (at, back) => threadRepository.page(em, root.id, viewerId, { direction: back ? 'backward' : 'forward', cursor: at, limit: 0 })),
      totalCount: () => threadRepository.count(em, root.id, viewerId),
      key: (r) => ({ k: isoOf(r.created_at), id: r.id }),
      node: toMessageType,
      scope: 'thread',
    });
  }

  /** The roots of the threads the viewer takes part in, the latest reply first (last/before pages back from the oldest), each with whether it has replies they have not read. */
  async threads(em: EntityManager, viewerId: string, args: PageArgs, given?: (name: keyof PageArgs) => boolean): Promise<ConnectionShape<MessageType, LazyCount>> {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const from = cursor ? decodeTimeCursor(cursor, cursorField, undefined, 'threads') : null;
    const rows = await threadRepository.followed(em, viewerId, { from, backward, limit });
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      cursorSide: cursorSideOf(from, { backward, ascending: false }, (at, back) => threadRepository.followed(em, viewerId, { from: at, backward: back, limit: 0 })),
      totalCount: () => threadRepository.countFollowed(em, viewerId),
      key: (r) => ({ k: isoOf(r.last_reply_at!), id: r.id }),
      node: (r) => Object.assign(toMessageType(r), { hasUnreadReplies: r.has_unread }),
      scope: 'threads',
    });
  }

  /** Which of several roots have replies the viewer has not read, in a thread they follow (a loader's batch). */
  async unreadReplies(em: EntityManager, viewerId: string, rootIds: readonly string[]): Promise<boolean[]> {
    const unread = await threadRepository.unreadAmong(em, viewerId, rootIds);
    return rootIds.map((id) => unread.has(id));
  }

  /** The messages that mention the viewer, newest first (in conversations they are still in; deleted ones and those of users they block never). */
  async mentions(em: EntityManager, viewerId: string, args: PageArgs, given?: (name: keyof PageArgs) => boolean): Promise<ConnectionShape<MessageType, LazyCount>> {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const from = cursor ? decodeTimeCursor(cursor, cursorField, undefined, 'mentions') : null;
    const rows = await mentionRepository.page(em, viewerId, { from, backward, limit });
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      cursorSide: cursorSideOf(from, { backward, ascending: false }, (at, back) => mentionRepository.page(em, viewerId, { from: at, backward: back, limit: 0 })),
      totalCount: () => mentionRepository.count(em, viewerId),
      key: (r) => ({ k: isoOf(r.mentioned_at), id: r.id }),
      node: toMessageType,
      scope: 'mentions',
    });
  }

  /** Moves the viewer's marker in the thread to its newest reply; they follow the thread from now on. Returns the root. */
  async markRead(em: EntityManager, viewerId: string, messageId: string): Promise<MessageType> {
    return unlessGone(em, messageId, async () => {
      const root = await this.root(em, viewerId, messageId);
      await threadRepository.markRead(em, { id: root.id, conversationKey: root.conversation_key, lastReplyAt: root.last_reply_at ? new Date(root.last_reply_at) : null }, viewerId);
      return toMessageType(root);
    });
  }

  /** messageAdded's filter with `threadId`: the conversation's, and the thread's root, which must be one of its messages (BAD_USER_INPUT otherwise). */
  async subscriptionFilter(em: EntityManager, viewerId: string, c: ConversationArgs & { threadId?: string | null }): Promise<ThreadFilter> {
    const filter = await this.messages.subscriptionFilter(em, viewerId, c);
    if (c.threadId === undefined || c.threadId === null) return { ...filter, threadId: null };
    // A project's private thread ({ projectId, userId }) holds private messages, which have no threads.
    if (c.projectId && c.userId) throw new BadUserInputError('A private message has no thread.', 'threadId');
    const root = await this.root(em, viewerId, c.threadId, 'threadId');
    if (root.conversation_key !== filter.key) throw new BadUserInputError('threadId must name a message of this conversation.', 'threadId');
    return { ...filter, threadId: root.id };
  }

  /** First participants of several roots (a loader's batch). */
  async participants(em: EntityManager, rootIds: readonly string[]): Promise<UserType[][]> {
    const found = await threadRepository.participants(em, rootIds);
    return rootIds.map((id) =>
      (found.get(id) ?? []).map((u) => ({ id: u.id, username: u.username, displayName: u.display_name, createdAt: new Date(u.created_at), storedLastSeenAt: null })),
    );
  }

  /** Mentioned users' ids of several messages (a loader's batch). */
  async mentionIds(em: EntityManager, ids: readonly string[]): Promise<string[][]> {
    const found = await mentionRepository.ofMessages(em, ids);
    return ids.map((id) => found.get(id) ?? []);
  }

  /**
   * Whether a count an event carries may predate a block or unblock the viewer made just now: it
   * was counted by the send's statement, maybe before the change committed, and its event can come
   * after the change was heard (an outside probe: the unblock's mentions stayed off the badge).
   */
  badgeUnsure(viewerId: string, now = Date.now()): boolean {
    const changed = this.blocksChanged.get(viewerId);
    return changed !== undefined && now - changed < BLOCK_SETTLE_MS;
  }

  /**
   * A subscriber's unread mentions for a conversationUpdated row that carries no count it can show:
   * the one last told here while their read marker has not moved, else read (`counts`: the event's
   * loader); `reread`, read whatever was told. A row that follows a read still on its way waits
   * for it and shows what it kept: each row executes at once, only the frames wait in order.
   */
  badge(viewerId: string, row: BadgeRow, counts: { load(key: string): Promise<number> }, reread: boolean): number | Promise<number> {
    const key = `${viewerId} ${row.id}`;
    if (reread) return this.readBadge(key, viewerId, row, counts);
    const before = this.badgeReads.get(key);
    if (before) {
      const after = () => this.knownBadge(key, viewerId, row) ?? this.readBadge(key, viewerId, row, counts);
      return before.then(after, () => this.readBadge(key, viewerId, row, counts));
    }
    return this.knownBadge(key, viewerId, row) ?? this.readBadge(key, viewerId, row, counts);
  }

  /**
   * A conversationUpdated event from which `viewerId`'s row is derived arrived here: a new message
   * in the timeline is heard (see heard), and one that carries their badge changes it (see badgeChanges).
   */
  eventHeard(viewerId: string, p: ConversationUpdatedPayload): void {
    const seq = p.head?.[0] ?? 0;
    // Told once per receiver of the event: its message is heard with the first.
    if (p !== this.lastEvent) {
      this.lastEvent = p;
      if (p.message && !p.lastMessageOnly && p.head && p.head[1] === p.message.id) messageHeard(this.heard, p.conversationKey, seq);
    }
    if (p.mentionCounts?.[viewerId] === undefined) return;
    const k = `${viewerId} ${p.conversationKey}`;
    if ((this.badgeChanges.get(k) ?? -1) < seq) this.badgeChanges.set(k, seq);
  }

  /**
   * Keeps a count told to a subscriber. `at`: when it was read (a block heard while it was on its
   * way makes it stale); `order`, when it was asked for (a count told: now). A count as of an older
   * head than the one kept is not kept, nor one as of the same head asked before it: a read that
   * left before a newer mention's row told its count, or before an edit's row asked again, can come
   * back after it, without that mention or with the one the edit took away.
   */
  rememberBadge(viewerId: string, row: BadgeRow, n: number, at = Date.now(), order = ++this.badgeOrder): void {
    const key = `${viewerId} ${row.id}`;
    const seq = row.badgeSeq ?? 0;
    const kept = this.badges.get(key);
    if (kept && (kept.seq > seq || (kept.seq === seq && kept.order > order))) return;
    this.badges.set(key, { n, marker: row.lastReadMessageId, at, seq, order });
  }

  /**
   * The unread mentions last told here under `key`, if the subscriber's read marker has not moved
   * since nor a block of theirs come after, and it was told as of no newer message than the row
   * shows: a row that waited for a read (or executed behind a later event) showed the count of
   * mentions it had not yet shown, and the next row fewer (an outside probe, three instances).
   */
  private knownBadge(key: string, viewerId: string, row: BadgeRow): number | undefined {
    const known = this.badges.get(key);
    const seq = row.badgeSeq ?? 0;
    if (!known || known.marker !== row.lastReadMessageId || known.seq > seq || (this.badgeChanges.get(key) ?? 0) > known.seq) return undefined;
    if (known.seq < seq && !heardBetween(this.heard.get(row.id), known.seq, seq)) return undefined;
    const blocked = this.blocksChanged.get(viewerId);
    return blocked !== undefined && blocked >= known.at ? undefined : known.n;
  }

  /** Reads the badge and keeps it; the rows after it meanwhile wait for it (see badge). */
  private readBadge(key: string, viewerId: string, row: BadgeRow, counts: { load(key: string): Promise<number> }): Promise<number> {
    const asked = Date.now();
    const order = ++this.badgeOrder;
    const read = counts.load(row.id).then((n) => {
      this.rememberBadge(viewerId, row, n, asked, order);
      return n;
    });
    this.badgeReads.set(key, read);
    const done = () => void (this.badgeReads.get(key) === read && this.badgeReads.delete(key));
    read.then(done, done);
    return read;
  }

  /** The viewer's unread mentions in each span (a loader's batch; see mentionRepository.unreadBetween). */
  unreadBetween(em: EntityManager, viewerId: string, spans: readonly BadgeSpan[]): Promise<number[]> {
    return mentionRepository.unreadBetween(em, viewerId, spans);
  }
}

/** Whether a new message belongs in a messageAdded stream: a thread's replies with `threadId`, else the timeline (replies kept in their thread left out). */
export function inStream(p: { parentId?: string | null; alsoInConversation?: boolean }, threadId: string | null | undefined): boolean {
  return threadId ? p.parentId === threadId : !p.parentId || !!p.alsoInConversation;
}

/**
 * A conversation's messages heard here: every seq after `from` up to `upTo`, and those heard past a
 * gap (`above`), which join the run as the gap fills.
 */
interface Heard {
  from: number;
  upTo: number;
  above: Set<number> | undefined;
}

/** Messages heard past a gap before it is given up (an event lost, or heard before this began): the run starts again after it. */
const HEARD_GAP_MAX = 256;

function messageHeard(heard: { get(k: string): Heard | undefined; set(k: string, v: Heard): unknown }, key: string, seq: number): void {
  const h = heard.get(key);
  if (!h) return void heard.set(key, { from: seq - 1, upTo: seq, above: undefined });
  if (seq <= h.upTo) return;
  if (seq === h.upTo + 1) {
    h.upTo = seq;
    while (h.above?.delete(h.upTo + 1)) h.upTo++;
    return;
  }
  (h.above ??= new Set()).add(seq);
  if (h.above.size <= HEARD_GAP_MAX) return;
  const first = Math.min(...h.above);
  h.above.delete(first);
  h.from = first - 1;
  h.upTo = first;
  while (h.above.delete(h.upTo + 1)) h.upTo++;
}

/** Whether every message after seq `a` up to `b` was heard here. */
function heardBetween(h: Heard | undefined, a: number, b: number): boolean {
  return !!h && a >= h.from && b <= h.upTo;
}
