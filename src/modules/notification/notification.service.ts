import { randomUUID } from 'node:crypto';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import { BadUserInputError, ForbiddenError, NotFoundError } from '../../shared/errors';
import { firstChars } from '../../shared/validation';
import type { Logger } from '../../shared/logger';
import { PRESENCE_BEAT_MS, type PresenceService } from '../presence/presence.service';
import { blockRepository } from '../safety/block.repository';
import { muteRepository } from '../safety/mute.repository';
import { groupKey, projectKey } from '../conversation/conversation.keys';
import { conversationRepository } from '../conversation/conversation.repository';
import { NotificationKind } from './notification.entity';
import { MESSAGES_CURSOR, NO_ID, notificationRepository as repo, type ClaimedEvent, type NewEvent, type Reach } from './notification.repository';
import { NotificationLevel } from './notification.types';
import { DELIVERY_TIMEOUT_MS, postEvent, webhookTarget, type WebhookEvent, type WebhookTarget } from './notification.webhook';

/** A preview's length, in characters (the column's); the SQL previews read one more, to tell where a grapheme ends (see firstChars). */
const PREVIEW_CHARS = 140;
/** Messages read per tail round; a full round is followed by the next at once. */
const TAIL_BATCH = 500;
/**
 * Beyond PRESENCE_GRACE, how old a message must be before the tail reads it. A message's
 * created_at is stamped inside its one send statement, which then commits within milliseconds: the
 * cursor passes a message only once it is PRESENCE_GRACE + 1 s old (6 s by default). One whose
 * statement stalled longer than that between stamp and commit would be passed over (no webhook;
 * the app still shows it): re-reading behind the cursor could not tell it from a message already
 * counted into a coalesced event without a row per message.
 */
const SETTLE_SECONDS = 1;
/** At most this long between two rounds of the tail (jobs/webhook.job.ts runs one every 0.5 s). */
const TAIL_ROUND_SECONDS = 1;
/**
 * Members above which a group's plain messages notify no one, only its mentions, as large channels
 * default to in Slack and Discord: each would otherwise be an event for every member away.
 */
export const LARGE_GROUP = 1000;
/** Events one instance delivers at once (each holds one HTTP request, not a database connection). */
const DELIVERY_BATCH = 16;
/** How long a claimed event is this instance's; past it (the instance died mid-delivery) another takes it again. */
const LEASE_SECONDS = Math.ceil(DELIVERY_TIMEOUT_MS / 1000) * 6;
/** Retries: 1 s, 2 s, 4 s, ... up to 15 minutes apart, each with half of it random (jitter), until WEBHOOK_MAX_AGE. */
const BACKOFF_BASE_SECONDS = 1;
const BACKOFF_CAP_SECONDS = 15 * 60;

/** A project action as the project service writes it, in its own transaction. */
export interface ActionCause {
  id: string;
  recipientId: string;
  projectId: string;
  actorId: string | null;
  message: string;
}

/** What one delivery round did, for the job's metrics. */
export interface DeliveryRound {
  claimed: number;
  delivered: { latencySeconds: number }[];
  retried: number;
  dropped: number;
}

/** One (cause, recipient) the tail decided to notify. */
interface Candidate {
  kind: NotificationKind;
  recipientId: string;
  conversationKey: string;
  senderId: string;
  sourceId: string;
  preview: string | null;
  at: Date;
}

/**
 * Whether a level lets an event through. MENTIONS keeps mentions and whatever is addressed to the
 * user alone (a direct or private message, a friend request, an invitation, a project action).
 */
export function wants(level: string, kind: NotificationKind, personal: boolean): boolean {
  if (level === NotificationLevel.NONE) return false;
  if (level === NotificationLevel.MENTIONS) return personal || kind === NotificationKind.MENTION;
  return true;
}

export interface NotificationServiceDeps {
  orm: MikroORM;
  /** Who holds a live socket or SSE stream on any instance. */
  presence: PresenceService;
  env: Pick<Env, 'WEBHOOK_URL' | 'WEBHOOK_SECRET' | 'WEBHOOK_COALESCE' | 'WEBHOOK_MAX_AGE' | 'PRESENCE_GRACE'>;
  logger: Logger;
}

/**
 * Offline notifications through a signed webhook: the levels users choose, the outbox writer and
 * its delivery. Sends pay nothing for it: the message row is already durable, and a tail
 * (`tailMessages`, run by jobs/webhook.job.ts) derives events from new messages a little later,
 * once PRESENCE_GRACE tells who is really away. Friend requests and project actions are rare: their
 * events are written in the transaction that makes them.
 */
export class NotificationService {
  private readonly em: EntityManager;

  private readonly presence: PresenceService;
  private readonly env: NotificationServiceDeps['env'];
  private readonly logger: Logger;
  /** See takeWritten. */
  private written = 0;

  /** Aborted as the instance stops: deliveries still waiting on the receiver give their events back (stopDeliveries). */
  private readonly stopping = new AbortController();
  /** When a failed round was last logged. */
  private lastFailureLog = 0;
  /** WEBHOOK_URL as requests go to it (its credentials as a header). */
  private readonly target: WebhookTarget | undefined;

  constructor(deps: NotificationServiceDeps) {
    this.em = deps.orm.em.fork() as EntityManager;
    this.presence = deps.presence;
    this.env = deps.env;
    this.logger = deps.logger;
    this.target = deps.env.WEBHOOK_URL ? webhookTarget(deps.env.WEBHOOK_URL) : undefined;
  }

  /** Webhooks are configured: events are made and delivered. */
  get enabled(): boolean {
    return !!this.env.WEBHOOK_URL;
  }

  /** The viewer's own level; another user's is theirs alone (FORBIDDEN). */
  async level(em: EntityManager, viewerId: string, userId: string): Promise<NotificationLevel> {
    if (viewerId !== userId) throw new ForbiddenError("Only the user themselves may read their notification level.");
    const level = await repo.level(em, userId);
    if (!level) throw new NotFoundError('User');
    return level as NotificationLevel;
  }

  async setLevel(em: EntityManager, viewerId: string, level: string): Promise<void> {
    if (!Object.values(NotificationLevel).includes(level as NotificationLevel)) throw new BadUserInputError('level must be ALL, MENTIONS or NONE.', 'level');
    if (!(await repo.setLevel(em, viewerId, level))) throw new NotFoundError('User');
  }

  /**
   * Starts the message tail from the database's now, unless it already runs and no instance ran
   * without webhooks since; without webhooks, marks that this one does.
   */
  async start(): Promise<void> {
    if (!this.enabled) return repo.markOff(this.em);
    const movedFrom = await repo.ensureCursor(this.em, MESSAGES_CURSOR);
    if (movedFrom) this.logger.info({ from: movedFrom.toISOString() }, 'webhooks were off: messages sent since the tail last ran are not announced');
  }

  /**
   * One round of the message tail, in one transaction: take the cursor row (FOR UPDATE SKIP LOCKED:
   * one instance per round; null when another has it), read the messages after it that are at
   * least PRESENCE_GRACE (+1 s) old (a minute of them at most), resolve who they reach, keep the
   * recipients who want them and hold no socket or SSE stream on any instance, write their events
   * (coalesced), and move the cursor. Killed mid-way, nothing was written and the cursor did not move: the next round, here
   * or elsewhere, does it again.
   * @throws when PostgreSQL or the presence store fails; the round is then rolled back whole.
   */
  async tailMessages(): Promise<{ messages: number; queued: number; more: boolean } | null> {
    // Two beats at least: an instance still beating has been heard from since any message this old (see below).
    const lag = Math.max(this.env.PRESENCE_GRACE + SETTLE_SECONDS, (2 * PRESENCE_BEAT_MS) / 1000);
    return this.em.fork().transactional(async (tem) => {
      const em = tem as EntityManager;
      const cursor = await repo.lockCursor(em, MESSAGES_CURSOR);
      if (!cursor) return null;
      const { messages, until, caughtUp, now } = await repo.newMessages(em, cursor, { lagSeconds: lag, maxAgeSeconds: this.env.WEBHOOK_MAX_AGE, limit: TAIL_BATCH });
      const full = messages.length === TAIL_BATCH;
      // A full round stops at its last message; otherwise everything before `until` has been read.
      const last = messages[messages.length - 1];
      const next = full ? { at: last.created_at, id: last.id } : { at: until, id: NO_ID };
      let queued = 0;
      if (messages.length) {
        // Mentions as the send stored them (members only, @here and @all expanded), never parsed again here.
        const mentions = await repo.mentions(em, messages.map((m) => m.id));
        const candidates = this.classify(await repo.reach(em, messages.map((m) => m.id), mentions, LARGE_GROUP), mentions);
        // A socket counts only on an instance heard from since the newest of these messages was sent
        // (by the database's clock): one killed before it lists its sockets for 30 s more, and the
        // messages sent meanwhile were announced to no one.
        const sinceNewestMs = Math.max(0, now.getTime() - last.created_at.getTime());
        const connected = candidates.length ? await this.presence.connected([...new Set(candidates.map((c) => c.recipientId))], () => sinceNewestMs) : new Set<string>();
        const away = await this.allowedBySafety(em, candidates.filter((c) => !connected.has(c.recipientId)));
        // Due once every message of its window has been read too: the window's end plus the tail's lag (and a round).
        const due = this.env.WEBHOOK_COALESCE > 0 ? this.env.WEBHOOK_COALESCE + lag + TAIL_ROUND_SECONDS : 0;
        queued = await repo.write(em, this.coalesce(away), this.env.WEBHOOK_COALESCE, due);
      }
      await this.skipReached(em, cursor.at, next.at);
      if (next.at > cursor.at || (next.at.getTime() === cursor.at.getTime() && next.id > cursor.id)) await repo.moveCursor(em, MESSAGES_CURSOR, next);
      return { messages: messages.length, queued, more: full || !caughtUp };
    });
  }

  /**
   * The events written outside the tail in the span this round read (their grace passed, as the
   * span's messages' did): skipped now for a recipient who is connected, as a message's is. Asked
   * only when due, one connected then who left before it was due was told of an action they had
   * seen live (an outside probe, 2 of 2): the store lists a closed socket for PRESENCE_GRACE only.
   */
  private async skipReached(em: EntityManager, from: Date, to: Date): Promise<void> {
    const written = await repo.writtenBetween(em, from, to);
    if (!written.length) return;
    const age = new Map<string, number>();
    for (const w of written) age.set(w.recipient_id, Math.min(age.get(w.recipient_id) ?? Infinity, w.age_ms));
    const connected = await this.presence.connected([...age.keys()], (u) => age.get(u)!);
    await repo.skipUntried(em, written.filter((w) => connected.has(w.recipient_id)).map((w) => w.id));
  }

  /**
   * Each reached member's event kind, or none when their level says no: MENTION for a member the
   * message mentions (a direct one too: a muted conversation keeps its mentions),
   * THREAD_REPLY for a reply's follower, else MESSAGE.
   */
  private classify(reach: Reach[], mentions: Map<string, string[]>): Candidate[] {
    const out: Candidate[] = [];
    for (const r of reach) {
      const kind =
        mentions.get(r.message_id)?.includes(r.recipient_id)
          ? NotificationKind.MENTION
          : r.follower
            ? NotificationKind.THREAD_REPLY
            : NotificationKind.MESSAGE;
      if (!wants(r.notification_level, kind, r.personal)) continue;
      out.push({
        kind,
        recipientId: r.recipient_id,
        conversationKey: r.conversation_key,
        senderId: r.sender_id,
        sourceId: r.message_id,
        preview: r.content ? firstChars(r.content, PREVIEW_CHARS) : r.file_name ? firstChars(r.file_name, PREVIEW_CHARS) : null,
        at: r.created_at,
      });
    }
    return out;
  }

  /**
   * The Safety hook (modules/safety: block and mute), the one place that decides it: a muted
   * conversation keeps only MENTION events, a sender the recipient blocks none. Two queries per
   * round that has candidates, whatever their number. Muted when the message came, not only now:
   * a message is read here once its recipient's grace has passed, and one sent in a mute's last
   * seconds was told once it ended (an outside probe, 3 of 3).
   */
  private async allowedBySafety(em: EntityManager, candidates: Candidate[]): Promise<Candidate[]> {
    if (!candidates.length) return candidates;
    // One after the other: the round's transaction is one connection, which pg will not share
    // (its queued query warned, and ran on after a rollback: an outside crash probe).
    const blocking = await blockRepository.blockingPairs(em, candidates);
    const muted = await muteRepository.mutedPairs(em, candidates);
    if (!blocking.size && !muted.size) return candidates;
    return candidates.filter(
      (c) => !blocking.has(`${c.recipientId}|${c.senderId}`) && (c.kind === NotificationKind.MENTION || !((muted.get(`${c.recipientId}|${c.conversationKey}`)?.getTime() ?? 0) > c.at.getTime())),
    );
  }

  /** Candidates in time order to events: the same recipient, conversation and kind within WEBHOOK_COALESCE of the first go as one. */
  private coalesce(candidates: Candidate[]): NewEvent[] {
    const windowMs = this.env.WEBHOOK_COALESCE * 1000;
    const open = new Map<string, NewEvent>();
    const out: NewEvent[] = [];
    for (const c of candidates) {
      const key = `${c.recipientId}|${c.conversationKey}|${c.kind}`;
      const e = open.get(key);
      if (e?.createdAt && c.at.getTime() - e.createdAt.getTime() < windowMs) {
        e.count++;
        e.preview = c.preview;
        e.previewId = c.sourceId;
        e.covered!.push(c.sourceId);
        e.senderId = c.senderId;
        e.lastAt = c.at;
        continue;
      }
      const fresh: NewEvent = {
        id: randomUUID(),
        kind: c.kind,
        recipientId: c.recipientId,
        conversationKey: c.conversationKey,
        senderId: c.senderId,
        sourceId: c.sourceId,
        preview: c.preview,
        previewId: c.sourceId,
        covered: [c.sourceId],
        count: 1,
        createdAt: c.at,
        lastAt: c.at,
      };
      open.set(key, fresh);
      out.push(fresh);
    }
    return out;
  }

  /** A new friend request: its event, in the request's transaction (sent once PRESENCE_GRACE passed, if its addressee is away). */
  async friendRequested(em: EntityManager, request: { id: string; fromId: string; toId: string }): Promise<void> {
    if (!this.enabled) return;
    await this.writeNow(em, [{ kind: NotificationKind.FRIEND_REQUEST, recipientId: request.toId, conversationKey: null, senderId: request.fromId, sourceId: request.id, preview: null }]);
  }

  /** New project actions (one per reader): their events, in the change's transaction; the actor's own left out. */
  async projectActions(em: EntityManager, actions: ActionCause[]): Promise<void> {
    if (!this.enabled) return;
    const events = actions
      .filter((a) => a.recipientId !== a.actorId)
      .map((a) => ({ kind: NotificationKind.PROJECT_ACTION, recipientId: a.recipientId, conversationKey: projectKey(a.projectId), senderId: a.actorId, sourceId: a.id, preview: firstChars(a.message, PREVIEW_CHARS) }));
    await this.writeNow(em, events);
  }

  /** A group invitation: its event, in the invitation's transaction. */
  async groupInvited(em: EntityManager, invite: { groupId: string; inviterId: string; userId: string }): Promise<void> {
    if (!this.enabled) return;
    await this.writeNow(em, [{ kind: NotificationKind.GROUP_INVITE, recipientId: invite.userId, conversationKey: groupKey(invite.groupId), senderId: invite.inviterId, sourceId: randomUUID(), preview: null }]);
  }

  /**
   * Events of one cause each; whether the recipient is away is decided once their grace passed, by the
   * tail (skipReached), and again when due (each try). Due once
   * the tail has written the events of the messages sent before them (it reads a message
   * PRESENCE_GRACE and a second after it, each round, and a round more for margin): delivery takes
   * a recipient's events oldest first, so a message sent just before goes first.
   */
  private async writeNow(em: EntityManager, events: Omit<NewEvent, 'id' | 'count' | 'createdAt' | 'lastAt'>[]): Promise<void> {
    if (!events.length) return;
    const due = this.env.PRESENCE_GRACE + SETTLE_SECONDS + 2 * TAIL_ROUND_SECONDS;
    this.written += await repo.write(em, events.map((e) => ({ ...e, id: randomUUID(), count: 1, createdAt: null, lastAt: null })), 0, due);
  }

  /** Events written outside the message tail (friend requests, project actions, invitations) since last asked: the job counts them with the tail's. */
  takeWritten(): number {
    const n = this.written;
    this.written = 0;
    return n;
  }

  /**
   * One delivery round: drop what outlived WEBHOOK_MAX_AGE, lease due events (at most one per
   * recipient, the oldest: in order per recipient), and POST each. An event whose recipient is
   * connected when it is due, a retry too, is SKIPPED (they are back: the app shows it). A 2xx within 5 s
   * is DELIVERED; anything else is retried with back-off and jitter, or DROPPED once the next try
   * would fall past WEBHOOK_MAX_AGE.
   */
  async deliver(): Promise<DeliveryRound> {
    const em = this.em.fork() as EntityManager;
    const maxAge = this.env.WEBHOOK_MAX_AGE;
    const round: DeliveryRound = { claimed: 0, delivered: [], retried: 0, dropped: await repo.dropExpired(em, maxAge) };
    const claimed = await repo.claim(em, DELIVERY_BATCH, LEASE_SECONDS);
    round.claimed = claimed.length;
    if (!claimed.length) return round;
    const recipients = [...new Set(claimed.map((e) => e.recipient_id))];
    // Asked at every try, a retry's too: who came back while the receiver was failing sees it in the app.
    // Without the presence store an event goes out: a needless push beats a lost one.
    // Back means on an instance heard from since what the event tells of: the tail wrote it because
    // their instance had gone silent since, perhaps only a moment before this round.
    const age = new Map(claimed.map((e) => [e.recipient_id, e.age_ms]));
    const connected = await this.presence.connected(recipients, (u) => age.get(u)!).catch(() => new Set<string>());
    const unread = await conversationRepository.unreadTotals(em, recipients);
    // Why a delivery failed, one line a round: the counters alone left an operator guessing.
    let failure: string | undefined;
    let failed = 0;
    await Promise.all(
      claimed.map(async (e) => {
        if (connected.has(e.recipient_id)) return repo.finish(em, e.id, e.attempts, 'SKIPPED');
        // Deleted since it was written: the account (its pending events are skipped here, not
        // deleted with it: this one check also covers an event the tail wrote meanwhile), or the one message it tells of.
        if (e.recipient_gone || (e.now_deleted && e.count <= 1)) return repo.finish(em, e.id, e.attempts, 'SKIPPED');
        // A mention an edit took back since: told as what the message now is to them, as the tail
        // would have told it (to a follower of its thread, or to the conversation), if their level wants that.
        const kind = e.now_unmentioned ? (e.now_thread_only ? NotificationKind.THREAD_REPLY : NotificationKind.MESSAGE) : e.kind;
        if (kind !== e.kind && !wants(e.now_level, kind, !!e.conversation_key?.startsWith('d:'))) return repo.finish(em, e.id, e.attempts, 'SKIPPED');
        // What the recipient chose since it was written: no notifications at all, or a mute of its conversation (a mention still goes).
        if (e.now_level === 'NONE' || (e.now_muted && (kind === NotificationKind.MESSAGE || kind === NotificationKind.THREAD_REPLY))) return repo.finish(em, e.id, e.attempts, 'SKIPPED');
        // Or a block of its sender since (a friend request, an invitation, a project action written before it),
        // or it no longer concerns them: who left, was removed or banned is told nothing more; an
        // invitation or a request answered, withdrawn or gone with its group or sender tells nothing.
        if (e.now_blocked || e.now_outdated) return repo.finish(em, e.id, e.attempts, 'SKIPPED');
        // Or read since, on another device or over HTTP alone (a message of their own moves the marker
        // too; a thread's reply, its thread's marker): nothing is new to them.
        if (e.now_read) return repo.finish(em, e.id, e.attempts, 'SKIPPED');
        const body = JSON.stringify(toWebhookEvent({ ...e, kind }, unread.get(e.recipient_id) ?? 0));
        const posted = await postEvent(this.target!, this.env.WEBHOOK_SECRET!, body, this.stopping.signal);
        // Cut short by this instance's stop: due again at once, for another instance (the receiver
        // may have it already: delivery is at least once), rather than when its lease runs out.
        if (posted !== true && this.stopping.signal.aborted) return repo.retryLater(em, e.id, e.attempts, 0);
        if (posted === true) {
          await repo.finish(em, e.id, e.attempts, 'DELIVERED');
          round.delivered.push({ latencySeconds: Math.max(0, (Date.now() - e.created_at.getTime()) / 1000) });
          return;
        }
        failure ??= posted;
        failed++;
        const delay = retryDelay((Date.now() - e.created_at.getTime()) / 1000, e.attempts, maxAge);
        if (delay === null) {
          await repo.finish(em, e.id, e.attempts, 'DROPPED');
          round.dropped++;
        } else {
          await repo.retryLater(em, e.id, e.attempts, delay);
          round.retried++;
        }
      }),
    );
    // At most one line in 10 s: a receiver down with a backlog fails every round.
    if (failure !== undefined && Date.now() - this.lastFailureLog >= 10_000) {
      this.lastFailureLog = Date.now();
      this.logger.warn({ failed, reason: failure }, 'webhook: deliveries failed; retried later');
    }
    return round;
  }

  /**
   * The instance stops: deliveries still waiting on the receiver are cut short and their events
   * given back, due at once for another instance (jobs/webhook.job.ts, after a grace).
   */
  stopDeliveries(): void {
    this.stopping.abort();
  }

  /** Forgets finished events once WEBHOOK_MAX_AGE has passed since they finished. */
  purge(): Promise<void> {
    return repo.purge(this.em.fork() as EntityManager, this.env.WEBHOOK_MAX_AGE);
  }
}

/** How long before WEBHOOK_MAX_AGE an event's last try comes: a round (every 250 ms) drops an event due past it before trying it. */
const LAST_TRY_BEFORE_SECONDS = 1;

/**
 * Seconds before an event `ageSeconds` old, failed `attempts` times, is tried again; null: dropped.
 * A backoff that would come past WEBHOOK_MAX_AGE is cut short to a last try just before it: the
 * event was dropped at once instead, up to a backoff (15 minutes) early (an outside probe).
 */
export function retryDelay(ageSeconds: number, attempts: number, maxAgeSeconds: number): number | null {
  const left = maxAgeSeconds - LAST_TRY_BEFORE_SECONDS - ageSeconds;
  return left > 0 ? Math.min(backoff(attempts), left) : null;
}

/** Seconds before try `attempts + 1`: exponential, capped, half of it random so that retries after an outage spread out. */
export function backoff(attempts: number): number {
  const full = Math.min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** Math.min(attempts - 1, 30));
  return full / 2 + (Math.random() * full) / 2;
}

function toWebhookEvent(e: ClaimedEvent, unreadTotal: number): WebhookEvent {
  return {
    id: e.id,
    kind: e.kind,
    recipientId: e.recipient_id,
    conversationId: e.conversation_key,
    sender: e.sender_id && e.sender_username ? { id: e.sender_id, username: e.sender_username, displayName: e.sender_display_name } : null,
    // A message's text as it stands now: edited, or none once deleted.
    preview: e.now_deleted === null ? e.preview : e.now_deleted || e.now_preview === null ? null : firstChars(e.now_preview, PREVIEW_CHARS),
    count: e.count,
    unreadTotal,
    createdAt: e.created_at.toISOString(),
  };
}
