import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import { warnAtMostEvery, type Logger } from '../../shared/logger';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type PresenceGracePayload, type PresenceHandoffPayload, type PresencePayload } from '../../shared/pubsub/topics';
import { cursorSideOf, decodeCursor, pageRequest, toConnection, type ConnectionShape, type PageArgs } from '../../shared/graphql/connection';
import { userRepository } from '../user/user.repository';
import { BadUserInputError, ForbiddenError, NotFoundError } from '../../shared/errors';
import { ABSENT, type Activity, type Gone, type PresenceStore, type StoreChannel } from './presence.store';
import { BySession } from './presence.sessions';
import { presenceRepository } from './presence.repository';
import { PresenceVisibility, type VisibilityCache } from './presence.visibility';

/** How long after the store is back closed sockets and logouts it could not settle are settled (see settleAgain). */
const SETTLE_AGAIN_MS = 2000;
/** How often closes and logouts the store could not take are tried again while it stays away (see retrySettling). */
const SETTLE_RETRY_MS = 3000;

export interface PresenceState {
  userId: string;
  status: 'ONLINE' | 'OFFLINE';
  /** Last activity while online; the persisted lastSeenAt otherwise (null: never seen). */
  lastSeenAt: Date | null;
}

export interface PresenceOptions {
  store: PresenceStore;
  pubsub: PubSub;
  orm: MikroORM;
  env: Pick<Env, 'PRESENCE_TIMEOUT' | 'PRESENCE_GRACE' | 'PRESENCE_PERSIST_INTERVAL' | 'PRESENCE_GROUP_MAX'>;
  logger: Logger;
  instanceId: string;
  /** Who may see whose presence (PRESENCE_VISIBILITY, HIDDEN users, contacts). @default everyone sees everyone who is not HIDDEN */
  visibility?: PresenceVisibility;
  /**
   * A classic Redis pub/sub channel on which the store itself may publish the sweep's OFFLINE
   * transitions (JSON, as PubSub sends them), atomically with their removal. Only where every
   * instance subscribes to it with SUBSCRIBE: not with sharded pub/sub (SSUBSCRIBE) nor in memory.
   * A string is a topic-wide channel; `{ name, perUser: true }` the prefix of each user's own channel.
   * @default undefined: the service publishes through `pubsub`
   */
  storeChannel?: string | StoreChannel;
}

/** A socket's close whose session was revoked, and since when another session's activity keeps its user ONLINE. */
type Ended = { sessionId: string; cutoff: number };

/** One sweep: which cron slot it ran for (null: the command line), how many it expired, how long it took. */
export interface SweepRun {
  slot: string | null;
  expired: number;
  ms: number;
}

/** A settle that found no record of its user within this long after a loss was learned is settled again at once (see lostSince). */
const LOST_LATELY_MS = 10_000;

/**
 * How long after a loss of the store's data is learned ONLINE transitions wait to be announced:
 * until the closes and logouts it hid are settled (SETTLE_AGAIN_MS after each instance learned it,
 * and instances reconnecting to a restarted Redis learn it up to the 2 s of their backoff apart),
 * with a margin. Each instance tells the store again who was active through it, and one that did
 * not see a user leave elsewhere (a logout through another instance, a socket closed there)
 * announced them ONLINE, then OFFLINE once settled (an outside probe, Redis restarted empty: 6 of
 * 15). Announced later, with the version it had, an ONLINE older than the OFFLINE delivered since
 * is dropped (see NewestVersions).
 */
const ANNOUNCE_AFTER_LOSS_MS = SETTLE_AGAIN_MS + 3000;

/** How long after a read found the store's data lost it reads again: the instances have told it theirs by then (see read). */
const RETOLD_WITHIN_MS = 300;

/** At most one telling of an emptied store its sockets per this long, for a loss told without its generation (see start). */
const TELL_AGAIN_EVERY_MS = 3_000;

/** Users per handoff event of a stopping instance (see dispose). */
const HANDOFF_CHUNK = 1000;

/** How long activity waits to go to the store with the rest of its batch (see recordActivity). */
const TOUCH_BATCH_MS = 10;
/** Users per lastSeenAt statement in the interval flush, and the pause between statements. */
const FLUSH_CHUNK = 250;
const FLUSH_PAUSE_MS = 5;

/** The longest a logout waits for an activity batch on its way to the store (see endingSession). */
const ENDING_WAIT_MS = 1000;

/** How long after another instance's listing of its sockets lapses a closed socket's user is settled again (clocks a little apart). */
const LAPSED_MARGIN_MS = 1000;
/**
 * How often an instance beats, and how many beats it may miss before the sockets it lists stop
 * counting for connected(): a killed instance's list lives on for three refresh intervals (30 s by
 * default), and an offline notification for a message sent meanwhile was never written.
 */
export const PRESENCE_BEAT_MS = 1000;
const BEATS_MISSED = 4;

/**
 * Who is online. Activity, heartbeats and sockets go to the presence store only; PostgreSQL
 * sees lastSeenAt on OFFLINE transitions and in a paced flush per persist interval.
 */
export class PresenceService {
  /** userId, sessionId -> open sockets on this instance. */
  private readonly sockets = new BySession<number>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  /** Reads shared within one turn of the event loop (see thisTurn). */
  private readonly turnReads = new Map<string, Promise<unknown>>();
  /** Closed sockets' users asked again once another instance's list of them lapses (see askAgainOnceLapsed), with that close. */
  private readonly reasks = new Map<string, { timer: NodeJS.Timeout; closedAt: number }>();
  /**
   * Users whose last socket here closed and whose OFFLINE is not settled yet, with when (and the
   * session, when it was revoked). A store that lost its data meanwhile (Redis restarted empty) no
   * longer had them ONLINE, so settling found no transition and their OFFLINE was never announced:
   * clients showed them ONLINE for good (an outside probe, 3 of 3). It is told they were active at
   * their close, and they are settled again (see activityWritten). A close settled while the store
   * had no record of its user is kept too: the loss may be found only after it (a revocation heard
   * on reconnecting closes the socket before the store is asked whether it lost its data).
   */
  private readonly closing = new Map<string, { at: number; ended?: Ended }>();
  /** Users whose close is being settled now: activity told again meanwhile would land after their OFFLINE and bring them back. */
  private readonly settling = new Set<string>();
  /** The next try at settling closes the store could not take (see retrySettling). */
  private settleRetry: NodeJS.Timeout | undefined;
  /** Users whose last socket here closed while the store was away, with when (see afterGrace). */
  private readonly unsettled = new Map<string, { closedAt: number; ended?: Ended }>();
  /** Logouts made here the store could not take (away), by user and session, with when: settled once it is back (see settleLogout). */
  private readonly unsettledLogouts = new BySession<number>();
  /**
   * Logouts made here within PRESENCE_TIMEOUT that found no record of their user, with when: one
   * made before a loss of the store's data was found (a FLUSHALL, and no read since) was announced
   * to no one, and watchers showed the user ONLINE for good (an outside probe, 14 of 15). Told
   * again and settled again once the loss is found, as a close is (see closing).
   */
  private readonly absentLogouts = new BySession<number>();
  /** Handoffs taken from stopped instances and not settled yet (see takeOver), by their timer. */
  private readonly handoffs = new Map<NodeJS.Timeout, PresenceHandoffPayload>();
  /**
   * userId -> sessionId ('' for none) -> when this instance last wrote that activity to the store;
   * kept for PRESENCE_TIMEOUT, so that a store that lost it is told it again (see tellAgain).
   */
  private readonly touched = new BySession<number>();
  /** Activity on its way to the store (see recordActivity), each with who waits for it. */
  private touchQueue: (Activity & { done: (recorded: boolean) => void })[] = [];
  /** Each user's activity waiting for its batch: what a heartbeat waits for before it answers. */
  private readonly pendingOf = new Map<string, Promise<boolean>>();
  private touchTimer: NodeJS.Timeout | undefined;
  /** The batch being written, if any. */
  private recording: Promise<void> | undefined;
  /** The sockets' refresh under way, if any (see activityFirst). */
  private refreshing: Promise<void> | undefined;
  /** Users active since the last lastSeenAt flush, with when. */
  private readonly dirty = new Map<string, number>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly off: (() => void)[] = [];
  private readonly timeoutMs: number;
  /** Activity closer together than this costs no store write (well under the timeout, so it never matters to the sweep). */
  private readonly touchEveryMs: number;
  /** How often live sockets are re-announced; their bookkeeping lives three times that. */
  private readonly refreshEveryMs: number;
  /** The lastSeenAt flush under way, if any. */
  private flushing: Promise<void> | undefined;
  private stopping = false;
  /** When this instance last told an emptied store its sockets (see start). */
  private toldAgainAt = 0;
  /** The generation of the store's data this instance last told its own again for (see start). */
  private toldGeneration: string | undefined;
  /** When this instance last learned that the store lost its data (see lostSince). */
  private lostAt = -Infinity;
  /** ONLINE transitions waiting to be announced after a loss (see ANNOUNCE_AFTER_LOSS_MS), by their timer. */
  private readonly announcing = new Map<NodeJS.Timeout, PresencePayload>();
  /** What a reconnection to the store runs (see start): told again what it may have lost, then closes settled. */
  private storeBack: (() => void) | undefined;
  /**
   * For the users table (lastSeenAt): a fork of its own, outside any transaction and never
   * holding entities, as the writes are not part of any request's work.
   */
  private readonly em: EntityManager;
  /** The last sweeps this instance ran, newest last (for operators and tests). */
  readonly sweeps: SweepRun[] = [];

  private readonly store: PresenceStore;
  private readonly pubsub: PubSub;
  private readonly env: PresenceOptions['env'];
  private readonly logger: Logger;
  /** Each close the store can't take, tried again every few seconds while it is away: one warning in 10 s says so. */
  private readonly settleFailed: ReturnType<typeof warnAtMostEvery>;
  /** Every request's activity fails while the store is away. */
  private readonly activityFailed: ReturnType<typeof warnAtMostEvery>;
  /** This instance, as the holder of its sockets in the store. */
  private readonly instanceId: string;
  private readonly storeChannel: StoreChannel | undefined;
  readonly visibility: PresenceVisibility;

  constructor(o: PresenceOptions) {
    this.store = o.store;
    this.pubsub = o.pubsub;
    this.env = o.env;
    this.logger = o.logger;
    this.activityFailed = warnAtMostEvery(o.logger, 10_000, 'presence store unavailable; activity not recorded');
    this.settleFailed = warnAtMostEvery(o.logger, 10_000, 'presence: could not settle a closed socket or a logout; it will be once the store is back');
    this.instanceId = o.instanceId;
    this.storeChannel = typeof o.storeChannel === 'string' ? { name: o.storeChannel, perUser: false } : o.storeChannel;
    this.visibility = o.visibility ?? new PresenceVisibility('everyone', undefined, async () => new Set());
    this.timeoutMs = o.env.PRESENCE_TIMEOUT * 1000;
    this.touchEveryMs = Math.min(5000, this.timeoutMs / 10);
    this.refreshEveryMs = Math.max(250, Math.min(10_000, this.timeoutMs / 4));
    this.em = o.orm.em.fork() as EntityManager;
  }

  /** How long the store keeps a session's activity (and an ended session's mark: see endSession). */
  private get sessionTtlMs(): number {
    return this.timeoutMs * 2;
  }

  private get socketTtlMs(): number {
    return this.refreshEveryMs * 3;
  }

  private get beatEveryMs(): number {
    return Math.min(PRESENCE_BEAT_MS, this.refreshEveryMs);
  }

  private beat(): Promise<void> {
    return this.store.beat(this.instanceId).catch((e) => this.logger.debug({ err: e }, 'presence beat failed'));
  }

  /** Starts the live-socket refresh and the lastSeenAt flush. */
  start(): void {
    // An OFFLINE decided anywhere (logout, sweep) must make the next activity here count again.
    this.off.push(this.pubsub.on(Topic.PresenceChanged, (p) => p.status === 'OFFLINE' && this.touched.deleteUser(p.userId)));
    // A session logged out anywhere has no activity to tell a store again (see tellAgain).
    this.off.push(this.pubsub.on(Topic.SessionsRevoked, (p) => p.sessionIds.forEach((s) => this.touched.delete(p.userId, s))));
    this.off.push(this.pubsub.on(Topic.PresenceHandoff, (p) => void this.takeOver(p)));
    this.off.push(this.pubsub.on(Topic.PresenceGrace, (p) => p.instanceId !== this.instanceId && this.graceElsewhere(p)));
    const refresh = setInterval(() => void this.refreshSockets(), this.refreshEveryMs);
    const beat = setInterval(() => void this.beat(), this.beatEveryMs);
    // A store that comes back may have lost who is connected here (a Redis restarted empty): told again at once.
    // Closed sockets are settled once every instance had a moment to tell the store its own
    // again (a user connected elsewhere is not taken OFFLINE in between).
    // A store that lost its data is also told the activity written here within PRESENCE_TIMEOUT: a
    // user active over HTTP only read OFFLINE after a Redis restart, with no OFFLINE announced (an
    // outside probe: 4 of 4). Only then: a store that kept it has every logout made meanwhile
    // through other instances, which this one, cut off, did not hear.
    // The activity is queued in the turn it is read: a close settled from then on finds it in the
    // store first (activityFirst), and one settled before it is left out of it (socketClosed).
    const tellAgain = (active: Activity[] = []) => {
      this.recordAgain(active);
      void this.refreshSockets().then(() => setTimeout(() => this.settleAgain(), SETTLE_AGAIN_MS).unref());
    };
    // Asked before the sockets' refresh, which finds the loss too and writes the mirror again.
    this.storeBack = () =>
      void (this.store.emptied?.() ?? Promise.resolve(false))
        .catch(() => false)
        .then((lost) => {
          if (lost) this.lostAt = Date.now();
          tellAgain(lost ? this.activityWritten() : []);
        });
    const reconnected = this.store.onReconnect?.(this.storeBack);
    if (reconnected) this.off.push(reconnected);
    // A store emptied while connected (FLUSHALL, an eviction) is found by the first read or activity
    // that misses its HIDDEN mirror, on one instance: every instance tells it its sockets at once
    // (else up to a refresh interval of OFFLINE), and activity counts again at once (else throttled).
    // Known here at once: a read made before its own PresenceStoreLost comes back waits too (see read).
    const lost = this.store.onDataLost?.((generation) => {
      this.lostAt = Date.now();
      void this.pubsub.publishSafe(Topic.PresenceStoreLost, { instanceId: this.instanceId, generation });
    });
    if (lost) this.off.push(lost);
    this.off.push(
      this.pubsub.on(Topic.PresenceStoreLost, (p) => {
        // Several instances may find one loss at once: told once a loss, known by the generation its
        // finder wrote. Once per few seconds, a second loss soon after the first was never told, and
        // users active over HTTP only read OFFLINE, none announced (an outside probe, 6 of 6). Without
        // a generation (a release before it), once per few seconds still.
        const now = Date.now();
        this.lostAt = now;
        if (this.stopping || (p.generation ? p.generation === this.toldGeneration : now - this.toldAgainAt < TELL_AGAIN_EVERY_MS)) return;
        this.toldAgainAt = now;
        if (p.generation) this.toldGeneration = p.generation;
        const active = this.activityWritten();
        this.touched.prune(() => true);
        tellAgain(active);
      }),
    );
    const flush = setInterval(() => void this.flushLastSeen(), this.env.PRESENCE_PERSIST_INTERVAL * 1000);
    refresh.unref();
    beat.unref();
    flush.unref();
    this.timers.push(refresh, beat, flush);
    void this.beat();
    void this.refreshSockets();
    // The store mirrors who is HIDDEN (the database says): a store that lost it learns it again here.
    void presenceRepository
      .hiddenUserIds(this.em)
      .then((ids) => this.store.seedHidden(ids))
      .catch((e) => this.logger.warn({ err: e }, 'presence: could not mirror HIDDEN users in the store'));
  }

  /**
   * Any authenticated activity (request, WebSocket operation, heartbeat). Cheap: at most one
   * store write per session per `touchEveryMs`, and never a database write.
   * @returns false when the store could not be reached.
   */
  async touch(userId: string, sessionId: string | null = null, now = Date.now()): Promise<boolean> {
    this.dirty.set(userId, now);
    const last = this.touched.get(userId, sessionId ?? '');
    if (last !== undefined && now - last < this.touchEveryMs) return true;
    this.touched.set(userId, sessionId ?? '', now);
    const recorded = new Promise<boolean>((done) => {
      this.touchQueue.push({ userId, sessionId, now, done });
      this.touchTimer ??= setTimeout(() => void this.recordActivity(), TOUCH_BATCH_MS).unref();
    });
    this.pendingOf.set(userId, recorded);
    void recorded.then(() => this.pendingOf.get(userId) === recorded && this.pendingOf.delete(userId));
    return recorded;
  }

  /**
   * Activity still waiting for its batch goes to the store now, before a step that may take a user
   * OFFLINE: recorded after it, a logout's own request would bring its user back ONLINE.
   */
  private async activityFirst(): Promise<void> {
    // A refresh of the sockets on its way may list a user whose socket closed since it began, and
    // touch them after their OFFLINE: ONLINE until the sweep (one Redis round trip in a refresh's
    // two; a reconnection's refresh, and a revocation heard on it, met there: an outside probe).
    await this.refreshing;
    // A batch on its way is ahead on the same connection already; waiting for it too relies on nothing.
    const writing = this.recording;
    if (this.touchQueue.length) {
      clearTimeout(this.touchTimer);
      await this.recordActivity();
    }
    await writing;
  }

  /**
   * Writes the activity of the last TOUCH_BATCH_MS to the store in one step and announces who came
   * online. A user's first request in a while is most requests of a user base that acts now and
   * then: one script each was a Redis round trip for 60% of bench:rooms' sends (7% of its rate).
   */
  private recordActivity(): Promise<void> {
    const batch = this.touchQueue;
    this.touchQueue = [];
    this.touchTimer = undefined;
    const recording = this.record(batch);
    this.recording = recording;
    void recording.finally(() => this.recording === recording && (this.recording = undefined));
    return recording;
  }

  private async record(batch: PresenceService['touchQueue']): Promise<void> {
    try {
      const cameOnline = await this.store.touch(batch, this.sessionTtlMs);
      const at = new Map(batch.filter((a) => !a.quiet).map((a) => [a.userId, a.now]));
      await Promise.all(cameOnline.filter(({ userId }) => at.has(userId)).map(({ userId, v }) => this.announceOnline({ userId, status: 'ONLINE', lastSeenAt: new Date(at.get(userId)!).toISOString(), v })));
      for (const a of batch) a.done(true);
    } catch (e) {
      for (const a of batch) this.touched.delete(a.userId, a.sessionId ?? ''), a.done(false);
      // Every request lands here while Redis is away: one line per 10 s is enough to say so.
      this.activityFailed(e);
    }
  }

  /** A user's activity still waiting for its batch, taken out of it (see setVisibility; requeue puts it back). */
  private holdActivity(userId: string): PresenceService['touchQueue'] {
    const held = this.touchQueue.filter((a) => a.userId === userId);
    if (held.length) this.touchQueue = this.touchQueue.filter((a) => a.userId !== userId);
    return held;
  }

  private requeue(held: PresenceService['touchQueue']): void {
    if (!held.length) return;
    this.touchQueue.push(...held);
    this.touchTimer ??= setTimeout(() => void this.recordActivity(), TOUCH_BATCH_MS).unref();
  }

  /** Login and signup: ONLINE at once, whatever the throttle says. */
  async online(userId: string, sessionId: string | null = null): Promise<void> {
    this.touched.deleteUser(userId);
    await this.touch(userId, sessionId);
  }

  /**
   * The viewer after this heartbeat: ONLINE, seen when the store last recorded this session (now,
   * unless the throttle skipped it: the sweep counts from what the store holds, and an answer of
   * now, which `me` and everyone else read older, promised more than was kept; an outside probe),
   * with no store read; answered once the store holds it: the request's own activity may still
   * wait for its batch, and a contact asking right after the answer would read OFFLINE.
   */
  async heartbeat(userId: string, sessionId: string | null = null): Promise<PresenceState> {
    const now = Date.now();
    const last = this.touched.get(userId, sessionId ?? '');
    const seen = last !== undefined && now - last < this.touchEveryMs ? last : now;
    const recorded = (await this.touch(userId, sessionId, now)) && (await (this.pendingOf.get(userId) ?? true));
    // Not recorded, the store away: the viewer is active all the same, as this request shows (read
    // back from the store that could not be reached, they were told they were OFFLINE; an outside probe).
    return { userId, status: 'ONLINE', lastSeenAt: new Date(recorded ? seen : now) };
  }

  /**
   * Before a session's revocation is told (a logout; `sessionId` null: every session of an account
   * being deleted): its activity still waiting for its batch is not written, and a batch on its way
   * lands first (waited for a moment at most: a slow store must not hold the revocation). Written
   * after the revocation, the logout's own request brought back ONLINE a user another instance had
   * just taken OFFLINE for its closed socket, then OFFLINE again.
   */
  async endingSession(userId: string, sessionId: string | null): Promise<void> {
    const ending = (a: Activity) => a.userId === userId && (sessionId === null || a.sessionId === sessionId);
    // Answered as written: what waits on it (a heartbeat's answer) is of a session that is ending.
    for (const a of this.touchQueue) if (ending(a)) a.done(true);
    this.touchQueue = this.touchQueue.filter((a) => !ending(a));
    if (this.recording) await Promise.race([this.recording, new Promise((r) => setTimeout(r, ENDING_WAIT_MS).unref())]);
  }

  /** Logout of one session: OFFLINE unless another session is live (a socket, or activity within PRESENCE_TIMEOUT). */
  loggedOut(userId: string, sessionId: string): Promise<void> {
    this.touched.delete(userId, sessionId);
    return this.settleLogout(userId, sessionId, Date.now());
  }

  /** A logout made at `at`, settled now; one the store can't take is settled again once it is back (it waited for the sweep). */
  private async settleLogout(userId: string, sessionId: string, at: number, retold = false): Promise<void> {
    const began = Date.now();
    this.unsettledLogouts.delete(userId, sessionId);
    this.absentLogouts.delete(userId, sessionId);
    // This session's own sockets are being closed by the revocation; only other sessions' count.
    const liveHere = [...this.sockets.sessions(userId)].some((s) => s !== sessionId);
    try {
      await this.activityFirst();
      const wentOffline = await this.store.endSession(userId, sessionId, { instanceId: this.instanceId, liveHere, cutoff: at - this.timeoutMs, now: Date.now(), sessionTtlMs: this.sessionTtlMs });
      if (wentOffline === ABSENT && !retold && this.lostSince(began)) {
        this.recordAgain([{ userId, sessionId: null, now: at, quiet: true }]);
        return await this.settleLogout(userId, sessionId, at, true);
      }
      if (wentOffline === ABSENT) this.absentLogouts.set(userId, sessionId, at);
      else if (wentOffline) await this.offline(userId, at, wentOffline);
    } catch (e) {
      this.unsettledLogouts.set(userId, sessionId, at);
      this.settleFailed(e, { userId });
      this.retrySettling();
    }
  }

  /** Account deleted: OFFLINE at once, sockets or not. */
  async forget(userId: string): Promise<void> {
    this.sockets.deleteUser(userId);
    this.cancelGrace(userId);
    const now = Date.now();
    await this.activityFirst().catch(() => undefined);
    // The account is gone already (this runs after its deletion committed): a store that can't be
    // reached must not turn that into an error. The sweep takes the user out once it answers again.
    const gone = await this.store.remove(userId, this.sessionTtlMs).catch((e) => {
      this.logger.warn({ err: e, userId }, 'presence store unavailable; a deleted user stays in it until the sweep');
      return null;
    });
    // Told with no lastSeenAt, as its placeholder reads from now on (anonymize).
    if (gone) await this.offline(userId, now, gone, true);
  }

  /** Whether the user holds a socket or stream on this instance (tests, to wait for a close to be handled). */
  hasSocket(userId: string): boolean {
    return this.sockets.has(userId);
  }

  socketOpened(userId: string, sessionId: string): void {
    const first = !this.sockets.has(userId);
    this.sockets.set(userId, sessionId, (this.sockets.get(userId, sessionId) ?? 0) + 1);
    this.cancelGrace(userId);
    this.closing.delete(userId);
    // Other instances must know at once: one of them may be deciding this user's OFFLINE right now.
    if (first) void this.store.addSocket(this.instanceId, userId, this.socketTtlMs).catch(() => undefined);
    void this.online(userId, sessionId);
  }

  /**
   * Another instance closed this user's last socket there at `closedAt`, and will settle their
   * OFFLINE after the grace period by what the store holds: activity here since then must be in
   * it, not kept back by this instance's throttle (an outside probe: a user active here just after
   * their socket there closed was taken OFFLINE there at the grace's end, and stayed so). What the
   * throttle kept back since the close (before this was heard) is recorded now, for each session
   * it may have come from. A request here crossing the close is not told from one just before it
   * (a tab's last request before it closed): it counts as before, as it does on one instance.
   */
  private graceElsewhere(p: PresenceGracePayload): void {
    const seen = this.dirty.get(p.userId);
    const sessions = [...this.touched.sessions(p.userId)];
    this.touched.deleteUser(p.userId);
    if (seen === undefined || seen < p.closedAt) return;
    for (const s of sessions) void this.touch(p.userId, s || null, seen);
  }

  /** `ended`: its session was revoked (a logout elsewhere): no reload brings it back, so no grace period. */
  socketClosed(userId: string, sessionId: string, ended = false): void {
    const n = (this.sockets.get(userId, sessionId) ?? 1) - 1;
    if (n > 0) this.sockets.set(userId, sessionId, n);
    else this.sockets.delete(userId, sessionId);
    if (this.sockets.has(userId)) return;
    const closedAt = Date.now();
    this.dirty.set(userId, closedAt);
    const end = ended ? { sessionId, cutoff: closedAt - this.timeoutMs } : undefined;
    this.closing.set(userId, { at: closedAt, ended: end });
    // Activity after the close must reach the store, or it could not keep the user online.
    this.touched.deleteUser(userId);
    this.cancelGrace(userId);
    // Another session active within PRESENCE_TIMEOUT keeps the user ONLINE then, as at the logout itself (endSession).
    if (end) return void this.afterGrace(userId, closedAt, end);
    // A reload reconnects within the grace period and cancels this.
    const timer = setTimeout(() => {
      this.graceTimers.delete(userId);
      void this.afterGrace(userId, closedAt);
    }, this.env.PRESENCE_GRACE * 1000);
    timer.unref();
    this.graceTimers.set(userId, timer);
    void this.pubsub.publishSafe(Topic.PresenceGrace, { instanceId: this.instanceId, userId, closedAt });
  }

  private cancelGrace(userId: string): void {
    const t = this.graceTimers.get(userId);
    if (t) {
      clearTimeout(t);
      this.graceTimers.delete(userId);
    }
    const r = this.reasks.get(userId);
    if (r) {
      clearTimeout(r.timer);
      this.reasks.delete(userId);
    }
  }

  private async afterGrace(userId: string, closedAt: number, ended?: Ended, again = false, retold = false): Promise<void> {
    const began = Date.now();
    this.unsettled.delete(userId);
    if (this.sockets.has(userId)) return;
    this.settling.add(userId);
    let settleAgain = false;
    try {
      await this.activityFirst();
      const gone = await this.store.socketsGone(userId, { instanceId: this.instanceId, closedAt, now: Date.now(), ended });
      if (typeof gone === 'object') {
        if (!again) this.askAgainOnceLapsed(userId, closedAt, gone.heldUntil, ended);
        return;
      }
      // Settled (by this answer, or by the socket or activity that keeps them ONLINE): a later close is
      // another. Not so when the store had no record of them (see closing).
      if (gone === ABSENT) {
        if (!retold && this.lostSince(began)) {
          this.recordAgain([{ userId, sessionId: null, now: closedAt, quiet: true }]);
          settleAgain = true;
        }
        return;
      }
      if (this.closing.get(userId)?.at === closedAt) this.closing.delete(userId);
      if (gone) await this.offline(userId, closedAt, gone);
    } catch (e) {
      // Settled again once the store is back (it waited for the sweep: PRESENCE_TIMEOUT, not the grace; an outside probe).
      this.unsettled.set(userId, { closedAt, ended });
      this.settleFailed(e, { userId });
      this.retrySettling();
    } finally {
      this.settling.delete(userId);
      if (settleAgain) void this.afterGrace(userId, closedAt, ended, again, true);
    }
  }

  /**
   * Whether a settle begun at `began` that found no record of its user may have met a loss of the
   * store's data: one learned since, or just before (the activity told again then may not have
   * landed, or a logout dropped it as its own: see endingSession). The user is told to the store
   * again and settled again at once; kept for the next loss only, they waited for one that never
   * came, and watchers showed them ONLINE for good (an outside re-check, 3 of 87).
   */
  private lostSince(began: number): boolean {
    return this.lostAt >= began - LOST_LATELY_MS;
  }

  /**
   * Closes the store could not take are tried again every SETTLE_RETRY_MS until it takes them,
   * as after a reconnection: a Redis that stalled (paused, busy) comes back without one, and they
   * waited for the sweep, users gone read ONLINE for PRESENCE_TIMEOUT (an outside probe, 6 of 6).
   */
  private retrySettling(): void {
    if (this.settleRetry || this.stopping) return;
    this.settleRetry = setTimeout(() => {
      this.settleRetry = undefined;
      if (this.unsettled.size || this.unsettledLogouts.size) this.storeBack?.();
    }, SETTLE_RETRY_MS);
    this.settleRetry.unref();
  }

  /**
   * Another instance lists a socket of the user: alive, it settles the user when that socket
   * closes; killed, it never will, and the user stayed ONLINE until the sweep (PRESENCE_TIMEOUT:
   * an outside probe). So asked once more when that instance's listing lapses, unless renewed (a
   * socket here again cancels it, as a grace period).
   */
  private askAgainOnceLapsed(userId: string, closedAt: number, heldUntil: number, ended?: Ended): void {
    // A grace period under way (a later close here) asks again itself, with its own close; of two
    // asks, the later close's stands.
    if (this.stopping || this.sockets.has(userId) || this.graceTimers.has(userId) || (this.reasks.get(userId)?.closedAt ?? -1) >= closedAt) return;
    clearTimeout(this.reasks.get(userId)?.timer);
    const timer = setTimeout(
      () => {
        this.reasks.delete(userId);
        void this.afterGrace(userId, closedAt, ended, true);
      },
      Math.max(0, heldUntil - Date.now()) + LAPSED_MARGIN_MS,
    );
    timer.unref();
    this.reasks.set(userId, { timer, closedAt });
  }

  /** Closed sockets and logouts whose OFFLINE could not be settled (the store away), settled again once it is back. */
  private settleAgain(): void {
    const users = [...this.unsettled];
    this.unsettled.clear();
    for (const [userId, { closedAt, ended }] of users) void this.afterGrace(userId, closedAt, ended);
    for (const [userId, sessionId, at] of [...this.unsettledLogouts.entries()]) void this.settleLogout(userId, sessionId, at);
  }

  /** After the store decided this OFFLINE transition (exactly one caller gets here for it); a HIDDEN user's is not published. */
  private async offline(userId: string, at: number, gone: Exclude<Gone, false>, deleted = false): Promise<void> {
    this.touched.deleteUser(userId);
    this.dirty.delete(userId);
    if (!deleted) {
      // The write says whether the account is gone: a socket closed by its deletion's revocation
      // can get here before the deletion's own OFFLINE (forget), and is told as that one.
      const found = new Set<string>();
      await this.persistLastSeen([[userId, at]], 0, found).catch((e) => this.logger.warn({ err: e, userId }, 'lastSeenAt write failed'));
      deleted = found.has(userId);
    }
    // A deleted account in contacts mode is every contact's lost contact, which tells them OFFLINE
    // with no lastSeenAt (see routePresence): told here too, it came twice (an outside probe, 8 of 18).
    if (gone === 'hidden' || (deleted && this.visibility.mode === 'contacts')) return;
    await this.publish({ userId, status: 'OFFLINE', lastSeenAt: deleted ? null : new Date(at).toISOString(), v: gone });
  }

  /** Presence as it is, whoever asks (internal use: notifications, the viewer's own). */
  async states(userIds: string[]): Promise<PresenceState[]> {
    return this.resolve(userIds, (await this.read(userIds)).active);
  }

  /**
   * Presence as `viewerId` may see it (userStatus, User.status, User.lastSeenAt): a user the
   * visibility rule hides from them reads OFFLINE with no lastSeenAt.
   */
  async statesFor(viewerId: string | null, userIds: string[], cache: VisibilityCache = {}): Promise<PresenceState[]> {
    const { active, hidden } = await this.thisTurn(`read ${userIds.join(',')}`, () => this.read(userIds));
    const may = await this.visibility.visible(viewerId, userIds, hidden, cache);
    const visible = userIds.filter((_, i) => may[i]);
    const shown = await this.thisTurn(`resolve ${visible.join(',')}`, () => this.resolve(visible, active.filter((_, i) => may[i])));
    let next = 0;
    return userIds.map((userId, i) => (may[i] ? shown[next++] : { userId, status: 'OFFLINE' as const, lastSeenAt: null }));
  }

  /**
   * What `key` reads, shared by everyone who asks within this turn of the event loop: an event's
   * per-viewer executions of a subscription that selects presence (`sender { status }`) read it
   * once, not once a viewer (the lobby: a store read and a query per member a message).
   */
  private thisTurn<T>(key: string, read: () => Promise<T>): Promise<T> {
    let p = this.turnReads.get(key) as Promise<T> | undefined;
    if (!p) {
      if (!this.turnReads.size) setImmediate(() => this.turnReads.clear());
      p = read();
      this.turnReads.set(key, p);
    }
    return p;
  }

  /**
   * Store state of each user; a store that cannot be reached reads as this instance knows: ONLINE
   * for a user with a socket here (a user with a live socket read OFFLINE while Redis was away, an
   * outside probe), else offline (and the database's lastSeenAt); HIDDEN as the database says (read
   * as no one hidden, a HIDDEN user's lastSeenAt was shown to everyone while Redis was away), or
   * everyone when it can't say either.
   */
  private async read(userIds: string[]): Promise<{ active: (number | null)[]; hidden: boolean[] }> {
    try {
      const read = await this.store.read(userIds);
      // This read found the store emptied (a FLUSHALL, an eviction), or came just after another
      // read or activity did, here or elsewhere: it read no one ONLINE, users with sockets among
      // them (an outside probe: one read, then 9 of 10 batches of reads through three instances).
      // Read again once the instances told it theirs.
      const wait = read.lost ? RETOLD_WITHIN_MS : this.lostAt + RETOLD_WITHIN_MS - Date.now();
      if (wait <= 0) return read;
      await new Promise((resolve) => setTimeout(resolve, wait));
      return await this.store.read(userIds);
    } catch {
      const hidden = await presenceRepository.hiddenAmong(this.em, userIds).catch(() => undefined);
      const now = Date.now();
      return { active: userIds.map((u) => (this.sockets.has(u) ? now : null)), hidden: userIds.map((u) => !hidden || hidden.has(u)) };
    }
  }

  private async resolve(userIds: string[], active: (number | null)[]): Promise<PresenceState[]> {
    const offline = userIds.filter((_, i) => active[i] === null);
    const stored = offline.length ? await userRepository.lastSeen(this.em, offline) : new Map<string, Date | null>();
    return userIds.map((userId, i) => {
      const a = active[i];
      return a === null
        ? { userId, status: 'OFFLINE' as const, lastSeenAt: stored.get(userId) ?? null }
        : { userId, status: 'ONLINE' as const, lastSeenAt: new Date(a) };
    });
  }

  /**
   * The onlineUsers connection, by user id, of the users the viewer may see; totalCount is how many
   * of those are online. `everyone` mode pages the store's online list (HIDDEN users are not in it);
   * `contacts` mode the viewer's online contacts (and themselves). `users` loads the page's profiles
   * (the operation's user loader); a user it does not find is left out.
   */
  async onlineUsers<U>(
    viewerId: string,
    args: PageArgs,
    users: (ids: string[]) => Promise<readonly (U | null | Error)[]>,
    given?: (name: keyof PageArgs) => boolean,
    cache: VisibilityCache = {},
  ): Promise<ConnectionShape<U & { id: string }>> {
    const { limit, backward, cursor: encoded, cursorField } = pageRequest(args, { def: 50, forward: true, given });
    const cursor = encoded ? decodeCursor(encoded, cursorField, undefined, 'online') : null;
    const from = cursor?.id ?? null;
    const online = (fromId: string | null, back: boolean, n: number) =>
      this.visibility.mode === 'everyone' ? this.onlineEveryone(viewerId, fromId, back, n, cache) : this.onlineContacts(viewerId, fromId, back, n, cache);
    const [ids, total] = await online(from, backward, limit + 1);
    const found = (await users(ids)).filter((u): u is U & { id: string } => !!u && !(u instanceof Error));
    // The cursor's user may have gone offline since: whether anyone is online on its side, they included.
    const cursorSide = cursorSideOf(cursor, { backward, ascending: true }, async (at, back) => (await online(at.id, back, 1))[0]);
    return toConnection(found, { limit, backward, hasCursor: !!cursor, cursorSide, totalCount: total, key: (u) => ({ k: u.id, id: u.id }), node: (u) => u, scope: 'online' });
  }

  /**
   * Everyone mode: a page of the online list (HIDDEN users are not in it) by id after `fromId` (or
   * before it, nearest first, when `backward`), less those a hiding rule keeps from the viewer;
   * totalCount likewise (see PresenceVisibility.hiddenFrom).
   */
  private async onlineEveryone(viewerId: string, fromId: string | null, backward: boolean, limit: number, cache: VisibilityCache): Promise<[string[], number]> {
    const [total, hiddenFrom] = await Promise.all([this.count(), this.visibility.hiddenFrom(viewerId)]);
    if (!hiddenFrom.size) return [await this.store.page(fromId, limit, backward), total];
    const out: string[] = [];
    for (let after = fromId; out.length < limit; ) {
      const ids = await this.store.page(after, limit, backward);
      // The rules' in-memory answer knows only viewers whose lists this instance holds: the set
      // read for the count decides for the page too, wherever the viewer is connected.
      const may = await this.visibility.visible(viewerId, ids, ids.map(() => false), cache);
      out.push(...ids.filter((id, i) => may[i] && !hiddenFrom.has(id)).slice(0, limit - out.length));
      if (ids.length < limit) break;
      after = ids[ids.length - 1];
    }
    const hiddenOnline = (await this.store.onlineOf([...hiddenFrom])).filter((u) => u !== viewerId).length;
    return [out, total - hiddenOnline];
  }

  /** Contacts mode: a page of the viewer's online contacts by id after `fromId` (before it, nearest first, when `backward`), and how many there are. */
  private async onlineContacts(viewerId: string, fromId: string | null, backward: boolean, limit: number, cache: VisibilityCache): Promise<[string[], number]> {
    const [contacts, hiddenFrom] = await Promise.all([this.visibility.contactsOf(viewerId, cache), this.visibility.hiddenFrom(viewerId)]);
    const online = await this.store.onlineOf([...contacts]);
    const may = await this.visibility.visible(viewerId, online, online.map(() => false), cache);
    // As in everyone mode: the rules' stored answer, for a viewer whose lists are held elsewhere or nowhere.
    const visible = online.filter((id, i) => may[i] && !hiddenFrom.has(id)).sort();
    const page = backward ? visible.filter((id) => fromId === null || id < fromId).reverse() : visible.filter((id) => fromId === null || id > fromId);
    return [page.slice(0, limit), visible.length];
  }

  /** Users online across all instances, HIDDEN ones left out (a metric, and everyone mode's totalCount). */
  count(): Promise<number> {
    return this.store.count();
  }

  /** The viewer's own presence visibility; another user's is theirs alone (FORBIDDEN). */
  async visibilityOf(em: EntityManager, viewerId: string, userId: string): Promise<'VISIBLE' | 'HIDDEN'> {
    if (viewerId !== userId) throw new ForbiddenError('Only the user themselves may read their presence visibility.');
    const v = await presenceRepository.presenceVisibilityOf(em, userId);
    if (!v) throw new NotFoundError('User');
    return v as 'VISIBLE' | 'HIDDEN';
  }

  /**
   * VISIBLE or HIDDEN. Hiding while online reads to everyone else as going OFFLINE (published, with
   * no lastSeenAt); showing again while online as coming ONLINE. The database holds the choice, the
   * store mirrors it, written first: a store that can't be reached refuses the change with nothing
   * changed (written second, its SERVICE_UNAVAILABLE came after the choice was stored; an outside probe).
   * Both under the user's row lock: calls at the same time on several instances wrote the two in
   * different orders, and a user stored HIDDEN read ONLINE to everyone (an outside probe, 30 at once).
   */
  async setVisibility(em: EntityManager, viewerId: string, visibility: string, sessionId: string | null = null): Promise<void> {
    if (visibility !== 'VISIBLE' && visibility !== 'HIDDEN') throw new BadUserInputError('visibility must be VISIBLE or HIDDEN.', 'visibility');
    const hidden = visibility === 'HIDDEN';
    // Hiding: the user's activity still queued (this request's own) is recorded once they are hidden,
    // and so announced to no one. Recorded first, a user OFFLINE until this request was told ONLINE,
    // then OFFLINE (an outside probe, 3 of 4). A batch already on its way is let land first.
    const held = hidden ? this.holdActivity(viewerId) : [];
    if (held.length) await this.recording;
    const changed = await em
      .transactional(async (tem) => {
        const was = await presenceRepository.lockPresenceVisibility(tem, viewerId);
        if (!was) throw new NotFoundError('User');
        if (was === visibility) return undefined;
        const shown = await this.store.setHidden(viewerId, hidden);
        // The mirror goes back when the database refuses (best effort: the next start mends it from the database).
        await presenceRepository.setPresenceVisibility(tem, viewerId, visibility).catch(async (e: unknown) => {
          await this.store.setHidden(viewerId, !hidden).catch(() => undefined);
          throw e;
        });
        return { shown };
      })
      .finally(() => this.requeue(held));
    if (!changed) return;
    const { shown } = changed;
    if (shown === null) {
      // OFFLINE in the store, yet this request is the user's activity. A HIDDEN user's OFFLINE
      // decided on another instance is not published, so this one's throttle still took their
      // last requests as recorded: shown again, they read OFFLINE to everyone, and no ONLINE was
      // told, until their next activity past the throttle (an outside probe). Recorded now.
      if (!hidden) await this.online(viewerId, sessionId);
      return;
    }
    await this.publish(
      hidden
        ? { userId: viewerId, status: 'OFFLINE', lastSeenAt: null, hiding: true, v: shown.v }
        : { userId: viewerId, status: 'ONLINE', lastSeenAt: new Date(shown.active).toISOString(), showing: true, v: shown.v },
    );
  }

  /**
   * Of a group's members `userIds`, those connected now whose presence `viewerId` may see (`@here`):
   * a mention, which the message shows every member, must not tell of a HIDDEN member or one the
   * visibility rule keeps from the viewer. In contacts mode only in a group whose members are all
   * contacts of each other (not the lobby, nor one over PRESENCE_GROUP_MAX): elsewhere the list
   * would show the viewer's contacts to members who are not theirs, so it names no one.
   */
  async connectedSeenBy(em: EntityManager, viewerId: string, groupId: string, userIds: string[]): Promise<string[]> {
    if (this.visibility.mode === 'contacts' && (await presenceRepository.scopeMayMakeContacts(em, 'group', groupId, this.env.PRESENCE_GROUP_MAX, 0)) !== true) return [];
    // Now: a socket closed here no longer counts (its grace is for other instances, which can't tell a close from a reload here).
    const connected = [...(await this.connected(userIds, undefined, true))];
    const { hidden } = await this.read(connected);
    const may = await this.visibility.visible(viewerId, connected, hidden);
    return connected.filter((_, i) => may[i]);
  }

  /**
   * Of `userIds`, those with a live socket or SSE stream on any instance: here, or listed by a live
   * instance in the store (a socket closed elsewhere leaves that list at the end of its grace period;
   * an instance that stopped beating, killed or cut off, lists none a few seconds on, nor for a user
   * once it was last heard from longer than `heardWithinMs` ago: for the tail, since a message was sent).
   * `here`: this instance's own sockets only as they are now, one closed here in its grace left out (@here).
   * @throws when the store cannot be reached (the caller must not take everyone for offline).
   */
  async connected(userIds: string[], heardWithinMs?: (userId: string) => number, here = false): Promise<Set<string>> {
    const out = new Set(userIds.filter((u) => this.sockets.has(u)));
    const rest = userIds.filter((u) => !out.has(u));
    const silent = this.beatEveryMs * BEATS_MISSED;
    const users = rest.map((userId) => ({ userId, heardWithinMs: Math.min(silent, heardWithinMs?.(userId) ?? silent) }));
    if (users.length) for (const u of await this.store.withSockets(users, Date.now(), here ? this.instanceId : undefined)) out.add(u);
    return out;
  }

  /**
   * Marks OFFLINE everyone idle for longer than PRESENCE_TIMEOUT who holds no live socket.
   * Safe to run anywhere at any time: removal is atomic, so two sweeps never publish one
   * transition twice. The cron job runs it once per tick across instances (see presence-sweep.job.ts).
   * With Redis the store publishes each OFFLINE as it removes the user; lastSeenAt is written right
   * after, batch by batch, overlapping the next removal (in steady state the interval flush has
   * written it already, and this write changes nothing).
   */
  async sweep(opts: { slot?: string | null; now?: number } = {}): Promise<SweepRun> {
    const started = Date.now();
    const now = opts.now ?? started;
    // Each batch's lastSeenAt goes to PostgreSQL while the store removes the next one.
    const writes: Promise<void>[] = [];
    const { removed } = await this.store.expire(now - this.timeoutMs, now, this.storeChannel, (batch) => {
      for (const r of batch) {
        this.touched.deleteUser(r.userId);
        this.dirty.delete(r.userId);
      }
      // The store's time, as the OFFLINE tells it: activity it skipped within touchEveryMs after
      // (the flush wrote each request's) would make a read after the event tell a later one (an outside probe).
      writes.push(
        this.persistLastSeen(batch.map((r) => [r.userId, r.lastActive]), this.touchEveryMs).catch((e) =>
          this.logger.warn({ err: e, users: batch.length }, 'lastSeenAt write after a sweep failed'),
        ),
      );
    }).then(async (res) => {
      if (!res.published) {
        // Published here, after lastSeenAt is written, as everywhere else (HIDDEN users' not at all).
        await Promise.all(writes);
        await Promise.all(res.removed.map((r) => r.v > 0 && this.publish({ userId: r.userId, status: 'OFFLINE', lastSeenAt: new Date(r.lastActive).toISOString(), v: r.v })));
      }
      return res;
    });
    await Promise.all(writes);
    const run = { slot: opts.slot ?? null, expired: removed.length, ms: Date.now() - started };
    this.sweeps.push(run);
    if (this.sweeps.length > 100) this.sweeps.shift();
    return run;
  }

  /** A lock shared by all instances (the sweep's tick); true for exactly one caller per key. */
  claim(key: string, ttlMs: number): Promise<boolean> {
    return this.store.claim(key, ttlMs);
  }

  /** Keeps users with a socket here ONLINE and tells other instances which users those are. */
  private refreshSockets(): Promise<void> {
    const run = this.refresh();
    this.refreshing = run;
    void run.finally(() => this.refreshing === run && (this.refreshing = undefined));
    return run;
  }

  private async refresh(): Promise<void> {
    const users = [...this.sockets.userIds()];
    const now = Date.now();
    for (const u of users) this.dirty.set(u, now);
    this.pruneTouched(now);
    // Listed too: users whose last socket here closed and whose grace still runs. The list is
    // written whole, and they were dropped from it at once: other instances read them gone before
    // their grace ended (@here, webhooks; an outside probe, 2 of 8 closes with a 2 s grace). Their
    // settling awaits this refresh (activityFirst), so it can't list them again after it.
    const inGrace = [...this.graceTimers.keys()].filter((u) => !this.sockets.has(u));
    try {
      await this.store.setInstanceSockets(this.instanceId, inGrace.length ? [...users, ...inGrace] : users, this.socketTtlMs);
      const cameOnline = await this.store.touch(users.map((userId) => ({ userId, sessionId: null, now })), 0);
      for (const { userId, v } of cameOnline) await this.announceOnline({ userId, status: 'ONLINE', lastSeenAt: new Date(now).toISOString(), v });
    } catch (e) {
      this.logger.debug({ err: e }, 'presence socket refresh failed');
    }
  }

  /** Forgets activity (and closes) older than PRESENCE_TIMEOUT: it neither throttles nor keeps anyone ONLINE. */
  private pruneTouched(now: number): void {
    this.touched.prune((at) => now - at >= this.timeoutMs);
    // A close never settled here (another instance held the user, then lapsed) keeps no one ONLINE
    // either; a logout the store could not take is the sweep's by then.
    for (const [userId, { at }] of this.closing) if (now - at >= this.timeoutMs) this.closing.delete(userId);
    this.unsettledLogouts.prune((at) => now - at >= this.timeoutMs);
    this.absentLogouts.prune((at) => now - at >= this.timeoutMs);
  }

  /**
   * Activity told again to a store that lost it (see tellAgain), through the batch as any: a logout
   * meanwhile drops it (endingSession) or waits for it. Its throttle entry is what this instance
   * last wrote, unless newer activity was written since; a quiet one's is none: no activity of its
   * user's, it would be told again as theirs by the next telling, and announced.
   */
  private recordAgain(active: Activity[]): void {
    if (!active.length) return;
    for (const a of active) {
      const session = a.sessionId ?? '';
      if (!a.quiet && (this.touched.get(a.userId, session) ?? -Infinity) < a.now) this.touched.set(a.userId, session, a.now);
      this.touchQueue.push({ ...a, done: () => undefined });
    }
    this.touchTimer ??= setTimeout(() => void this.recordActivity(), TOUCH_BATCH_MS).unref();
  }

  /**
   * The activity this instance wrote to the store within PRESENCE_TIMEOUT, as it wrote it, and its
   * users whose last socket here closed, or who logged out here, unsettled (see closing) as active
   * then: settled after it (a close or logout settled already with no record of its user is settled
   * again), they go OFFLINE, announced, rather than never having come back ONLINE. Those are quiet (see Activity.quiet).
   */
  private activityWritten(now = Date.now()): Activity[] {
    const out: Activity[] = [];
    for (const [userId, session, at] of this.touched.entries()) if (now - at < this.timeoutMs) out.push({ userId, sessionId: session || null, now: at });
    for (const [userId, { at, ended }] of this.closing) {
      if (now - at >= this.timeoutMs || this.sockets.has(userId) || this.settling.has(userId)) continue;
      out.push({ userId, sessionId: null, now: at, quiet: true });
      // A grace period under way, or a later ask, settles it already.
      if (!this.graceTimers.has(userId) && !this.reasks.has(userId)) this.unsettled.set(userId, { closedAt: at, ended });
    }
    for (const [userId, sessionId, at] of this.absentLogouts.entries()) this.unsettledLogouts.set(userId, sessionId, at);
    for (const [userId, , at] of this.unsettledLogouts.entries()) if (now - at < this.timeoutMs) out.push({ userId, sessionId: null, now: at, quiet: true });
    return out;
  }

  /**
   * Writes the lastSeenAt of everyone active since the last flush, in paced chunks: one statement
   * for every active user holds a PostgreSQL backend long enough that the sends committing
   * meanwhile wait behind it (delivery outliers). Stopping writes what is left without pauses.
   */
  private flushLastSeen(): Promise<void> {
    if (!this.dirty.size) return this.flushing ?? Promise.resolve();
    const batch = [...this.dirty.entries()];
    this.dirty.clear();
    const previous = this.flushing;
    const run = (async () => {
      await previous;
      for (let i = 0; i < batch.length; i += FLUSH_CHUNK) {
        if (i > 0 && !this.stopping) await new Promise((r) => setTimeout(r, FLUSH_PAUSE_MS));
        await this.persistLastSeen(batch.slice(i, i + FLUSH_CHUNK)).catch((e) => this.logger.warn({ err: e }, 'lastSeenAt flush failed'));
      }
    })();
    this.flushing = run;
    void run.finally(() => this.flushing === run && (this.flushing = undefined));
    return run;
  }

  /** Rows another transaction held were left (see recordLastSeen): the next flush writes them. */
  private async persistLastSeen(entries: [string, number][], backWithinMs = 0, deleted?: Set<string>): Promise<void> {
    const skipped = await userRepository.recordLastSeen(this.em, entries, backWithinMs, deleted);
    if (!skipped.length) return;
    const at = new Map(entries);
    for (const id of skipped) if ((this.dirty.get(id) ?? 0) < at.get(id)!) this.dirty.set(id, at.get(id)!);
  }

  /** An ONLINE transition, announced now, or once a loss of the store's data learned lately is mended (see ANNOUNCE_AFTER_LOSS_MS). */
  private announceOnline(p: PresencePayload): Promise<void> {
    const wait = this.lostAt + ANNOUNCE_AFTER_LOSS_MS - Date.now();
    if (wait <= 0 || this.stopping) return this.publish(p);
    const timer = setTimeout(() => {
      this.announcing.delete(timer);
      void this.publish(p);
    }, wait);
    timer.unref();
    this.announcing.set(timer, p);
    return Promise.resolve();
  }

  private async publish(p: PresencePayload): Promise<void> {
    await this.pubsub.publishSafe(Topic.PresenceChanged, p);
  }

  async dispose(): Promise<void> {
    // Other instances count the users whose sockets this stop closed (a deploy's 1001) as connected
    // for their grace period, as they count a socket closed anywhere: listed as none at once, the
    // message tail took clients reconnecting elsewhere for offline and sent webhooks of messages
    // they had seen live (an outside probe, 5 of 7 stops). No one else: this instance holds no
    // socket from now on. Its beat is forgotten, so the list counts for its lifetime: a last beat
    // counts only 4 s, short of a longer grace (a verification probe: PRESENCE_GRACE 10 s, 3 of 3).
    // The handoff below settles them after the grace.
    // The timers first: a beat or a refresh after these two calls would count the list 4 s only,
    // or list it again. One already sent goes before them (one connection keeps their order).
    for (const t of this.timers) clearInterval(t);
    const inGrace = [...new Set([...this.sockets.userIds(), ...this.graceTimers.keys()])];
    await this.store
      .setInstanceSockets(this.instanceId, inGrace, inGrace.length ? Math.max(1, this.env.PRESENCE_GRACE * 1000) : 1)
      .then(() => this.store.forgetBeat(this.instanceId))
      .catch(() => undefined);
    clearTimeout(this.settleRetry);
    this.stopping = true;
    // Not left unsaid by a stop: older than an OFFLINE delivered since, they are dropped as ever.
    const waiting = [...this.announcing];
    this.announcing.clear();
    for (const [t] of waiting) clearTimeout(t);
    await Promise.all(waiting.map(([, p]) => this.publish(p)));
    // Users whose last socket this instance just closed (a deploy's 1001) are still in their grace
    // period: another instance settles them after it, as this one would have (they reconnect there,
    // or go OFFLINE, announced). With none left (the whole fleet stopping), the sweep does.
    const closing = [...new Set([...this.graceTimers.keys(), ...this.reasks.keys()])];
    for (const t of this.graceTimers.values()) clearTimeout(t);
    for (const r of this.reasks.values()) clearTimeout(r.timer);
    this.graceTimers.clear();
    this.reasks.clear();
    this.off.forEach((f) => f());
    await Promise.all([this.activityFirst(), this.flushLastSeen()]);
    if (this.pubsub.kind === 'redis') {
      const closedAt = Date.now();
      for (let i = 0; i < closing.length; i += HANDOFF_CHUNK) {
        await this.pubsub.publishSafe(Topic.PresenceHandoff, { instanceId: this.instanceId, userIds: closing.slice(i, i + HANDOFF_CHUNK), closedAt });
      }
      // Handoffs this instance took and has not settled yet (a rollout stopping it within the grace) go on to another.
      for (const p of this.handoffs.values()) await this.pubsub.publishSafe(Topic.PresenceHandoff, { ...p, hops: (p.hops ?? 0) + 1 });
    }
    this.handoffs.clear();
    // Rows another transaction held were left for a next flush (recordLastSeen), and none comes
    // after this one: a few more tries while such a transaction (a friend request) ends, once the
    // handoffs above went out (they must not wait on it).
    for (let pause = 20; this.dirty.size && pause <= 320; pause *= 2) {
      await new Promise((r) => setTimeout(r, pause));
      await this.flushLastSeen();
    }
    if (this.dirty.size) this.logger.warn({ users: this.dirty.size }, 'presence: lastSeenAt of users whose rows stayed locked through the stop was not written');
  }

  /**
   * A stopping instance's users in their grace period (see dispose): one live instance takes each
   * handoff and, after the grace, settles every user as afterGrace would, for that instance.
   */
  private async takeOver(p: PresenceHandoffPayload): Promise<void> {
    if (p.instanceId === this.instanceId || this.stopping) return;
    try {
      if (!(await this.store.claim(`handoff:${p.instanceId}:${p.closedAt}:${p.userIds[0] ?? ''}:${p.hops ?? 0}`, (this.env.PRESENCE_GRACE + 60) * 1000))) return;
    } catch {
      return;
    }
    // A grace period from now; passed on, what is left of it since the sockets closed.
    const timer = setTimeout(() => {
      this.timers.splice(this.timers.indexOf(timer), 1);
      this.handoffs.delete(timer);
      if (this.stopping) return;
      void (async () => {
        await this.activityFirst().catch(() => undefined);
        for (const userId of p.userIds) {
          if (this.sockets.has(userId)) continue;
          try {
            const gone = await this.store.socketsGone(userId, { instanceId: p.instanceId, closedAt: p.closedAt, now: Date.now() });
            if (typeof gone === 'object') this.askAgainOnceLapsed(userId, p.closedAt, gone.heldUntil);
            else if (gone && gone !== ABSENT) await this.offline(userId, p.closedAt, gone);
          } catch (e) {
            this.logger.warn({ err: e, userId }, 'presence: could not settle a user of a stopped instance; the sweep will');
          }
        }
      })();
    }, p.hops ? Math.max(0, p.closedAt + this.env.PRESENCE_GRACE * 1000 - Date.now()) : this.env.PRESENCE_GRACE * 1000);
    timer.unref();
    this.timers.push(timer);
    this.handoffs.set(timer, p);
  }
}
