import { createHash, randomUUID } from 'node:crypto';
import { ForeignKeyConstraintViolationException, UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import { BadUserInputError, ConflictError, ForbiddenError, NotFoundError, RateLimitedError, ServiceUnavailableError } from '../../shared/errors';
import { cursorSideOf, decodeTimeCursor, noEmptyCursor, pageSize, toConnection, type ConnectionShape, type CursorScope, type LazyCount } from '../../shared/graphql/connection';
import { RECOVERY_MAX, type PubSub, type TopicEvent } from '../../shared/pubsub/pubsub';
import { Topic, type ConversationUpdatedPayload, type MessageEventPayload, type MessagePayload, type ReactionSummary, type UserPayload } from '../../shared/pubsub/topics';
import { cleanMessageText, isId, isWellFormed } from '../../shared/validation';
import { Gate } from '../../shared/concurrency';
import { conversationRepository, type SendGate } from '../conversation/conversation.repository';
import { headOf, headPayload, ownOf, ownPayload, type HeadState } from '../conversation/conversation.events';
import { filterOf, groupConversation, scopeOf, type Conversation, type ConversationAccess, type ConversationArgs, type ConversationFilter } from '../conversation/conversation.access';
import { KINDS } from '../conversation/conversation.mapper';
import { groupKey, KEY_PATTERN, scopeKey, userOfChannel } from '../conversation/conversation.keys';
import { checkAttachment } from './attachment.validation';
import { checkEmoji, MAX_REACTION_KINDS } from './reaction.validation';
import { messageRepository, type MessageRow, type SentColumns } from './message.repository';
import { mentionedUser, placeOf, toChangedMessage, toChangedPayload, toMessagePayload, toMessageType } from './message.mapper';
import type { MessageType } from './message.types';
import { dateOf, isoOf, timeOf } from '../../shared/time';
import { mayMentionAll, mentionAsk, type MentionAsk } from './mention.rules';
import { mentionRepository, type MentionTargets } from './mention.repository';
import { threadRepository, type ParticipantColumns, type ReplyColumns, type RootRow } from './thread.repository';
import { Batcher, Lanes } from '../../shared/batcher';
import { boundedLru } from '../../shared/lru';
import { isDependencyDown, retryDeadlocks } from '../../shared/sql';
import { MessageGoneError, unlessGone } from './message.gone';
import { blocksSender } from '../safety/block.repository';

const MAX_CONTENT = 4000;
/** Who may delete another's message: in a group its owner and admins; outside one no one (its wording named rights that are not there: an outside probe). */
const deleteRefused = (groupId: string | null) =>
  new ForbiddenError(groupId ? "Only the sender, or the group's owner or an admin, can delete a message." : 'Only the sender can delete this message.');
/**
 * How far back a newly taken channel is read from the database (and never before the join): far
 * longer than the time between a join's commit and this instance's SUBSCRIBE (milliseconds), so
 * nothing published in between is missed.
 */
const CATCH_UP_MS = 5000;
/**
 * How recent a message a send's retry finds stored is published again (see replayed): clients
 * retry within seconds; a line that passed its place drops the copy, but one started anew since
 * (a new subscriber's) would show it.
 */
const REPLAY_MS = 60_000;
/** Looks for a send whose answer PostgreSQL's going away cut (see unsure): about five minutes, a failover's length. */
const UNSURE_TRIES = 60;
/** How long a file's send or read waits for its turn (see MessageService's filesIn) before SERVICE_UNAVAILABLE. */
export const FILE_WAIT_MS = 30_000;
/** How long a group found in slow mode has its sends stamp it from the first statement (see slowFirst). */
const SLOW_HINT_MS = 10 * 60_000;

export interface MessageServiceDeps {
  pubsub: PubSub;
  /** Of these members of a group, who holds a live connection now as `viewerId` may see it (`@here`); none when absent. */
  online?: (em: EntityManager, viewerId: string, groupId: string, userIds: string[]) => Promise<Set<string>>;
  /** Which conversations the viewer may send to and read. */
  access: ConversationAccess;
  env: Pick<Env, 'ATTACHMENT_MAX_BYTES' | 'SIDEBAR_FANOUT_MAX'>;
  /** Files this instance takes in (sends with an attachment) at once, and reads out at once (see MessageService's filesIn). @default 3 */
  filesAtOnce?: number;
  /**
   * Where a send's statement runs when it is not part of a caller's transaction, and a group's
   * history page: an EntityManager forked once. The statements are raw SQL on a pooled
   * connection and touch no identity map, while a request's own fork costs 10-35 µs a send
   * (MikroORM's fork sets two config values, and each writes process.env) and 11 µs a page.
   */
  statements: EntityManager;
  /** A group's slow mode, asked only after a gated send wrote nothing: throws RATE_LIMITED (saying when) if the sender must wait. */
  slowMode?: (em: EntityManager, groupId: string, userId: string) => Promise<void>;
  /** Whether the user is the group's owner or one of its admins (they delete others' messages). */
  moderates?: (em: EntityManager, groupId: string, userId: string) => Promise<boolean>;
}

/** Run after a message is committed and published (the sender's typing ends, say). */
export type SentHook = (sender: UserPayload, conv: Conversation) => void;

/**
 * A message read back from the database to be delivered as new (a catch-up, a gap's search), as
 * published: with its place on its conversation's line (see InOrder), and `version` set, so that
 * whoever shows it reads its mentions and thread (a publish carries them).
 */
function readBack(r: MessageRow): MessagePayload {
  const payload = Object.assign(toMessagePayload(toMessageType(r)), { version: r.version });
  if (r.pos !== null) payload.pos = Number(r.pos);
  return payload;
}

/**
 * What a send carried, as SENT_DIGEST in message.repository.ts keeps it when the message first
 * changes: its id, its text as stored, and its file's name, size and bytes.
 */
function sentDigest(id: string, text: string | null, file: { fileName: string; base64: string } | null | undefined): Buffer {
  let filed = '';
  if (file) {
    const bytes = Buffer.from(String(file.base64 ?? ''), 'base64');
    filed = `${String(file.fileName ?? '').trim()}\n${bytes.length}\n${createHash('sha256').update(bytes).digest('hex')}`;
  }
  return createHash('sha256').update(`${id}\n${text ?? ''}\n${filed}`, 'utf8').digest();
}

/** What sendMessage's input carries. */
export interface SendInput {
  groupId?: string | null;
  toUserId?: string | null;
  projectId?: string | null;
  content?: string | null;
  attachment?: { fileName: string; base64: string } | null;
  clientMessageId?: string | null;
  parentId?: string | null;
  alsoInConversation?: boolean | null;
}

/** A clientMessageId as API.md allows it: 1 to 64 UTF-16 code units, no control characters, no half surrogate pair. */
const validClientId = (id: string): boolean => id.length >= 1 && id.length <= 64 && !/[\u0000-\u001f]/.test(id) && isWellFormed(id);

/**
 * The answer to a send whose clientMessageId the sender used before: the first message, when this
 * is a retry of it (the same conversation, thread, file and text, as sent: an edit or deletion
 * since kept what the send carried). A key reused for another message is refused, rather than
 * answered with a message the client did not send while its own is dropped.
 */
async function retryOf(em: EntityManager, first: MessageRow, input: SendInput): Promise<MessageType> {
  // An empty id names nothing, as when the message was sent.
  const id = (v: string | null | undefined) => (v ? v.toLowerCase() : null);
  const sameTarget = first.group_id
    ? id(input.groupId) === first.group_id && !input.projectId && !input.toUserId
    : first.project_id
      ? id(input.projectId) === first.project_id && id(input.toUserId) === first.recipient_id && !input.groupId
      : id(input.toUserId) === first.recipient_id && !input.groupId && !input.projectId;
  let text: string | null;
  let refused = false;
  try {
    text = cleanMessageText(input.content, MAX_CONTENT) || null;
  } catch {
    // Text this release refuses may be what an earlier one stored (control characters): the same text is the same send.
    text = input.content?.trim() || null;
    refused = true;
  }
  const file = input.attachment;
  let sameText: boolean;
  let sameFile: boolean;
  const changed = first.edited_at || first.deleted_at ? await messageRepository.sentDigest(em, first.id) : null;
  if (changed) {
    // Edited or deleted since: its text (and a deletion's file) are gone from the row, not from the digest.
    sameText = sameFile = sentDigest(first.id, text, file).equals(changed);
  } else {
    // Unchanged, or changed by a release that kept no digest: an edit's text is no longer the send's, a deletion's file is gone.
    sameText = !!first.edited_at || !!first.deleted_at || (text === first.content && !(refused && !first.content));
    // The same file: its name and size, then (only when those match) its bytes, compared by digest
    // in PostgreSQL (a file of the same name and size but other bytes was answered with the first
    // one, dropping the new file; an outside probe).
    sameFile = !!first.deleted_at || (file ? String(file.fileName ?? '').trim() === first.file_name && Buffer.byteLength(file.base64 ?? '', 'base64') === first.size : first.file_name === null);
    if (sameFile && file && !first.deleted_at && first.attachment_id) {
      const digest = createHash('sha256').update(Buffer.from(String(file.base64 ?? ''), 'base64')).digest();
      const same = await messageRepository.attachmentDigestIs(em, first.attachment_id, digest);
      // The file went after `first` was read: the message was deleted meanwhile, and its kept digest
      // decides (a retry racing the deletion was CONFLICT: an outside probe, 11 of 100).
      if (same === null) {
        const now = await messageRepository.byId(em, first.id);
        if (now?.deleted_at) return retryOf(em, now, input);
      }
      sameFile = same === true;
    }
  }
  // A reply again in the same thread (its parent may be named by a reply of that thread: the stored one is the root).
  const parent = id(input.parentId);
  let sameThread = parent === null ? first.parent_id === null : first.parent_id !== null;
  if (sameThread && parent !== null && parent !== first.parent_id) sameThread = isId(parent) && (await messageRepository.byId(em, parent))?.parent_id === first.parent_id;
  // A reply sent to the conversation too, or kept in its thread, as the first was.
  if (sameThread && parent !== null && !!input.alsoInConversation !== !!first.also_in_conversation) sameThread = false;
  if (!sameTarget || !sameText || !sameFile || !sameThread) throw new ConflictError('This clientMessageId was already used for another message.', 'clientMessageId');
  return toMessageType(first);
}

/** A message on its way to PostgreSQL. */
interface Outgoing {
  /** The request's EntityManager, forked on first use: a send that passes its checks in its statement never needs its own. */
  em: () => EntityManager;
  /** Sent inside the caller's transaction (never batched). */
  inTransaction: boolean;
  conv: Conversation;
  id: string;
  senderId: string;
  content: string | null;
  clientMessageId: string | null;
  /** A direct conversation's other user, or a private project message's recipient. */
  recipientId: string | null;
  privateInProject: boolean;
  file: { id: string; fileName: string; mimeType: string; data: Buffer } | null;
  /**
   * A group send whose membership its statement checks (`conv` has no title until it answers):
   * written only if the sender is a member; if not, the full check says why (see insertOne).
   */
  gated: boolean;
  /** The gate refused it once already, though the full check let it through (see insertOne). */
  regated?: boolean;
  /** A direct or project send (or reply) its statement's gate refused once though the check passed (see onceMore). */
  gateRetried?: boolean;
  /** A reply kept in its thread: the message it answers (checked by its statement, see insertReply). */
  replyTo: string | null;
  /** A reply also in the timeline: its root, checked before. */
  root: { id: string; senderId: string; createdAt: Date } | null;
  /** Who its text mentions, resolved by its statement (null: no '@name' in it). */
  mentions: MentionTargets | null;
}

/** What a send's statement returns: the message, and what its kind adds (see insertOne, insertReply). */
type Sent = MessageRow & Partial<SentColumns> & Partial<ReplyColumns>;

/**
 * What goes through a batcher: open messages of a group or project, text only (see
 * MessageService.batcher; replies kept in their threads: MessageService.replies), and never one
 * inside a transaction (a batch commits on its own).
 */
const batchable = (o: Outgoing) => o.content !== null && !o.file && !o.recipientId && o.conv.kind !== 'direct' && !o.root && !o.inTransaction;

/** A batched send as its statement takes it (see messageRepository.insertBatch). */
const batchItem = (o: Outgoing) => ({
  id: o.id,
  conversationKey: o.conv.key,
  groupId: o.conv.groupId,
  projectId: o.conv.projectId,
  senderId: o.senderId,
  content: o.content!,
  clientMessageId: o.clientMessageId,
  mentions: o.mentions,
});

/**
 * A batch's statement run (a deadlock's victim again), each caller answered with its own row, by
 * id (never by place). A send the statement left out has no row: it goes alone, and is told why
 * (see insertOne).
 */
async function answered(batch: Outgoing[], run: () => Promise<Sent[]>): Promise<(Sent | undefined)[]> {
  const byId = new Map((await retryDeadlocks(run)).map((r) => [r.id, r]));
  return batch.map((o) => {
    const row = byId.get(o.id);
    if (row && o.gated) checked(o, row);
    return row;
  });
}

/** What one send can make its batch fail with: its clientMessageId stored meanwhile, its sender deleted. */
const oneSendsFault = (e: unknown) => e instanceof UniqueConstraintViolationException || e instanceof ForeignKeyConstraintViolationException;

/**
 * Lanes of group commit (see MessageService.batcher): statements of batched sends in flight at
 * once. One lane makes the largest batches, the least time a send: bench:http, sends to 32 groups
 * in turn against the hand-written endpoint, same runs: 1 lane 0.93-0.97x, 2 lanes 0.84-0.90x, 4
 * 0.66-0.87x, 8 0.57-0.58x; bench:rooms, 1 lane against 2 (fixed by conversation): PostgreSQL
 * 305-320 against 415-430 us a send, the server 527-559 against 631-640, 1.10x the rate and p99
 * 1.02-1.05x the storing router's against 1.45-1.61x. So sends take one lane while it flows (see
 * Lanes), and a lane whose statement has run LANE_STUCK_MS (waiting on a row lock: a group being
 * deleted, an account whose rows a send's sort keys touch) gets no new conversation: the next
 * lane takes them, up to SEND_LANES.
 */
const SEND_LANES = 4;
const LANE_STUCK_MS = 100;

export class MessageService {
  /** Messages committed whose publish failed: still safe in history. */
  publishFailures = 0;
  /** Messages committed by this instance since start (the messages-sent metric). */
  sent = 0;
  private readonly sentHooks: SentHook[] = [];
  /** Groups a send found in slow mode within the last SLOW_HINT_MS (see slowFirst). */
  private readonly slowGroups = boundedLru<string, true>({ max: 10_000, ttlMs: SLOW_HINT_MS });

  /** The batch statement's record, built once: the statement's text is then built once too (see messageRepository.insertBatch). */
  private batchRecord: ReturnType<typeof conversationRepository.recordBatch> | undefined;

  /**
   * Open messages of groups and projects go through a lane (see sendLanes); those that arrive
   * while their lane's statement runs go together in the next one (group commit), whatever their
   * conversations. A send commits with its own fsync otherwise, and a busy conversation's sends
   * queue behind its head's row lock; a lane's batch takes one commit, one round trip and one
   * statement's overhead for all of them (bench:http's sends to 32 groups in turn). A
   * conversation keeps its lane while it has sends in it, so its sends keep their order.
   */
  private readonly batcher = new Batcher<Outgoing, Sent>({
    one: (o) => this.insertOne(o),
    many: (batch) =>
      answered(batch, () =>
        messageRepository.insertBatch(
          this.statements,
          batch.map(batchItem),
          (this.batchRecord ??= conversationRepository.recordBatch({ sortFanout: this.env.SIDEBAR_FANOUT_MAX })),
          // Another statement text only when a message of the batch mentions someone.
          batch.some((o) => o.mentions) ? mentionRepository.onSend('batch', true) : undefined,
        ),
      ),
    itemFault: oneSendsFault,
  });

  /**
   * Replies kept in their threads, batched as the batcher's sends are, in lanes of their own (a
   * reply writes no sidebar row, and its statement is another: see insertReplyBatch). A batch takes
   * one reply per conversation (a busy thread's next replies wait for the next batches, while the
   * lane's other conversations go on); those a check refused go alone after it.
   */
  private readonly replies = new Batcher<Outgoing, Sent>({
    one: (o) => this.insertOne(o),
    many: (batch) => answered(batch, () => threadRepository.insertReplyBatch(this.statements, batch.map((o) => Object.assign(batchItem(o), { parentId: o.replyTo! })))),
    itemFault: oneSendsFault,
    distinct: (o) => o.conv.key,
  });

  /** Which lane each conversation's sends and replies go to (see SEND_LANES). */
  private readonly sendLanes = new Lanes(this.batcher, SEND_LANES, LANE_STUCK_MS);
  private readonly replyLanes = new Lanes(this.replies, SEND_LANES, LANE_STUCK_MS);

  private readonly pubsub: PubSub;
  private readonly access: ConversationAccess;
  private readonly env: MessageServiceDeps['env'];
  private readonly slowMode: MessageServiceDeps['slowMode'];
  private readonly moderates: MessageServiceDeps['moderates'];
  private readonly online: NonNullable<MessageServiceDeps['online']>;
  private readonly statements: EntityManager;

  /**
   * A file's send decodes and checks megabytes and writes them on a pooled connection; a read
   * holds a connection while its bytes come. Forty 5 MB sends at once took 1 GB and the pool's
   * every connection, and other users' requests failed SERVICE_UNAVAILABLE waiting for one (an
   * outside probe, as for thirty users reading files as base64): so many at once, the rest in turn.
   */
  private readonly filesIn: Gate;
  private readonly filesOut: Gate;
  /** Answers that were a retry's (see again). */
  private readonly retries = new WeakSet<MessageType>();
  /** Sends an outage answered SERVICE_UNAVAILABLE that may be stored (see unsure), looked for together. */
  private readonly unsureIds = new Set<string>();
  private unsureEm: (() => EntityManager) | undefined;
  private unsureTimer: NodeJS.Timeout | undefined;

  constructor(deps: MessageServiceDeps) {
    const atOnce = deps.filesAtOnce ?? 3;
    const busy = () => new ServiceUnavailableError('Many files are being sent or read here at once; try again in a few seconds.');
    this.filesIn = new Gate(atOnce, FILE_WAIT_MS, busy);
    this.filesOut = new Gate(atOnce, FILE_WAIT_MS, busy);
    this.pubsub = deps.pubsub;
    this.access = deps.access;
    this.env = deps.env;
    this.slowMode = deps.slowMode;
    this.moderates = deps.moderates;
    this.online = deps.online ?? (async () => new Set<string>());
    this.statements = deps.statements;
  }

  /** Sends that were committed together with others (see batcher). */
  get batchedSends(): number {
    return this.batcher.batched + this.replies.batched;
  }

  onSent(hook: SentHook): void {
    this.sentHooks.push(hook);
  }

  /**
   * The conversation a message is sent to, read from or subscribed to, as the viewer may use it:
   * asked of ConversationAccess (its errors), the message module's one door to it.
   */
  conversation(em: EntityManager, viewerId: string, c: ConversationArgs, field = 'conversation'): Promise<Conversation> {
    return this.access.resolve(em, viewerId, c, field);
  }

  /** The filter of a subscription to the messages of one conversation (the same errors as `conversation`). */
  async subscriptionFilter(em: EntityManager, viewerId: string, c: ConversationArgs): Promise<ConversationFilter> {
    return filterOf(await this.conversation(em, viewerId, c));
  }

  /**
   * After this instance took a conversation's channel because a member joined: the messages of
   * the last CATCH_UP_MS since the joiners joined, which may have been published before the
   * channel was subscribed (the pub/sub skips those that arrived through it).
   */
  async catchUp(em: EntityManager, scope: 'group' | 'project', id: string, joiners: readonly string[]): Promise<MessagePayload[]> {
    const rows = await messageRepository.since(em, scopeKey(scope, id), new Date(Date.now() - CATCH_UP_MS), joiners, 200);
    return rows.map(readBack);
  }

  /**
   * A retry: CONFLICT for another message under the key, then who may send as for a new send: a
   * sender no longer in the conversation (left, removed, banned, unfriended) gets its refusal, not
   * the message as it stands now, with what others did there since (replies, reactions, pins: an
   * outside probe, 8 of 8).
   */
  private async retried(em: EntityManager, viewerId: string, target: ConversationArgs, first: MessageRow, input: SendInput): Promise<MessageType> {
    const message = await retryOf(em, first, input);
    await this.conversation(em, viewerId, target, 'input');
    return message;
  }

  /**
   * A send's retry past the send limit (see RateLimit.spend's `retry`): it writes nothing, so it
   * still gets the first message (or the CONFLICT a different one gets), as API.md promises a
   * retry; null when nothing was stored under its clientMessageId, and the send stays RATE_LIMITED.
   * Before, a client retrying after a lost answer during a burst was refused its own message (an outside probe).
   */
  async retryPastLimit(em: EntityManager, viewerId: string, input: SendInput): Promise<MessageType | null> {
    const id = input.clientMessageId;
    if (!id || !validClientId(id)) return null;
    return this.again(em, viewerId, { groupId: input.groupId, userId: input.toUserId, projectId: input.projectId }, id, input);
  }

  /** The message first stored under the sender's clientMessageId, answered as a retry (see retried, replayed); null when there is none. */
  private async again(em: EntityManager, viewerId: string, target: ConversationArgs, clientMessageId: string, input: SendInput): Promise<MessageType | null> {
    const first = await messageRepository.byClientId(em, viewerId, clientMessageId);
    if (!first) return null;
    return this.asRetry(await this.replayed(first, await this.retried(em, viewerId, target, first, input)));
  }

  /** Marks a send's answer as a retry's (the first message, nothing written): see wasRetry. */
  private asRetry(message: MessageType): MessageType {
    this.retries.add(message);
    return message;
  }

  /** Whether a send's answer is a retry's (the first message, nothing written): it costs no point of the send limit. */
  wasRetry(m: MessageType): boolean {
    return this.retries.has(m);
  }

  /**
   * A send answered SERVICE_UNAVAILABLE whose commit PostgreSQL may have taken as the connection
   * broke: looked for once the database answers (after 1, 2, 4 s, then every 5 s, for about five
   * minutes) and, stored, published as a retry's replay. A gap's search finds such a message once a
   * later one comes (InOrder), but the last of a quiet conversation reached no one, and a retry
   * on another instance no one either (an outside probe, 3 of 3).
   */
  private unsure(em: () => EntityManager, id: string): void {
    this.unsureIds.add(id);
    this.unsureEm = em;
    if (!this.unsureTimer) this.lookForUnsure(0);
  }

  /** One look for every unsure send at a time (an outage fails many): one query, not one each. */
  private lookForUnsure(tries: number): void {
    this.unsureTimer = setTimeout(() => {
      const ids = [...this.unsureIds];
      messageRepository.byIds(this.unsureEm!(), ids).then(
        async (rows) => {
          for (const id of ids) this.unsureIds.delete(id);
          this.unsureTimer = undefined;
          if (this.unsureIds.size) this.lookForUnsure(0);
          // Published whatever its age: no instance published it (a retry's replay is for recent ones).
          for (const row of rows) await this.replayed(row, toMessageType(row), true);
        },
        () => {
          this.unsureTimer = undefined;
          if (tries < UNSURE_TRIES) this.lookForUnsure(tries + 1);
          else this.unsureIds.clear();
        },
      ).catch(() => undefined);
    }, Math.min(1000 * 2 ** tries, 5000));
    this.unsureTimer.unref();
  }

  /**
   * A retry's answer, the message stored by the first try, published again if it is recent: the
   * first try's publish may never have happened (its instance died after the commit, or stopped
   * with Redis gone), and its client retried because it got no answer. Subscribers get it only
   * where they did not yet (see EventOrder's replays).
   */
  private async replayed(first: MessageRow, message: MessageType, unpublished = false): Promise<MessageType> {
    if (first.pos !== null && !first.deleted_at && (unpublished || Date.now() - new Date(first.created_at).getTime() < REPLAY_MS)) {
      await this.pubsub.publishSafe(Topic.MessageAdded, Object.assign(toMessagePayload(message), { pos: Number(first.pos), version: first.version, replay: true as const }));
    }
    return message;
  }

  /**
   * What was stored on these channels (group, project and user channels) since `since`, as
   * published: what an instance missed while it was off Redis (see PubSub.recoverFrom).
   */
  async storedOn(em: EntityManager, channels: readonly string[], since: Date): Promise<MessagePayload[]> {
    const keys: string[] = [];
    const users: string[] = [];
    for (const c of channels) {
      const user = userOfChannel(c);
      if (user !== undefined) users.push(user);
      else if (KEY_PATTERN.test(c)) keys.push(c);
    }
    if (!keys.length && !users.length) return [];
    const rows = await messageRepository.storedSince(em, { keys, users, since, limit: RECOVERY_MAX });
    return rows.map(readBack);
  }

  /**
   * The messages a subscription line's gap lost (see PubSub.fillGapsFrom), as published, with their
   * places. `version` set: whoever shows one reads its mentions (a publish carries them).
   */
  async stored(em: EntityManager, q: { conversationKey: string; after: string; before: string; limit: number }): Promise<MessagePayload[]> {
    const rows = await messageRepository.between(em, q.conversationKey, { after: new Date(q.after), before: new Date(q.before), limit: q.limit });
    return rows.filter((r) => r.pos !== null).map(readBack);
  }

  /**
   * Persists a message, then publishes it. A retry with the same clientMessageId returns the
   * first message. If publishing fails, the message is still committed and reachable by history.
   * `emOf`: the caller's EntityManager, or how to fork one when the send needs it (a batched
   * send runs its statement on its batch's).
   */
  send(emOf: EntityManager | (() => EntityManager), viewerId: string, input: SendInput): Promise<MessageType> {
    return input.attachment ? this.filesIn.run(() => this.sendNow(emOf, viewerId, input)) : this.sendNow(emOf, viewerId, input);
  }

  /** Gauges of the file gates: the most files taken in and read out at once. */
  get filesAtOncePeak(): { in: number; out: number } {
    return { in: this.filesIn.peak, out: this.filesOut.peak };
  }

  private async sendNow(emOf: EntityManager | (() => EntityManager), viewerId: string, input: SendInput): Promise<MessageType> {
    let forked: EntityManager | undefined;
    const em = typeof emOf === 'function' ? () => (forked ??= emOf()) : () => emOf;
    const clientMessageId = input.clientMessageId ?? null;
    if (clientMessageId !== null && !validClientId(clientMessageId)) {
      throw new BadUserInputError('clientMessageId must be 1 to 64 UTF-16 code units, without control characters (U+0000 to U+001F) or half of a surrogate pair.', 'clientMessageId');
    }
    const target: ConversationArgs = { groupId: input.groupId, userId: input.toUserId, projectId: input.projectId };
    if (clientMessageId) {
      const again = await this.again(em(), viewerId, target, clientMessageId, input);
      if (again) return again;
    }
    const parentId = input.parentId ?? null;
    const also = parentId !== null && !!input.alsoInConversation;
    // Only a text with an '@' pays for mentions (a regular expression); @here and @all need the group first.
    const ask = mentionAsk(input.content);
    // A group send checks the membership in its own statement: one round trip instead of two (a reply kept in its thread too).
    const gated = isId(input.groupId) && (input.toUserId ?? null) === null && (input.projectId ?? null) === null && !also && !(ask && (ask.here || ask.all));
    const conv = gated ? groupConversation(input.groupId!) : await this.conversation(em(), viewerId, target, 'input');
    let content: string | null;
    let file: ReturnType<typeof checkAttachment> | null;
    try {
      content = cleanMessageText(input.content, MAX_CONTENT);
      file = input.attachment ? checkAttachment(input.attachment, this.env.ATTACHMENT_MAX_BYTES) : null;
      if (!content && !file) throw new BadUserInputError('Send some text (1 to 4000 characters) or an attachment.', 'content');
      if (parentId !== null && (!isId(parentId) || conv.privateWith)) throw new BadUserInputError(NO_PARENT, 'parentId');
    } catch (e) {
      // Who may send is told before what is wrong with the message, as when checked first.
      if (gated) await this.conversation(em(), viewerId, target, 'input');
      throw e;
    }

    const recipientId = conv.peerId ?? conv.privateWith;
    const privateInProject = conv.kind === 'project' && !!recipientId;
    const id = randomUUID();
    let row: Sent;
    // A private message already reaches its one reader: its '@names' stay text.
    const mentions = ask && !privateInProject ? await this.mentionTargets(em(), conv, viewerId, ask) : null;
    const root = also ? await this.rootFor(em(), conv, parentId!, viewerId) : null;
    // Answered once committed, alone or with others that reached its lane meanwhile.
    const out: Outgoing = {
      em,
      inTransaction: typeof emOf !== 'function' && !!emOf.getTransactionContext(),
      conv,
      id,
      senderId: viewerId,
      content: content || null,
      clientMessageId,
      recipientId,
      privateInProject,
      file: file ? { id: randomUUID(), ...file } : null,
      gated,
      replyTo: parentId !== null && !also ? parentId : null,
      root: root && { id: root.id, senderId: root.sender_id, createdAt: root.created_at },
      mentions,
    };
    try {
      row = !batchable(out) ? await this.insertOne(out) : out.replyTo ? await this.replyLanes.run(conv.key, out) : await this.sendLanes.run(conv.key, out);
    } catch (e) {
      // Two retries raced: the other one stored it first, and this one wrote nothing (refused by
      // the unique key, or by slow mode, which the other's message started).
      if (clientMessageId && (e instanceof UniqueConstraintViolationException || e instanceof RateLimitedError)) {
        const first = await messageRepository.byClientId(em(), viewerId, clientMessageId);
        // A retry's answer, as again() gives it: it costs no point of the send limit.
        if (first) return this.asRetry(await this.retried(em(), viewerId, target, first, input));
      }
      if (!out.inTransaction && isDependencyDown(e)) this.unsure(em, id);
      throw e;
    }
    const message = toMessageType(row);
    message.mentionList = (row.mentioned ?? []).map(mentionedUser);
    this.sent++;
    // Its position in the conversation, for subscribers to get messages in commit order (see InOrder).
    const payload = Object.assign(toMessagePayload(message), { pos: Number(row.pos) });
    // All go out together, the message first: one envelope on the conversation's channel, handed
    // to this instance's listeners in this order, so every subscriber still gets the message first.
    // out.conv: with its title now, for a gated send. A reply kept in its thread changes no
    // sidebar row (not the timeline: its mentions count in `threads`); its root's counters change.
    const events: TopicEvent[] = [{ topic: Topic.MessageAdded, payload }];
    if (row.head_seq !== undefined) {
      events.push({ topic: Topic.ConversationUpdated, payload: this.updated(out.conv, viewerId, row as MessageRow & SentColumns, payload, privateInProject ? recipientId : null) });
    }
    // The root's reactions and participants read again when the statement's may be older than its
    // version (rare: see threadAfter's `moved`); a read that fails keeps the statement's, so the
    // committed reply is still published.
    if (row.root) events.push({ topic: Topic.MessageEvent, payload: threadUpdated(row, row.root.moved ? await this.rootNow(em(), row.root.id).catch(() => null) : null) });
    if (!(await this.pubsub.publishTogetherSafe(events))) this.publishFailures++;
    for (const hook of this.sentHooks) hook(payload.sender!, out.conv);
    return message;
  }

  /** One statement: the message, its attachment, the conversation's head, the sender's row (a
   * private message's recipient's too) and, in a small conversation, the others' sort keys; its
   * mentions and, for a reply also in the timeline, its thread's. */
  private async insertOne(o: Outgoing): Promise<Sent> {
    if (o.replyTo) return this.insertReply(o);
    if (o.root && !o.inTransaction) return this.underRoot(o);
    const { conv } = o;
    const gate = groupGate(conv, this.slowFirst(o));
    const record = conversationRepository.recordMessage({ id: o.id, key: conv.key, kind: KINDS[conv.kind], senderId: o.senderId, recipientId: o.recipientId, privateInProject: o.privateInProject, sortFanout: this.env.SIDEBAR_FANOUT_MAX, gate });
    const mentions = o.mentions ? mentionRepository.onSend(o.mentions, true) : null;
    const extra = o.root ? threadRepository.alsoInConversation(o.root, mentions) : mentions;
    if (extra) {
      record.after = { text: `${record.after.text}, ${extra.ctes.text}`, params: [...record.after.params, ...extra.ctes.params] };
      record.states = { text: `${record.states.text}, ${extra.columns}`, params: record.states.params };
    }
    const insert = () =>
      messageRepository.insert(
        this.statementEm(o),
        { id: o.id, conversationKey: conv.key, senderId: o.senderId, content: o.content, groupId: conv.groupId, projectId: conv.projectId, recipientId: o.recipientId, clientMessageId: o.clientMessageId, parentId: o.root?.id ?? null },
        o.file,
        record,
      );
    // The statement is whole on its own: a deadlock's victim is run again (in a transaction, the transaction's caller decides).
    const row = await (o.inTransaction ? insert() : retryDeadlocks(insert));
    if (row) {
      if (o.gated) checked(o, row);
      return row;
    }
    if (!gate) {
      // Its statement's gate refused it (a removal, an unfriending or a block committed first) or its
      // conversation closed: the check now says why. Passing now (the sender was added back, friends
      // again, in between), it goes once more through the gate, as a group send does.
      await this.stillOpen(o);
      return this.onceMore(o, () => this.insertOne(o));
    }
    await this.member(o);
    await this.slowOrOnceMore(o);
    return this.insertOne(o);
  }

  /** A direct or project send its gate refused though the check passes now: once more, then SERVICE_UNAVAILABLE (access flapping under it). */
  private onceMore(o: Outgoing, send: () => Promise<Sent>): Promise<Sent> {
    if (o.gateRetried) throw new ServiceUnavailableError('The conversation changed while this was sent; send it again.');
    o.gateRetried = true;
    return send();
  }

  /**
   * A reply also in the conversation, in one transaction with its root's row taken first: its root
   * was read before (rootFor), and a deletion committed since let it through, its THREAD_UPDATED
   * told after DELETED and the tombstone counting it (an outside probe, 5-8 of 40 racing rounds).
   * Now the deletion waits for the reply, or the reply finds the root deleted: BAD_USER_INPUT.
   * The conversation's head is taken before the root, as every reply statement takes them (see
   * insertReplyBatch): taken the other way, kept replies to the same root deadlocked with it, and
   * 1-3 of 30 mixed replies at once came back SERVICE_UNAVAILABLE (an outside probe, 6 of 6).
   * Before the head, the sender's row of a group or project, as its statement's gate and every send
   * take it: the head first waited for a deletion that held the members' rows and waited for it. A
   * group member's as strongly as the statement's slow-mode stamp updates it: with a share only, the
   * stamp, after the head, waited for the sender's other send, which had stamped and waited for the head.
   */
  private underRoot(o: Outgoing): Promise<Sent> {
    return retryDeadlocks(() =>
      o.em().transactional(async (tem) => {
        const { groupId, projectId } = o.conv;
        if (groupId) await tem.execute('select 1 from group_members where group_id = ? and user_id = ? for no key update', [groupId, o.senderId]);
        else if (projectId) await tem.execute('select 1 from project_members where project_id = ? and user_id = ? for key share', [projectId, o.senderId]);
        await tem.execute('select 1 from conversation_heads where conversation_key = ? for update', [o.conv.key]);
        const [root]: { deleted: boolean }[] = await tem.execute('select deleted_at is not null as deleted from messages where id = ? for no key update', [o.root!.id]);
        if (!root) throw new BadUserInputError(NO_PARENT, 'parentId');
        if (root.deleted) throw new BadUserInputError('A deleted message takes no replies.', 'parentId');
        return this.insertOne(Object.assign({}, o, { em: () => tem as EntityManager, inTransaction: true }));
      }),
    );
  }

  /** Where a send's own statement runs: the caller's transaction, or `statements`. */
  private statementEm(o: Outgoing): EntityManager {
    return o.inTransaction ? o.em() : this.statements;
  }

  /**
   * A group send its statement's gate did not write. First the full check gives the answer a send
   * checked first got (NOT_FOUND, FORBIDDEN); then (slowOrOnceMore) slow mode its own
   * (RATE_LIMITED). Should both pass (the sender joined meanwhile, the interval ran out), the
   * caller sends once more through the gate: slow mode is only the gate's to enforce, so no retry
   * ever goes around it.
   */
  private async member(o: Outgoing): Promise<void> {
    o.conv = await this.conversation(o.em(), o.senderId, { groupId: o.conv.groupId }, 'input');
    o.gated = false;
  }

  /** A send checked before its statement found its conversation closed (its group or project deleted meanwhile): NOT_FOUND, as checked now. */
  private async stillOpen(o: Outgoing): Promise<void> {
    await this.conversation(o.em(), o.senderId, { groupId: o.conv.groupId, projectId: o.conv.projectId, userId: o.conv.peerId ?? o.conv.privateWith }, 'input');
  }

  private async slowOrOnceMore(o: Outgoing): Promise<void> {
    // A member the gate refused: the group is in slow mode (or they joined just now). Its next
    // sends stamp slow mode from the first statement instead of finding out again.
    this.slowGroups.set(o.conv.groupId!, true);
    await this.slowMode?.(o.em(), o.conv.groupId!, o.senderId);
    if (o.regated) throw new RateLimitedError(1, 'Slow mode: you sent a message a moment ago; try again in a second.');
    o.regated = true;
  }

  /**
   * Whether a group send's gate stamps slow mode (see memberGate): once slow mode let a refused
   * send through (regated), and from the first statement in a group seen in slow mode lately.
   * Elsewhere the lighter gate writes nothing for a plain member of a group in slow mode, and the
   * send finds out (see slowOrOnceMore): correctness never rests on the hint, only cost does.
   */
  private slowFirst(o: Outgoing): boolean {
    return !!o.regated || (!!o.conv.groupId && this.slowGroups.has(o.conv.groupId));
  }

  /**
   * A reply kept in its thread, in one statement that checks its parent (and, gated, the sender's
   * membership): nothing written tells why, as a send checked first would have been told.
   */
  private async insertReply(o: Outgoing): Promise<Sent> {
    const { conv } = o;
    const gate = groupGate(conv, this.slowFirst(o)) ?? null;
    const insert = () =>
      threadRepository.insertReply(
        this.statementEm(o),
        { id: o.id, conversationKey: conv.key, senderId: o.senderId, content: o.content, groupId: conv.groupId, projectId: conv.projectId, recipientId: o.recipientId, clientMessageId: o.clientMessageId, parentId: o.replyTo! },
        o.file,
        gate,
        o.mentions,
      );
    const row = await (o.inTransaction ? insert() : retryDeadlocks(insert));
    if (row) {
      if (o.gated) checked(o, row);
      return row;
    }
    // Not written: membership (or the conversation's end), the parent, then slow mode say why.
    await (gate ? this.member(o) : this.stillOpen(o));
    await this.rootFor(o.em(), o.conv, o.replyTo!, o.senderId);
    // The sender's access and the parent pass now: a removal and a re-add (or the like) crossed it (see insertOne).
    if (!gate) return this.onceMore(o, () => this.insertReply(o));
    // Every check passes now (the sender joined, the parent changed, the interval ran out): once more, through the gate.
    await this.slowOrOnceMore(o);
    return this.insertReply(o);
  }

  /** The root a reply by `replierId` to `parentId` in `conv` attaches to; BAD_USER_INPUT when it may have none. */
  private async rootFor(em: EntityManager, conv: Conversation, parentId: string, replierId: string): Promise<RootRow> {
    const root = await threadRepository.rootOf(em, parentId, replierId);
    // A private project message is no one else's: it has no thread, and says no more than a message elsewhere.
    // Nor does one by a user the replier blocks, which their history leaves out.
    if (!root || root.conversation_key !== conv.key || root.private || root.hidden) throw new BadUserInputError(NO_PARENT, 'parentId');
    if (root.deleted_at || root.parent_deleted) throw new BadUserInputError('A deleted message takes no replies.', 'parentId');
    return root;
  }

  /** The users an '@' text names: usernames, and in a group `@here` (members online now) and `@all` (see mayMentionAll). */
  private async mentionTargets(em: EntityManager, conv: Conversation, senderId: string, ask: MentionAsk): Promise<MentionTargets | null> {
    let ids: string[] = [];
    const all = ask.all && (await mayMentionAll(conv, senderId, this.moderates && ((groupId, userId) => this.moderates!(em, groupId, userId))));
    if (conv.kind === 'group' && (all || ask.here)) {
      const members = (await mentionRepository.groupMembers(em, conv.groupId!)).filter((u) => u !== senderId);
      ids = all ? members : [...(await this.online(em, senderId, conv.groupId!, members).catch(() => new Set<string>()))];
    }
    return ask.names.length || ids.length ? { names: ask.names, ids } : null;
  }

  /**
   * What conversationUpdated tells after a message: the head and at most two rows (the
   * sender's; a private message's recipient's, the only other one it reaches; a direct
   * conversation's other one), never every member's: each receiver derives their own row.
   */
  private updated(conv: Conversation, viewerId: string, row: MessageRow & SentColumns & Partial<ReplyColumns>, message: MessagePayload, privateTo: string | null): ConversationUpdatedPayload {
    const members: ConversationUpdatedPayload['members'] = {};
    for (const s of [row.sender_state, row.recipient_state]) if (s) members[s.user_id] = ownPayload(ownOf(s));
    const update = rowUpdate(conv, viewerId, row, message, headOf(row), { members, only: privateTo ? [viewerId, privateTo] : null });
    // The mentioned members' badges, counted by the statement (see mentionRepository.onSend), each
    // with the read position it counted from: a receiver whose marker stands elsewhere reads it.
    if (row.mention_counts) {
      const counts: Record<string, number> = {};
      const reads: Record<string, number> = {};
      for (const [userId, [n, read]] of Object.entries(row.mention_counts as Record<string, [number, number | null]>)) {
        counts[userId] = n;
        if (read !== null) reads[userId] = Number(read);
      }
      update.mentionCounts = counts;
      update.mentionReads = reads;
    }
    return update;
  }

  // ---- edits, deletions and reactions ----

  /** A message the viewer may see; NOT_FOUND otherwise, the same answer for one that does not exist. */
  async visibleMessage(em: EntityManager, viewerId: string, messageId: string): Promise<MessageRow> {
    const row = isId(messageId) ? await messageRepository.byId(em, messageId) : null;
    if (!row || !(await this.canRead(em, viewerId, row))) throw new NotFoundError('Message');
    return row;
  }

  /** The sender's new text; the message shows editedAt. */
  async edit(em: EntityManager, viewerId: string, messageId: string, content: string): Promise<MessageType> {
    return unlessGone(em, messageId, async () => {
      const text = cleanMessageText(content, MAX_CONTENT);
      if (!text) throw new BadUserInputError('An edit needs some text (1 to 4000 characters).', 'content');
      const row = await this.visibleMessage(em, viewerId, messageId);
      // A message of a sender the viewer blocks is NOT_FOUND, as history leaves it out (and as a reaction, a pin or a report of it is).
      if (row.sender_id !== viewerId) throw (await blocksSender(em, viewerId, row.sender_id)) ? new NotFoundError('Message') : new ForbiddenError('Only the sender can edit a message.');
      if (row.deleted_at) throw new BadUserInputError('A deleted message cannot be edited.', 'messageId');
      // Mentions as the new text resolves them (a private message's stay none); a kept one is not new.
      const ask = row.project_id && row.recipient_id ? null : mentionAsk(text);
      // An `@here` the edit keeps reaches whom it reached when sent, not who is connected now:
      // fixing a typo took the mention from members gone since and gave it to ones come since.
      // So does a kept `@all`: not the members who joined since (an outside probe), whom it never reached.
      const sent = (ask?.here || ask?.all) && row.group_id ? mentionAsk(row.content) : null;
      const kept = !!sent && (ask!.all ? sent.all : sent.here && !sent.all);
      const conv = ask && !kept && (ask.here || ask.all) && row.group_id ? await this.conversation(em, viewerId, { groupId: row.group_id }) : null;
      const targets = !ask
        ? NO_TARGETS
        : kept
          ? { names: ask.names, ids: await mentionRepository.notNamed(em, row.id, sent!.names) }
          : ((conv ? await this.mentionTargets(em, conv, viewerId, ask) : { names: ask.names, ids: [] }) ?? NO_TARGETS);
      // The text and its mentions in one transaction, the message's row locked by the first: two edits
      // at once, or an edit and a deletion, no longer leave mentions of another text (or of a tombstone).
      let held: Conversation | undefined;
      const changes = await em.transactional(async (tem) => {
        held = await this.heldConversation(tem as EntityManager, viewerId, row);
        const outcome = await messageRepository.edit(tem as EntityManager, row.id, text);
        if (outcome === 'gone') throw new MessageGoneError();
        if (outcome === 'deleted') throw new BadUserInputError('A deleted message cannot be edited.', 'messageId');
        // The same text (compared under the row's lock, so an edit just before counts) is no edit:
        // editedAt, the version and subscribers stay as they are, and it answers the message as found.
        if (outcome === 'same') return { mentions: null, now: await this.read(tem as EntityManager, row.id) };
        const mentions = await mentionRepository.replace(tem as EntityManager, row.id, targets);
        return { mentions, now: await this.read(tem as EntityManager, row.id) };
      });
      if (!changes.mentions) return changes.now.message;
      const { added, removed } = changes.mentions;
      const { message, version } = await this.tell(changes.now, 'EDITED');
      await this.sidebarsChanged(em, held!, viewerId, row, message, version, [...added, ...removed]);
      return message;
    });
  }

  /** Leaves a tombstone; the sender may, and in a group its owner and admins. Deleting a deleted message changes nothing. */
  async delete(em: EntityManager, viewerId: string, messageId: string): Promise<boolean> {
    return unlessGone(em, messageId, async () => {
      const row = await this.visibleMessage(em, viewerId, messageId);
      if (row.sender_id !== viewerId) {
        const conv = row.group_id ? await this.conversation(em, viewerId, { groupId: row.group_id }) : null;
        const may = !!conv && (conv.ownerId === viewerId || (!!this.moderates && (await this.moderates(em, row.group_id!, viewerId))));
        if (!may) {
          // A removal that committed between the two reads (the role found gone): refused as any non-member is.
          await this.visibleMessage(em, viewerId, messageId);
          // Hidden from one who blocks its sender, as for an edit; an owner or admin still moderates it.
          throw (await blocksSender(em, viewerId, row.sender_id)) ? new NotFoundError('Message') : deleteRefused(row.group_id);
        }
      }
      if (row.deleted_at) return true;
      let held: Conversation | undefined;
      const done = await em.transactional(async (tem) => {
        held = await this.heldConversation(tem as EntityManager, viewerId, row, row.sender_id !== viewerId);
        const unmentioned = await messageRepository.tombstone(tem as EntityManager, row.id);
        return unmentioned === null ? null : { unmentioned, now: await this.read(tem as EntityManager, row.id) };
      });
      // Another deletion of it got there first (through another instance): it told everyone once.
      if (done === null) return true;
      const { message, version } = await this.tell(done.now, 'DELETED');
      await this.sidebarsChanged(em, held!, viewerId, row, message, version, done.unmentioned);
      return true;
    });
  }

  /** Adds or removes the viewer's reaction; doing it twice changes nothing the second time. */
  async react(em: EntityManager, viewerId: string, messageId: string, emoji: string, add: boolean): Promise<MessageType> {
    return unlessGone(em, messageId, async () => {
      const e = checkEmoji(emoji, !add);
      const row = await this.visibleMessage(em, viewerId, messageId);
      // A message of a sender the viewer blocks, which their history leaves out, is NOT_FOUND as one
      // they can't see: to add to, and to remove from unless a reaction made before the block goes
      // (removing none answered with the hidden message; a deleted one told its deletion: outside
      // probes). Asked only where it decides: every add, a removal of nothing or from a deleted one.
      const hidden = () => blocksSender(em, viewerId, row.sender_id);
      if (add && (await hidden())) throw new NotFoundError('Message');
      const deleted = () => new BadUserInputError('A deleted message takes no reactions.', 'messageId');
      if (row.deleted_at) throw !add && (await hidden()) ? new NotFoundError('Message') : deleted();
      // Removing: the form asked for too, as an earlier release may have stored it (see checkEmoji).
      // Read again under the group's hold, in the reaction's transaction: a removal or ban meanwhile refuses it.
      const changed = await em.transactional(async (tem) => {
        await this.access.stillReads(tem as EntityManager, viewerId, placeOf(row));
        const done = add
          ? await messageRepository.react(tem as EntityManager, row.id, viewerId, e, MAX_REACTION_KINDS)
          : await messageRepository.unreact(tem as EntityManager, row.id, viewerId, [...new Set([e, emoji])]);
        // Read under the row's lock, changed or not: the answer is the message as this call left it
        // (read after, a removal crossing an add answered the add without its reaction: an outside probe).
        return typeof done === 'boolean' ? { told: done, now: await this.read(tem as EntityManager, row.id) } : done;
      });
      // Deleted while this waited for the message's row (addReaction only; a removal finds nothing to
      // remove); gone with its group or project, NOT_FOUND as any message gone (see unlessGone).
      if (changed === 'deleted') throw deleted();
      if (changed === 'gone') throw new MessageGoneError();
      if (changed === 'full') throw new BadUserInputError(`A message takes at most ${MAX_REACTION_KINDS} different reactions; add one of those it has.`, 'emoji');
      if (changed.told) return (await this.tell(changed.now, 'REACTIONS_CHANGED')).message;
      // A removal that waited on the message's deletion found nothing left: refused as one made after
      // it is, not answered with the tombstone (a verification probe: 88 of 120 removals).
      if (changed.now.row.deleted_at) throw !add && (await hidden()) ? new NotFoundError('Message') : deleted();
      if (!add && (await hidden())) throw new NotFoundError('Message');
      return changed.now.message;
    });
  }

  /**
   * What an edit or deletion changes in sidebars, in one conversationUpdated. The rows whose last
   * message it is show it (only those: the receivers whose row it isn't the last message of are
   * skipped); the public head's message reaches every member, a private project message newer
   * than the head its two users. And `badged`, the members an edit newly mentions or no longer
   * does, or a deletion no longer does, get their row, its unread mention count read where it is
   * delivered (theirs alone; members only, as a mention outlives its member's leaving). A reply kept in its
   * thread counts in `threads`, not in the badge. A member in both gets one row, not two.
   */
  private async sidebarsChanged(em: EntityManager, conv: Conversation, viewerId: string, row: MessageRow, message: MessageType, version: number, badged: string[]): Promise<void> {
    const inBadge = badged.length > 0 && !(row.parent_id && !row.also_in_conversation);
    const [head, counted] = await Promise.all([
      conversationRepository.head(em, row.conversation_key),
      inBadge ? conversationRepository.membersAmong(em, row.conversation_key, badged) : [],
    ]);
    const privateInProject = !!(row.project_id && row.recipient_id);
    const newer = !head?.activityAt || new Date(row.created_at).getTime() >= head.activityAt;
    const last = head?.lastMessageId === row.id || (privateInProject && newer);
    // Not the head's: still the last message of those who block the senders of every later one.
    const blockers =
      last || !(row.group_id || row.project_id) || (row.parent_id && !row.also_in_conversation) ? [] : await conversationRepository.blockersSeeingLast(em, row.conversation_key, row, head?.lastMessageId ?? null);
    if (!last && !counted.length && !blockers.length) return;
    // A blocker's row is read again where it is delivered (BlockService.rowFor), with this message as its last.
    const only = last ? (privateInProject ? [row.sender_id, row.recipient_id!] : null) : [...new Set([...counted, ...blockers])];
    // With its version: of two edits close together, an instance shows the newer whichever arrives last (see NewestVersions).
    const update = rowUpdate(conv, viewerId, row, toChangedPayload(message, version), head, { members: {}, only, lastMessageOnly: last });
    // Each as -1, read again where delivered: counted after this change's commit, a count can miss
    // another edit's or deletion's committed just after, whose row, with the newer count, may then
    // arrive first (nothing orders two changes' rows, as a send's seq orders its own).
    if (counted.length) update.mentionCounts = Object.fromEntries(counted.map((u) => [u, -1]));
    await this.pubsub.publishSafe(Topic.ConversationUpdated, update);
  }

  /**
   * As ConversationAccess.stillReads, for an edit or a deletion: with `moderate` (someone else's
   * message) the viewer must still own or administer the group. Returns the conversation its
   * sidebars are told of after the commit, read here: a removal just after the commit no longer
   * turns the committed change's answer into FORBIDDEN, nor keeps it from the other members'
   * sidebars.
   */
  private async heldConversation(tem: EntityManager, viewerId: string, row: MessageRow, moderate = false): Promise<Conversation> {
    await this.access.hold(tem, placeOf(row));
    // Only the sender edits or deletes in a direct or project message, so the viewer is its sender
    // there and the conversation's check is the message's (membership, friendship): NOT_FOUND, as
    // for any message the viewer can't read.
    const peer = row.group_id || row.project_id ? null : row.recipient_id;
    const conv = await this.conversation(tem, viewerId, { groupId: row.group_id, projectId: row.project_id, userId: peer }).catch((e: unknown) => {
      throw e instanceof NotFoundError || e instanceof ForbiddenError ? new NotFoundError('Message') : e;
    });
    if (moderate && !(row.group_id && this.moderates && (await this.moderates(tem, row.group_id, viewerId)))) throw deleteRefused(row.group_id);
    return conv;
  }

  /** A thread root's reactions and first participants as committed now (see threadAfter's `moved`). */
  private async rootNow(em: EntityManager, rootId: string): Promise<{ reactions: ReactionSummary[]; participants: ParticipantColumns[] }> {
    const reactions = await messageRepository.reactions(em, [rootId]);
    const participants = await threadRepository.participants(em, [rootId]);
    return { reactions: reactions.get(rootId) ?? [], participants: participants.get(rootId) ?? [] };
  }

  /**
   * A change's message, read in its transaction under the row's lock, told to every messageEvent
   * subscriber of its conversation once committed; returns it with the version it told. Each change
   * tells its own version: read after the commit, two changes close together (two edits, two
   * reactions) both read the newer and told it twice, the older never (an outside probe: 6 runs of
   * 6), and an edit answered with the other edit's text.
   */
  private async tell({ row, message }: { row: MessageRow; message: MessageType }, kind: MessageEventPayload['kind']): Promise<{ message: MessageType; version: number }> {
    // Its position too: an event about a message still held in its line goes behind it (EventOrder).
    const payload = toChangedPayload(message, row.version);
    if (row.pos !== null) payload.pos = Number(row.pos);
    await this.pubsub.publishSafe(Topic.MessageEvent, { kind, message: payload });
    return { message, version: row.version };
  }

  /** The message as it is now, with all its answer and its event show (see threadRepository.changed). */
  private async read(em: EntityManager, id: string): Promise<{ row: MessageRow; message: MessageType }> {
    const row = await threadRepository.changed(em, id);
    if (!row) throw new MessageGoneError();
    return { row, message: toChangedMessage(row) };
  }

  /** `em` is asked for only off a group's page (see statements). */
  async history(
    em: () => EntityManager,
    viewerId: string,
    c: ConversationArgs,
    args: { last?: number | null; before?: string | null; first?: number | null; after?: string | null },
  ): Promise<ConnectionShape<MessageType, LazyCount>> {
    const { forward, limit, cursor, direction } = timelinePage(args);
    let conv: Conversation | undefined;
    let rows: MessageRow[] = [];
    // A group's page checks the membership in its own query: one round trip instead of two. No rows
    // (not a member, no such group, an empty page, an id not as stored) takes the full path, which says why.
    if (c.groupId && isId(c.groupId) && (c.projectId ?? null) === null && (c.userId ?? null) === null) {
      rows = await messageRepository.page(this.statements, groupKey(c.groupId), { direction, cursor, limit, member: { groupId: c.groupId, userId: viewerId }, hiddenFor: viewerId, groupId: c.groupId });
      if (rows.length) conv = groupConversation(c.groupId);
    }
    if (!conv) {
      conv = await this.conversation(em(), viewerId, c);
      rows = await messageRepository.page(em(), conv.key, {
        direction,
        cursor,
        limit,
        visibleTo: conv.kind === 'project' ? { viewerId, privateWith: conv.privateWith } : undefined,
        hiddenFor: viewerId,
        groupId: conv.kind === 'group' && conv.groupId ? conv.groupId : undefined,
      });
    }
    const visible = conv.kind === 'project' ? { viewerId, privateWith: conv.privateWith } : undefined;
    const key = conv.key;
    const groupId = conv.kind === 'group' && conv.groupId ? conv.groupId : undefined;
    return toConnection(rows, {
      limit,
      backward: !forward,
      hasCursor: !!cursor,
      // Another conversation's cursor is a time with maybe nothing of this one beyond it: one row looked for there, the cursor's own included.
      cursorSide: cursorSideOf(cursor, { backward: !forward, ascending: true }, (at, back) =>
        messageRepository.page(em(), key, { direction: back ? 'backward' : 'forward', cursor: at, limit: 0, visibleTo: visible, hiddenFor: viewerId, groupId }),
      ),
      // How many messages of the conversation the viewer can see: counted only if the client asks.
      totalCount: () => messageRepository.count(em(), conv.key, visible, viewerId),
      key: (r) => ({ k: isoOf(r.created_at), id: r.id }),
      node: toMessageType,
    });
  }

  /** A download: the bytes, if the viewer may read the conversation it was sent in. */
  async attachment(em: EntityManager, viewerId: string, attachmentId: string) {
    if (!isId(attachmentId)) throw new NotFoundError('Attachment');
    const row = await messageRepository.conversationOfAttachment(em, attachmentId);
    if (!row || !(await this.canRead(em, viewerId, row))) throw new NotFoundError('Attachment');
    // Nor from a sender the viewer blocks, whose messages their history, `node` and reactions leave out (an outside probe).
    if (await blocksSender(em, viewerId, row.sender_id)) throw new NotFoundError('Attachment');
    return this.attachmentData(em, attachmentId);
  }

  attachmentData(em: EntityManager, attachmentId: string) {
    return this.filesOut.run(() => messageRepository.attachmentData(em, attachmentId));
  }

  private canRead(em: EntityManager, viewerId: string, r: Pick<MessageRow, 'group_id' | 'project_id' | 'sender_id' | 'recipient_id'>): Promise<boolean> {
    return this.access.canRead(em, viewerId, placeOf(r));
  }
}

/**
 * A page of messages as history and thread take it: first/after forward, last/before back in
 * time (the newest 10 by default), by keyset on (created_at, id).
 */
export function timelinePage(args: { last?: number | null; before?: string | null; first?: number | null; after?: string | null }, scope: CursorScope = '', alsoScope?: CursorScope) {
  noEmptyCursor(args);
  const forward = (args.first !== null && args.first !== undefined) || !!args.after;
  if (forward && args.before) throw new BadUserInputError("Use 'first'/'after' or 'last'/'before', not both.", 'before');
  if (forward && args.last != null) throw new BadUserInputError("Use 'first'/'after' or 'last'/'before', not both.", 'last');
  const limit = forward ? pageSize(args.first, 'first', 10) : pageSize(args.last, 'last', 10);
  const cursor = forward ? (args.after ? decodeTimeCursor(args.after, 'after', undefined, scope, alsoScope) : null) : args.before ? decodeTimeCursor(args.before, 'before', undefined, scope, alsoScope) : null;
  return { forward, limit, cursor, direction: forward ? ('forward' as const) : ('backward' as const) };
}

const NO_PARENT = 'parentId must name a message of this conversation (not a private one).';
const NO_TARGETS: MentionTargets = { names: [], ids: [] };

/**
 * THREAD_UPDATED for the root a reply's statement returned: its counters and first participants
 * (those before the reply, with the root's author and the reply's sender where they are new), or
 * with `now` the root's reactions and participants as read after the commit.
 */
function threadUpdated(row: Sent, now: { reactions: ReactionSummary[]; participants: ParticipantColumns[] } | null): MessageEventPayload {
  const r = row.root!;
  // Read after the commit, they may name repliers after this reply: its counters are as of it, and so are they.
  const at = dateOf(row.created_at).getTime();
  const list = now ? now.participants.filter((p) => timeOf(p.joined_at) <= at) : [...(row.participants_before ?? [])];
  const add = (u: ParticipantColumns) => list.some((p) => p.id === u.id) || list.push(u);
  add({ id: r.sender_id, username: r.sender_username, display_name: r.sender_display_name, created_at: String(r.sender_created_at), joined_at: r.created_at });
  add({ id: row.sender_id, username: row.sender_username, display_name: row.sender_display_name, created_at: String(row.sender_created_at), joined_at: String(row.created_at) });
  list.sort((a, b) => Date.parse(a.joined_at) - Date.parse(b.joined_at) || (a.id < b.id ? -1 : 1));
  const root: MessageType = Object.assign(toMessageType(r as unknown as MessageRow), { reactionList: now ? now.reactions : r.reaction_list, participants: list.slice(0, 5).map(mentionedUser) });
  return { kind: 'THREAD_UPDATED', message: Object.assign(toMessagePayload(root), { version: r.version }), replySenderId: row.sender_id };
}

/**
 * The gate of every statement that writes a group message: the sender is a member, and slow mode
 * lets them send (see memberGate). Also on sends whose membership was checked before (a reply also
 * in the timeline, @here, @all), since slow mode is enforced nowhere else.
 */
function groupGate(conv: Conversation, slow: boolean): SendGate | undefined {
  return conv.kind === 'group' && conv.groupId ? { groupId: conv.groupId, slow } : undefined;
}

/** A gated send was written: its conversation as the full check would have named it. */
function checked(o: Outgoing, row: Pick<SentColumns, 'gate_group_name' | 'gate_owner_id'>): void {
  o.conv = groupConversation(o.conv.groupId!, row.gate_group_name ?? '', row.gate_owner_id ?? null);
  o.gated = false;
}

/**
 * conversationUpdated for a message of `conv` that `viewerId` sent (named as `sender` gives it):
 * the conversation's scope and names, the message and the head; who it reaches and whose states
 * it carries are the caller's. Each side of a direct conversation is named after the other.
 */
function rowUpdate(
  conv: Conversation,
  viewerId: string,
  sender: Pick<MessageRow, 'sender_display_name' | 'sender_username'>,
  message: MessagePayload,
  head: HeadState | null,
  rest: Pick<ConversationUpdatedPayload, 'members' | 'only' | 'lastMessageOnly'>,
): ConversationUpdatedPayload {
  const direct = conv.kind === 'direct';
  // Assigned, not spread: in V8 (Node 20) properties after a spread in a literal cost ~1 µs
  // each, and this one took 5.6 µs a send (Object.assign onto the scope: ~0.1 µs).
  return Object.assign(scopeOf(conv, viewerId), {
    kind: KINDS[conv.kind],
    title: direct ? null : conv.title,
    titles: direct ? { [viewerId]: conv.title, [conv.peerId!]: sender.sender_display_name ?? sender.sender_username } : null,
    message,
    head: headPayload(head),
  }, rest);
}
