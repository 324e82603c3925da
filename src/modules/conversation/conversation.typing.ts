import type { EntityManager } from '@mikro-orm/postgresql';
import { warnAtMostEvery, type Logger } from '../../shared/logger';
import { boundedLru } from '../../shared/lru';
import type { LRUCache } from 'lru-cache';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type TypingPayload, type UserPayload } from '../../shared/pubsub/topics';
import { Redis } from 'ioredis';
import type { RedisClient } from '../../shared/redis';
import { toUserPayload } from '../user/user.mapper';
import { userRepository } from '../user/user.repository';
import { scopeOf, type Conversation, type ConversationAccess, type ConversationArgs } from './conversation.access';
import { directKey, groupKey, projectKey, scopeKey } from './conversation.keys';

/**
 * One change to the typing state shared by every instance. A typist's state is who is keeping it
 * alive: each instance that took refreshes holds a part with a horizon (the latest its own part
 * can last), and typing ends when the last part goes.
 */
export type TypingOp =
  /**
   * Refreshes reached this instance: its part may last `spanMs` from now. Answers 1 when others
   * should be told now (`throttleMs` passed since they were last told `typing: true`, a stop in
   * between or not), else minus the milliseconds until they may be (0 or less). Marks the
   * conversation as typed in for `markMs`, first (see 'quiet'). `held`: only while this instance's
   * part is still in the store (a held-back start told at its window's end): answers ENDED when a
   * stop or a send through another instance ended it meanwhile.
   */
  | { kind: 'start'; slot: string; spanMs: number; throttleMs: number; conversation: string; markMs: number; held?: boolean }
  /** Ends it everywhere. Answers 1 when others were told it began and not yet that it ended (then they are, once), else 0. */
  | { kind: 'stop'; slot: string }
  /**
   * This instance's part lapsed (`instance`: another's, or GONE for none, to sweep the parts whose
   * horizon passed). Answers 1 when that ended it for others, 0 when another instance still holds a
   * part, -1 when it had ended already (or others were not told it began again).
   */
  | { kind: 'lapse'; slot: string; instance?: string }
  /** Answers 1 when no start marked the conversation within its `markMs`, else 0. */
  | { kind: 'quiet'; conversation: string };

/**
 * Who is typing where: in Redis when configured (so every instance sees the same state), in memory
 * otherwise. Nothing of it is ever written to PostgreSQL. Changes come in batches, answered in order.
 */
export interface TypingStore {
  apply(ops: readonly TypingOp[]): Promise<number[]>;
}

/**
 * The shared state's rules for one instance, the only one holding parts: when each typist was last
 * told of as typing, and whether others believe they still are (a stop within the throttle window
 * keeps the window: stopping and starting again does not tell `typing: true` more often).
 */
export class MemoryTypingStore implements TypingStore {
  private readonly told = new Map<string, { at: number; on: boolean; throttleMs: number }>();
  /** Conversations marked as typed in, until when. */
  private readonly marks = new Map<string, number>();

  async apply(ops: readonly TypingOp[]): Promise<number[]> {
    const now = Date.now();
    if (this.told.size >= TOLD_SWEEP_AT) for (const [slot, t] of this.told) if (!t.on && now - t.at >= t.throttleMs) this.told.delete(slot);
    if (this.marks.size >= TOLD_SWEEP_AT) for (const [c, until] of this.marks) if (until <= now) this.marks.delete(c);
    return ops.map((op) => {
      if (op.kind === 'quiet') return (this.marks.get(op.conversation) ?? 0) <= now ? 1 : 0;
      const t = this.told.get(op.slot);
      if (op.kind === 'start') {
        this.marks.set(op.conversation, Math.max(this.marks.get(op.conversation) ?? 0, now + op.markMs));
        if (t && now - t.at < op.throttleMs) return Math.min(0, now - t.at - op.throttleMs);
        this.told.set(op.slot, { at: now, on: true, throttleMs: op.throttleMs });
        return 1;
      }
      // A lapse ends the window too: it comes a typing timeout after the last refresh, no flood.
      if (op.kind === 'lapse') return this.told.delete(op.slot) && t!.on ? 1 : -1;
      if (!t?.on) return 0;
      if (now - t.at < t.throttleMs) t.on = false;
      else this.told.delete(op.slot);
      return 1;
    });
  }
}

/** How many slots the memory store holds before it is swept of the ended ones whose window passed. */
const TOLD_SWEEP_AT = 10_000;
/** At most one warning per this long of a kind of typing failure (the others at debug). */
const FAILURE_LOG_MS = 10_000;

// KEYS[1] the parts (a hash: instance -> horizon, ms; and ON while others were told it began and
// not yet that it ended), KEYS[2] the throttle window since others were last told it began, which
// a stop leaves in place (a start then waits for it: stop and start in turn tell no more often than
// refreshes) and a lapse, a typing timeout after the last refresh, ends. Both expire on their own,
// after any horizon, so an instance that dies holding a part leaves nothing behind for long. Times
// are Redis's own clock, so the instances' clocks need not agree.
const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
const ON = `'~on'`;
// ARGV: instance, span ms, throttle ms, expiry margin ms, mark ms. KEYS[3], when given, is the
// conversation's mark (on a cluster, in another slot: set by its own command first).
const START = `${NOW}
if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[5]) end
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[4]))
if redis.call('SET', KEYS[2], '1', 'PX', ARGV[3], 'NX') then redis.call('HSET', KEYS[1], ${ON}, '1') return 1 end
return -math.max(0, redis.call('PTTL', KEYS[2]))`;
const STOP = `local on = redis.call('HEXISTS', KEYS[1], ${ON})
redis.call('DEL', KEYS[1])
return on`;
// ARGV: instance. A part whose horizon passed belongs to an instance that went away without
// lapsing it (a live one lapses its part by its horizon): it holds nothing up.
const LAPSE = `${NOW}
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
local parts = redis.call('HGETALL', KEYS[1])
local left = 0
for i = 1, #parts, 2 do
  if parts[i] ~= ${ON} then
    if tonumber(parts[i + 1]) < now then redis.call('HDEL', KEYS[1], parts[i]) else left = left + 1 end
  end
end
if left > 0 then return 0 end
local on = redis.call('HEXISTS', KEYS[1], ${ON})
redis.call('DEL', KEYS[1], KEYS[2])
if on == 1 then return 1 end
return -1`;
/** A held-back start's answer when its part had left the store (see TypingOp 'start'). */
const ENDED = 2;

/** A held-back start's second write: nothing, and ENDED, once its part left the store (a stop or a send elsewhere). */
const RESTART = `if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return ${ENDED} end
${START}`;
const SCRIPTS = { typingStart: START, typingRestart: RESTART, typingStop: STOP, typingLapse: LAPSE };
type Script = (keys: number, ...args: (string | number)[]) => Promise<number>;
/** The commands a change needs, on a connection or a pipeline. */
type Commands = Record<keyof typeof SCRIPTS, Script> & {
  set(key: string, value: string, px: 'PX', ms: number): Promise<unknown>;
  exists(key: string): Promise<number>;
};

export class RedisTypingStore implements TypingStore {
  constructor(
    private readonly redis: RedisClient,
    /** This instance, as the holder of its parts. */
    private readonly instanceId: string,
  ) {
    // EVALSHA with a fallback to EVAL: the script text crosses the wire once per connection.
    for (const [name, lua] of Object.entries(SCRIPTS)) if (!(name in this.redis)) this.redis.defineCommand(name, { lua });
  }

  async apply(ops: readonly TypingOp[]): Promise<number[]> {
    if (this.redis instanceof Redis) {
      // One write and one read for the whole batch, however many typists it carries.
      const pipeline = this.redis.pipeline();
      for (const op of ops) void this.send(pipeline as unknown as Commands, op, true);
      const replies = (await pipeline.exec()) ?? [];
      return replies.map(([e, r], i) => {
        if (e) throw e;
        return answer(ops[i], r);
      });
    }
    // A cluster's pipeline must stay in one slot; each slot's command goes to its node (a start
    // after its mark, in the conversation's slot).
    const to = this.redis as unknown as Commands;
    return Promise.all(
      ops.map(async (op) => {
        if (op.kind === 'start') await to.set(markKey(op.conversation), '1', 'PX', op.markMs);
        return answer(op, await this.send(to, op, false));
      }),
    );
  }

  /** `marking`: a start sets its conversation's mark itself (one node holds every key). */
  private send(to: Commands, op: TypingOp, marking: boolean): Promise<unknown> {
    if (op.kind === 'quiet') return to.exists(markKey(op.conversation));
    // One hash slot per typist and conversation, so the scripts run on a cluster too.
    const [parts, told] = [`typing:{${op.slot}}`, `typing:{${op.slot}}:told`];
    if (op.kind === 'start') {
      const start = op.held ? 'typingRestart' : 'typingStart';
      // The mark is set before the reply that has `typing: true` published (see 'quiet').
      if (marking) return to[start](3, parts, told, markKey(op.conversation), this.instanceId, op.spanMs, op.throttleMs, EXPIRY_MARGIN_MS, op.markMs);
      return to[start](2, parts, told, this.instanceId, op.spanMs, op.throttleMs, EXPIRY_MARGIN_MS);
    }
    // A script, not a plain DEL of both keys (2.6 µs of Redis's time a send in bench:rooms against
    // 5.5, as a send on an instance that can't yet tell whether its sender types ends it: see
    // TypingService.sent): a stop that dropped the throttle let stop and start in turn tell
    // `typing: true` and `false` to others as fast as the client sent them (an outside probe).
    if (op.kind === 'stop') return to.typingStop(2, parts, told);
    return to.typingLapse(2, parts, told, op.instance ?? this.instanceId);
  }
}

/** A conversation's mark: some typist in it was started lately (see TypingOp 'quiet'). */
const markKey = (conversation: string): string => `typing:c:{${conversation}}`;

/** What a change answers, from its command's reply (a quiet check's is whether the mark exists). */
const answer = (op: TypingOp, reply: unknown): number => (op.kind === 'quiet' ? (Number(reply) ? 0 : 1) : Number(reply));

/** How far behind this instance's clock the store's may be when a held-back start's window ends. */
const CLOCK_SLACK_MS = 50;

/** How long the shared state outlives the latest horizon it holds. */
const EXPIRY_MARGIN_MS = 10_000;
/** Typing slots whose stop past the limit is remembered for a throttle window (see stopPastLimit). */
const LATE_STOPS_MAX = 10_000;

/** No instance's part: a lapse in its name only sweeps the parts whose horizon passed (see TypingService.watchEnd). */
const GONE = '~gone';

/** How long after a part's horizon a watched typist is asked about (the store's clock and this one's may differ a little). */
const END_MARGIN_MS = 500;

export interface TypingOptions {
  store: TypingStore;
  pubsub: PubSub;
  /** Which conversations the viewer may type in. */
  access: ConversationAccess;
  logger: Logger;
  /** Typing ends this long after the last refresh. @default 6000 */
  lapseMs?: number;
  /** At most one `typing: true` per user and conversation this often. @default 2000 */
  throttleMs?: number;
  /** Store changes made within this long go to the store together (one round trip). @default 20 */
  batchMs?: number;
}

/** A typist in a conversation, as this instance knows them. */
interface Part {
  conv: Conversation;
  user: UserPayload;
  /** The last refresh seen here, plus the lapse. */
  deadline: number;
  /** When this instance last wrote its part to the store. */
  wroteAt: number;
  timer: NodeJS.Timeout | undefined;
  /** A start the throttle held back, written again when its window ends (see retell). */
  retell?: NodeJS.Timeout;
}

interface Pending {
  op: TypingOp;
  resolve(result: number): void;
  reject(e: unknown): void;
  /** Stops of the same slot queued right after this stop: each gets what a second DEL gets, 0. */
  repeats?: { resolve(result: number): void; reject(e: unknown): void }[];
}

/** One typist in one conversation (a project's private thread is one of its own): what the store keeps a state for. */
const slot = (key: string, privateWith: string | null | undefined, userId: string): string => (privateWith ? `${key}/${privateWith}:${userId}` : `${key}:${userId}`);
const slotOf = (conv: Conversation, userId: string): string => slot(conv.key, conv.privateWith, userId);
/** The slot a heard typing event is of (a private thread's: `only` is the typist, then the other). */
const slotOfEvent = (p: TypingPayload): string => slot(p.conversationKey, p.only?.[1], p.userId);

/** What a typist's start or stop publishes: in a private thread, for its pair only. */
const typingPayload = (conv: Conversation, user: UserPayload, typing: boolean): TypingPayload =>
  Object.assign(scopeOf(conv, user.id), { userId: user.id, user, typing, only: conv.privateWith ? [user.id, conv.privateWith] : null });

const PROFILE_TTL_MS = 60_000;
/** How many slots `typists` holds before it is swept of the lapsed ones. */
const TYPISTS_SWEEP_AT = 10_000;
const PROFILES_MAX = 50_000;

/**
 * setTyping and the typing events. A stop, a sent message or a lapse tells everyone once; a
 * refresh tells them at most once per throttle window.
 *
 * A refresh costs what it changes. Each instance keeps the typists it took refreshes for (its
 * parts): the first refresh, and the first after each throttle window, write the part to the
 * store (which decides, across instances, whether to tell); the ones in between only move the
 * deadline here, touching neither the store nor anyone's socket (a client refreshing every
 * keystroke costs one store write per 2 s). A part's horizon covers the refreshes an instance may
 * take without writing (throttle + lapse after its write), so when an instance's own deadline
 * passes it lapses its part, and the typing ends when the last part does: exactly 6 s after the
 * last refresh through any instance. Store changes go in batches of `batchMs`, one round trip each.
 */
export class TypingService {
  private readonly parts = new Map<string, Part>();
  /** Typists' public profiles, as events carry them: a refresh every 2 s costs no user query. */
  private readonly profiles = new Map<string, { user: UserPayload; at: number }>();
  private readonly store: TypingStore;
  private readonly pubsub: PubSub;
  private readonly access: ConversationAccess;
  private readonly logger: Logger;
  private readonly stopFailed: ReturnType<typeof warnAtMostEvery>;
  private readonly quietCheckFailed: ReturnType<typeof warnAtMostEvery>;
  private readonly lapseMs: number;
  private readonly throttleMs: number;
  private readonly batchMs: number;
  private pending: Pending[] = [];
  /** The last op of each slot in `pending`. */
  private lastOfSlot = new Map<string, Pending>();
  private flushTimer: NodeJS.Timeout | undefined;
  /** Stops no request waits for (a sent message's, a lapse's), which stopping lets finish. */
  private readonly background = new Set<Promise<unknown>>();
  /**
   * Slots that may be typing as far as this instance saw (`typing: true` told from any instance,
   * its own included), until when: a sent message stops only these, where the instance hears the
   * conversation's typing events (see sent).
   */
  private readonly typists = new Map<string, number>();
  /** Longer than any typing state outlives the last `typing: true` told of it. */
  private readonly typistTtlMs: number;
  /** By conversation: what the store answered when asked whether anyone started typing there lately, and the channel's `heardFrom` then. */
  private readonly asked = new Map<string, { from: number; at: number; quiet: boolean }>();
  private readonly asking = new Set<string>();
  /** Typists told `typing: true` and not yet heard to end, watched in case their instance died (see watchEnd). */
  private readonly ends = new Map<string, { timer: NodeJS.Timeout; event: TypingPayload }>();
  /** Stops let past the typing limit, by slot: one a throttle window (see stopPastLimit). */
  private readonly lateStops: LRUCache<string, true>;
  private readonly unlisten: () => void;

  constructor(o: TypingOptions) {
    this.store = o.store;
    this.pubsub = o.pubsub;
    this.access = o.access;
    this.logger = o.logger;
    // Each send and check fails alike while Redis is away: a line each was dozens an outage.
    this.stopFailed = warnAtMostEvery(o.logger, FAILURE_LOG_MS, 'typing stop failed');
    this.quietCheckFailed = warnAtMostEvery(o.logger, FAILURE_LOG_MS, 'typing quiet check failed');
    this.lapseMs = o.lapseMs ?? 6000;
    // TYPING_THROTTLE=0 is no throttle: a millisecond's (Redis refuses an expiry of 0, and every `typing: true` failed).
    this.throttleMs = Math.max(1, Math.round(o.throttleMs ?? 2000));
    this.batchMs = o.batchMs ?? 20;
    // A state is told at least once per throttle window while refreshes keep it, and lasts a
    // lapse (plus a throttle window of unwritten refreshes) after the last; the margin covers
    // the store's expiry and a slow delivery.
    this.typistTtlMs = this.lapseMs + 2 * this.throttleMs + EXPIRY_MARGIN_MS;
    this.lateStops = boundedLru<string, true>({ max: LATE_STOPS_MAX, ttlMs: this.throttleMs });
    const offTyping = this.pubsub.on(Topic.Typing, (p) => {
      const slot = slotOfEvent(p);
      if (p.typing) this.sawTyping(slot);
      else this.endedElsewhere(slot);
      this.watchEnd(slot, p);
    });
    // Heard on every instance (topic-wide), unlike the friendship's end a block makes (told to the
    // blocker's alone): the blocker's own typing in their direct conversation ends for the blocked
    // user here too, as a stop would (they are not told of the block); it stayed up to its lapse
    // where the blocked user's socket and the blocker's typing were on other instances (an outside probe).
    const offBlocks = this.pubsub.on(Topic.SafetyChanged, (p) => {
      if (!p.blocked || p.blockedId === undefined) return;
      this.endShownTo(p.userId, p.blockedId);
      this.endDirect(p.blockedId, p.userId);
      this.endOwn(p.userId, directKey(p.userId, p.blockedId));
    });
    // A friendship ended (removeFriend, an account deleted, a block): their direct conversation
    // is closed, and what each one told was shown of the other's typing there ends now, as a
    // member's who leaves a group does, not at its lapse up to 6 s later (an outside probe).
    const offFriends = this.pubsub.on(Topic.FriendEvent, (p) => {
      if (p.kind !== 'REMOVED') return;
      const [a, b] = p.userIds;
      for (const viewer of p.audience) this.endDirect(viewer, viewer === a ? b : a);
    });
    // A renamed or deleted typist's events carry their profile as it now is (the cached one named
    // them as they were, up to a minute: an outside probe).
    const offProfiles = this.pubsub.on(Topic.ProfileChanged, ({ user }) => {
      if (this.profiles.has(user.id)) this.profiles.set(user.id, { user, at: Date.now() });
      for (const part of this.parts.values()) if (part.user.id === user.id) part.user = user;
      for (const watch of this.ends.values()) if (watch.event.userId === user.id) watch.event = Object.assign({}, watch.event, { user });
    });
    const offMembers = this.pubsub.on(Topic.MembershipChanged, (p) => {
      if (!this.parts.size) return;
      const gone = new Set<string>();
      for (const c of p.changes) if (!c.member) gone.add(c.userId);
      if (gone.size) this.endLeft(scopeKey(p.scope, p.id), gone);
    });
    this.unlisten = () => {
      offTyping();
      offBlocks();
      offFriends();
      offMembers();
      offProfiles();
    };
  }

  /**
   * A member gone from a group or project while typing there (left, removed, banned, or their
   * account deleted): their typing ends now, as a stop does, not at its lapse up to 6 s later. The
   * instances holding their parts end them; the store tells once. One pass over this instance's
   * typists, however many left (a deleted group's change names every member).
   */
  private endLeft(key: string, gone: ReadonlySet<string>): void {
    for (const [slot, part] of this.parts) {
      if (part.conv.key === key && gone.has(part.user.id)) this.behind(this.end(part.conv, part.user, slot).catch((e) => this.stopFailed(e)));
    }
  }

  /**
   * The direct conversation of `viewerId` and `typistId` closed: the typist's typing there ends for
   * the viewer's subscriptions here (see endShownTo), and the viewer's own, where it is held here,
   * as a stop ends it (the other told it, in words no different from a stop).
   */
  private endDirect(viewerId: string, typistId: string): void {
    // Nothing typed or shown here: nothing to end (an account's deletion tells each friend).
    if (!this.parts.size && !this.ends.size) return;
    const key = directKey(viewerId, typistId);
    this.endShownTo(viewerId, typistId, key);
    this.endOwn(viewerId, key);
  }

  /** A user's typing in a conversation closed to them ends where it is held here, as a stop ends it. */
  private endOwn(userId: string, key: string): void {
    for (const [slot, part] of this.parts) if (part.user.id === userId && part.conv.key === key) this.behind(this.end(part.conv, part.user, slot).catch((e) => this.stopFailed(e)));
  }

  /**
   * A block hides the blocked user's typing from the blocker: what the blocker's subscriptions here
   * were shown of it ends now, not at its lapse up to 6 s later (an outside probe: the indicator
   * stayed on). Each typing subscription lets one end through for a typist it showed (see its
   * filter), so the lapse's own end is not told again. What this instance knows is typing: the
   * starts it heard not yet ended (watchEnd), and its own typists. `key`: in that conversation only.
   */
  private endShownTo(viewerId: string, typistId: string, key?: string): void {
    const ends = new Map<string, TypingPayload>();
    for (const [slot, { event }] of this.ends) if (event.userId === typistId && (key === undefined || event.conversationKey === key)) ends.set(slot, Object.assign({}, event, { typing: false }));
    const now = Date.now();
    for (const [slot, part] of this.parts) {
      if (part.user.id === typistId && (key === undefined || part.conv.key === key) && part.deadline > now && !ends.has(slot)) ends.set(slot, typingPayload(part.conv, part.user, false));
    }
    for (const p of ends.values()) this.pubsub.deliverLocally(Topic.Typing, [viewerId], p);
  }

  /**
   * Where this instance hears a conversation's typing (a member's socket is here), it watches each
   * typist told `typing: true` for an end: heard, or due. An instance killed while it held a typist's
   * only part leaves no one to lapse it (its timer died with it), and the store's keys just expire:
   * others were told it began and never that it ended (an outside probe, kill -9). A typist still
   * typing is told again at least once per throttle window, which moves the watch on; past the
   * horizon of a part written at the last of them (throttle and lapse), the store is asked to lapse
   * the parts whose horizon passed, as a live instance's lapse does, and whoever ends it tells the
   * others. One process has no other instance to outlive.
   */
  private watchEnd(slot: string, p: TypingPayload): void {
    if (this.pubsub.kind === 'memory') return;
    const watch = this.ends.get(slot);
    if (!p.typing) {
      if (watch) clearTimeout(watch.timer);
      this.ends.delete(slot);
      return;
    }
    if (watch) {
      watch.event = p;
      return void watch.timer.refresh();
    }
    const timer = setTimeout(() => this.due(slot), this.throttleMs + this.lapseMs + END_MARGIN_MS);
    timer.unref();
    this.ends.set(slot, { timer, event: p });
  }

  /** A watched typist's parts should all have lapsed by now: those left belong to instances gone. */
  private due(slot: string): void {
    const watch = this.ends.get(slot);
    if (!watch) return;
    // Of the last `typing: true` heard, as it stands once the store answers.
    const ended = () => Object.assign({}, watch.event, { typing: false });
    this.behind(
      this.run({ kind: 'lapse', slot, instance: GONE })
        .then((r) => {
          // A part still within its horizon (written without telling anyone): looked at again after another.
          if (r === 0 && this.ends.get(slot) === watch) return void watch.timer.refresh();
          const current = this.ends.get(slot) === watch;
          if (current) this.ends.delete(slot);
          if (r === 1) return this.pubsub.publishSafe(Topic.Typing, ended());
          // Ended in the store, and its end never heard here: published while this instance did not
          // hear the channel, or lost with Redis's data or a failed publish. Its subscribers here
          // were left typing for good; the others heard it, or tell their own.
          if (r === -1 && current) this.pubsub.dispatchHere(Topic.Typing, ended());
        })
        .catch((e) => {
          this.logger.warn({ err: e }, 'typing end of a gone instance failed');
          // Redis away: the typist's horizon passed with no refresh heard, and no end can be heard
          // until it is back (the typist's own lapse fails alike). A lapse is that silence: told to
          // this instance's subscribers, who were left typing for good (an outside probe, 3 of 3).
          if (this.ends.get(slot) !== watch) return;
          this.ends.delete(slot);
          this.pubsub.dispatchHere(Topic.Typing, ended());
        }),
    );
  }

  /**
   * A stop or a send through another instance ended a typist whose part this instance holds (its
   * own stops and lapses drop the part before they tell): the part's window no longer hides a start.
   * Taken as a refresh, typing again here right after was told to no one (an outside probe, 2 of 2);
   * now it is written, and held back or told as any start after a stop. A held-back start's retell
   * is dropped with it: the stop came after it.
   */
  private endedElsewhere(slot: string): void {
    const part = this.parts.get(slot);
    if (!part) return;
    part.wroteAt = 0;
    clearTimeout(part.retell);
    part.retell = undefined;
  }

  private sawTyping(slot: string): void {
    const now = Date.now();
    if (this.typists.size >= TYPISTS_SWEEP_AT) for (const [s, until] of this.typists) if (until <= now) this.typists.delete(s);
    this.typists.set(slot, now + this.typistTtlMs);
  }

  /**
   * Whether a stop refused by the typing limit goes through anyway: the first in a throttle window
   * for a conversation where this instance holds or heard the user typing (it ends what others
   * see). Decided from memory, before any access check: a stop naming a conversation they are not
   * typing in (made-up ids: an outside probe got each to the database) is refused as any call.
   */
  stopPastLimit(userId: string, input: ConversationArgs): boolean {
    const [g, p, u] = [input.groupId, input.projectId, input.userId].map((id) => id?.toLowerCase());
    const key = g ? groupKey(g) : p ? projectKey(p) : u ? directKey(userId, u) : undefined;
    if (!key) return false;
    const s = slot(key, !g && p ? u : undefined, userId);
    if (!this.parts.has(s) && !((this.typists.get(s) ?? 0) > Date.now())) return false;
    if (this.lateStops.has(s)) return false;
    this.lateStops.set(s, true);
    return true;
  }

  /**
   * `em` is asked for only when the membership index or the profile cache can't answer: a typing
   * client holds a socket here, so a refresh usually needs no fork and no query.
   */
  async set(em: () => EntityManager, viewerId: string, input: ConversationArgs, typing: boolean): Promise<boolean> {
    const conv = this.access.known(viewerId, input) ?? (await this.access.resolve(em(), viewerId, input));
    const viewer = await this.profile(em, viewerId);
    const slot = slotOf(conv, viewer.id);
    if (!typing) {
      await this.end(conv, viewer, slot);
      return true;
    }
    const now = Date.now();
    let part = this.parts.get(slot);
    if (part && now - part.wroteAt < this.throttleMs) {
      // Within the window of this instance's last write: nothing anyone sees changes.
      part.deadline = now + this.lapseMs;
      return true;
    }
    if (!part) this.parts.set(slot, (part = { conv, user: viewer, deadline: 0, timer: undefined, wroteAt: 0 }));
    part.deadline = now + this.lapseMs;
    this.watch(slot, part);
    const tell = await this.write(slot, part, now);
    if (tell === 1) await this.publish(conv, viewer, true);
    // Not told yet (a start soon after a stop, or another instance's write).
    else if (part.wroteAt === now) this.heldBack(slot, part, now, tell);
    return true;
  }

  /** Writes this instance's part (the refreshes it may absorb after it last until its horizon, at most): 1 when others should be told now. */
  private write(slot: string, part: Part, now: number, held = false): Promise<number> {
    part.wroteAt = now;
    return this.run({ kind: 'start', slot, spanMs: this.throttleMs + this.lapseMs, throttleMs: this.throttleMs, conversation: part.conv.key, markMs: this.typistTtlMs, held });
  }

  /**
   * A start the throttle held back (`tell`: minus the window's milliseconds left): the first refresh
   * once the window ends writes again, rather than a whole window after this write; and with no
   * refresh by then, the window's end does, while the part lasts. Told only at a refresh, a message
   * typed right after a send showed no one typing for up to a window more (two outside probes, a
   * chat UI's and the demo's).
   */
  private heldBack(slot: string, part: Part, now: number, tell: number): void {
    part.wroteAt = now - this.throttleMs - tell;
    const wrote = part.wroteAt;
    clearTimeout(part.retell);
    part.retell = setTimeout(() => this.retell(slot, part, wrote), Math.max(1, -tell));
    part.retell.unref();
  }

  /**
   * A held-back start's window ended: told now if the part still lasts, here and in the store (a
   * stop or a send through another instance ended it: told after it, the typist showed typing to
   * its lapse: a verification probe), and no refresh wrote it since.
   */
  private retell(slot: string, part: Part, wrote: number): void {
    part.retell = undefined;
    const now = Date.now();
    if (this.parts.get(slot) !== part || part.deadline <= now || part.wroteAt !== wrote) return;
    this.behind(
      this.write(slot, part, now, true)
        .then(async (tell) => {
          // Told as set() tells it, a stop meanwhile or not: that stop then tells its end.
          if (tell === 1) return void (await this.publish(part.conv, part.user, true));
          if (this.parts.get(slot) !== part) return;
          if (tell === ENDED) return this.forget(slot);
          // The window not quite over by the store's clock: again at its end. Longer, it is a window
          // another instance's write began, which told them.
          if (-tell <= CLOCK_SLACK_MS) this.heldBack(slot, part, now, tell);
        })
        .catch((e) => this.logger.warn({ err: e }, 'typing start failed')),
    );
  }

  private async profile(em: () => EntityManager, userId: string): Promise<UserPayload> {
    const hit = this.profiles.get(userId);
    if (hit && Date.now() - hit.at < PROFILE_TTL_MS) return hit.user;
    const user = toUserPayload(await userRepository.profile(em(), userId));
    if (this.profiles.size >= PROFILES_MAX) this.profiles.clear();
    this.profiles.set(userId, { user, at: Date.now() });
    return user;
  }

  /**
   * A message was sent: the sender is no longer typing there. The store is asked only if they may
   * be: this instance holds a part of theirs, saw them typing lately, or cannot tell (it has not
   * heard the conversation's typing events for long enough, and the store did not find it quiet
   * since: see knows). Most senders did not type through a refresh the store still holds, and
   * their send costs no store command.
   */
  sent(user: UserPayload, conv: Conversation): void {
    const slot = slotOf(conv, user.id);
    const until = this.typists.get(slot);
    if (until !== undefined) this.typists.delete(slot);
    const mayType = this.parts.has(slot) || (until !== undefined && until > Date.now());
    if (!mayType && this.knows(conv, user)) return;
    this.behind(this.end(conv, user, slot).catch((e) => this.stopFailed(e)));
  }

  /**
   * Whether this instance saw every `typing: true` of the conversation that may still hold (so
   * `typists` tells who may type): it has heard the conversation's channel for longer than any
   * state lasts, or since before the store found no typist started there for that long (its mark:
   * every start sets it for `typistTtlMs` before telling anyone). A deploy makes every channel new:
   * without the mark each send ended its sender's typing in the store for 20 s after it; with it,
   * a conversation's first send asks once, beside that send's stop.
   */
  private knows(conv: Conversation, user: UserPayload): boolean {
    const from = this.pubsub.heardFrom(Topic.Typing, typingPayload(conv, user, false));
    const now = Date.now();
    // Not heard (yet, or again: a start may have come while the listening connection was away).
    if (from === undefined || from > now) return false;
    if (from <= now - this.typistTtlMs) return true;
    const asked = this.asked.get(conv.key);
    if (asked?.from === from && (asked.quiet || now - asked.at < this.throttleMs)) return asked.quiet;
    if (this.asking.has(conv.key)) return false;
    this.asking.add(conv.key);
    if (this.asked.size >= TYPISTS_SWEEP_AT) for (const [c, a] of this.asked) if (now - a.at > this.typistTtlMs) this.asked.delete(c);
    // Asked after the channel was heard: a start the answer missed is one this instance heard.
    this.behind(
      this.run({ kind: 'quiet', conversation: conv.key })
        .then((quiet) => void this.asked.set(conv.key, { from, at: Date.now(), quiet: quiet === 1 }))
        .catch((e) => this.quietCheckFailed(e))
        .finally(() => this.asking.delete(conv.key)),
    );
    return false;
  }

  private behind(work: Promise<unknown>): void {
    this.background.add(work);
    void work.finally(() => this.background.delete(work));
  }

  private async end(conv: Conversation, viewer: UserPayload, slot: string): Promise<void> {
    this.forget(slot);
    if ((await this.run({ kind: 'stop', slot })) === 1) await this.publish(conv, viewer, false);
  }

  /** One timer per part, moved on only when it fires (a refresh just moves the deadline). */
  private watch(slot: string, part: Part): void {
    if (part.timer) return;
    part.timer = setTimeout(() => this.lapse(slot, part), Math.max(1, part.deadline - Date.now()));
    part.timer.unref();
  }

  private lapse(slot: string, part: Part): void {
    part.timer = undefined;
    if (this.parts.get(slot) !== part) return;
    const now = Date.now();
    if (part.deadline > now) return this.watch(slot, part);
    clearTimeout(part.retell);
    this.parts.delete(slot);
    this.behind(
      this.run({ kind: 'lapse', slot })
        .then((r) => (r === 1 ? this.publish(part.conv, part.user, false) : undefined))
        .catch((e) => this.logger.warn({ err: e }, 'typing lapse failed')),
    );
  }

  private forget(slot: string): void {
    const part = this.parts.get(slot);
    if (!part) return;
    clearTimeout(part.timer);
    clearTimeout(part.retell);
    this.parts.delete(slot);
  }

  /** Queues a store change; the batch goes out `batchMs` after its first change. */
  private run(op: TypingOp): Promise<number> {
    return new Promise((resolve, reject) => {
      // A user who sends in a burst (a bot posting over HTTP, on an instance that can't tell
      // whether they type) ends their typing once per send: one script a batch is enough.
      const p: Pending = { op, resolve, reject };
      if (op.kind !== 'quiet') {
        const last = this.lastOfSlot.get(op.slot);
        if (op.kind === 'stop' && last?.op.kind === 'stop') return void (last.repeats ??= []).push({ resolve, reject });
        this.lastOfSlot.set(op.slot, p);
      }
      this.pending.push(p);
      if (this.flushTimer) return;
      this.flushTimer = setTimeout(() => this.flush(), this.batchMs);
      this.flushTimer.unref();
    });
  }

  private flush(): void {
    this.flushTimer = undefined;
    const batch = this.pending;
    this.pending = [];
    this.lastOfSlot.clear();
    if (!batch.length) return;
    this.store.apply(batch.map((p) => p.op)).then(
      (results) =>
        batch.forEach((p, i) => {
          p.resolve(results[i]);
          p.repeats?.forEach((r) => r.resolve(0));
        }),
      (e) =>
        batch.forEach((p) => {
          p.reject(e);
          p.repeats?.forEach((r) => r.reject(e));
        }),
    );
  }

  private publish(conv: Conversation, user: UserPayload, typing: boolean): Promise<boolean> {
    return this.pubsub.publishSafe(Topic.Typing, typingPayload(conv, user, typing));
  }

  /**
   * Before pub/sub and Redis close: the changes already asked for (a sent message's stop) are made
   * and told. This instance's parts stay in the store to their horizon, as if its refreshes had
   * stopped: a typist whose client goes on through another instance goes on typing for everyone,
   * with no `typing: false` between; one who stopped is ended by the instances that hear them
   * (watchEnd).
   */
  async dispose(): Promise<void> {
    this.unlisten();
    this.typists.clear();
    this.asked.clear();
    for (const { timer } of this.ends.values()) clearTimeout(timer);
    this.ends.clear();
    for (const part of this.parts.values()) [part.timer, part.retell].forEach(clearTimeout);
    this.parts.clear();
    this.profiles.clear();
    clearTimeout(this.flushTimer);
    this.flush();
    await Promise.all(this.background);
  }
}
