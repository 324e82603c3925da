import type { Viewer } from '../modules/auth/auth.viewer';
import { bearerToken } from '../core/http';
import { OFF_REDIS_RESYNC_MS, type Services } from '../modules/services';
import { Topic } from '../shared/pubsub/topics';
import { SocketContext } from './context';

/** Longest a timer can wait (setTimeout's limit is about 24.8 days; tokens live longer). */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Expiry sweeps run at most this often, however many tokens expire apart. */
const SWEEP_MIN_INTERVAL_MS = 1000;
/** How often open sessions are checked against the database, for revocations whose publish never came. */
const RECHECK_MS = 60_000;

/** Why a session ends from the server's side. */
export type SessionEnd = 'expired' | 'revoked';

/** The transport's side of a session: the socket or stream it ends in its own protocol's way. */
export interface SessionOwner {
  /** Its token expired or was revoked: a socket closes with 4403, a stream sends an UNAUTHENTICATED error and completes. */
  endSession(why: SessionEnd): void;
}

/**
 * Realtime sessions per user on this instance, WebSockets and SSE streams together, so
 * WS_MAX_SOCKETS_PER_USER caps both and mixing transports doesn't double it. A count is all the
 * limit needs (a session lives on one instance, so memory is enough).
 */
export class SessionsPerUser {
  private readonly counts = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Counts one more session of `userId`; false, and nothing counted, when the user is at the limit. */
  add(userId: string): boolean {
    const mine = this.counts.get(userId) ?? 0;
    if (mine >= this.max) return false;
    this.counts.set(userId, mine + 1);
    return true;
  }

  /** Releases one counted by add(). */
  remove(userId: string): void {
    const mine = (this.counts.get(userId) ?? 1) - 1;
    if (mine > 0) this.counts.set(userId, mine);
    else this.counts.delete(userId);
  }
}

/**
 * The connection lifecycle every realtime transport shares (WebSocket and SSE alike):
 * authentication, the per-user cap, token expiry (one timer for every session, armed for the
 * earliest expiry), revocation (a revoked token ends every session opened with it, on every
 * instance), presence and the membership index. A transport starts a session for an
 * authenticated viewer and opens it when the connection begins to carry subscriptions.
 */
export class RealtimeSessions {
  private readonly open = new Set<RealtimeSession>();
  private readonly perUser: SessionsPerUser;
  private expiryTimer: NodeJS.Timeout | undefined = undefined;
  private nextExpiry = Infinity;
  private lastSweep = 0;
  private readonly offRevoked: () => void;
  private readonly offReconnect: () => void;
  private readonly recheckTimer: NodeJS.Timeout;
  private readonly stopRecheckingOff: () => void;

  constructor(
    readonly services: Services,
    /** Sessions one user may hold open on this instance (WS_MAX_SOCKETS_PER_USER). */
    maxPerUser: number,
    /** How long a session may take to open (its memberships, its channels subscribed) before its client is told to try again (REALTIME_OPEN_TIMEOUT). */
    readonly openTimeoutMs = 10_000,
  ) {
    this.perUser = new SessionsPerUser(maxPerUser);
    this.offRevoked = services.pubsub.on(Topic.SessionsRevoked, (p) => this.revoke(p.tokenHashes));
    // A revocation travels over Redis: one published while this instance was cut off from it never
    // comes (a logged-out token's socket stayed open for good; an outside probe). Back on Redis,
    // every open session is checked (the auth cache is dropped by AuthService); and now and then
    // anyway (a publish lost on the way).
    this.offReconnect = services.pubsub.onReconnect(() => void this.recheck());
    this.recheckTimer = setInterval(() => void this.recheck(), RECHECK_MS).unref();
    // And every few seconds while off Redis, as memberships and block lists are read: a stolen
    // token revoked on another instance kept its socket here, receiving, until Redis was back (an outside probe).
    this.stopRecheckingOff = services.pubsub.whileOff(OFF_REDIS_RESYNC_MS, () => this.recheck());
  }

  /** Ends the open sessions whose token is no longer stored (revoked while its revocation could not reach this instance). */
  async recheck(): Promise<void> {
    if (!this.open.size) return;
    const hashes = [...new Set([...this.open].map((s) => s.viewer.tokenHash))];
    let stored: Set<string>;
    try {
      stored = await this.services.auth.stillStored(hashes);
    } catch {
      return; // the database is away: the next round asks again
    }
    this.revoke(hashes.filter((h) => !stored.has(h)));
  }

  /**
   * The viewer of a bearer token (as sent: `Bearer …` or bare), or of a stream ticket from
   * `mutation { streamTicket }`; null when neither stands for a live session.
   * @throws when the database or Redis is away (the caller decides: 503, or a refused socket).
   */
  async authenticate(credentials: { authorization?: unknown; ticket?: string | null }): Promise<Viewer | null> {
    const token = bearerToken(credentials.authorization);
    if (token) return this.services.auth.authenticate(token);
    const tokenHash = credentials.ticket ? await this.services.tickets.redeem(credentials.ticket) : null;
    return tokenHash ? this.services.auth.sessionOf(tokenHash) : null;
  }

  /**
   * Whether `viewer`'s session still stands, asked once its connection is admitted: a revocation
   * ends the sessions admitted when it arrives, so one revoked between the connection's
   * authentication and its admission (a request body sent slowly) is caught here. A cache lookup
   * unless it was revoked.
   */
  async stillValid(viewer: Viewer): Promise<boolean> {
    return !!(await this.services.auth.sessionOf(viewer.tokenHash));
  }

  /** A session of `viewer` over `owner`'s connection; it holds nothing until opened. */
  start(owner: SessionOwner, viewer: Viewer, ip: string, origin: string | undefined): RealtimeSession {
    return new RealtimeSession(this, owner, viewer, ip, origin);
  }

  /** Counts `session` for its user; false, and nothing counted, at the limit. Called by RealtimeSession.open. */
  admit(session: RealtimeSession): boolean {
    if (!this.perUser.add(session.viewer.userId)) return false;
    this.open.add(session);
    this.watchExpiry(session.viewer.expiresAt);
    return true;
  }

  /** Releases what admit counted. */
  release(session: RealtimeSession): void {
    this.open.delete(session);
    this.perUser.remove(session.viewer.userId);
  }

  dispose(): void {
    this.offRevoked();
    this.offReconnect();
    this.stopRecheckingOff();
    clearInterval(this.recheckTimer);
    clearTimeout(this.expiryTimer);
  }

  private revoke(tokenHashes: readonly string[]): void {
    const hashes = new Set(tokenHashes);
    for (const s of this.open) {
      if (!hashes.has(s.viewer.tokenHash)) continue;
      s.revoked = true;
      s.owner.endSession('revoked');
    }
  }

  /** Arms the one timer for `at` if it is the earliest expiry yet. */
  private watchExpiry(at: number): void {
    if (at >= this.nextExpiry) return;
    this.nextExpiry = at;
    clearTimeout(this.expiryTimer);
    const now = Date.now();
    const delay = Math.max(at - now, this.lastSweep + SWEEP_MIN_INTERVAL_MS - now, 0);
    this.expiryTimer = setTimeout(() => this.sweep(), Math.min(delay, MAX_TIMER_MS));
    this.expiryTimer.unref();
  }

  /** Ends every session whose token has expired, and arms the timer for the next expiry. */
  private sweep(): void {
    const now = (this.lastSweep = Date.now());
    this.nextExpiry = Infinity;
    this.expiryTimer = undefined;
    let next = Infinity;
    for (const s of this.open) {
      const at = s.viewer.expiresAt;
      if (at <= now) s.owner.endSession('expired');
      else if (at < next) next = at;
    }
    if (next < Infinity) this.watchExpiry(next);
  }
}

/**
 * One authenticated realtime connection: a WebSocket after connection_init, or an SSE request.
 * Opened (counted for its user, a live socket for presence, its memberships tracked so this
 * instance receives its conversations' channels) when it starts carrying subscriptions; close()
 * undoes whatever was done, whenever the connection goes.
 */
export class RealtimeSession {
  /** The context of its subscriptions: each event is executed with its own EntityManager and loaders. */
  readonly context: SocketContext;
  /** Admitted by the sessions: counted for its user and a presence socket; released by close(). */
  private admitted = false;
  /** Holds a reference in the membership index. */
  private tracked = false;
  private closed = false;
  /** Counted as a presence socket (from open(), or once its subscription started: see presenceLater). */
  private inPresence = false;
  /**
   * A stream's session counts for presence once its subscription started (present()): a request
   * refused (not a member, a bad variable) carried none, and its close took an active user OFFLINE
   * at the end of its grace (an outside probe, twice). A WebSocket counts from its open.
   */
  presenceLater = false;
  /** Its token was revoked (a logout, the account deleted): its socket won't be back, so presence has no grace to give it. */
  revoked = false;

  constructor(
    private readonly sessions: RealtimeSessions,
    readonly owner: SessionOwner,
    readonly viewer: Viewer,
    readonly ip: string,
    /** The public origin the client reached (absolute attachment links). */
    readonly origin: string | undefined,
  ) {
    this.context = new SocketContext(sessions.services, viewer, ip, true, origin);
  }

  /** A context of its own for one query or mutation, as over HTTP. */
  operationContext(): SocketContext {
    return new SocketContext(this.sessions.services, this.viewer, this.ip, false, this.origin);
  }

  /** Its token expired (the sweep that ends it may not have run yet): nothing more runs on it. */
  get expired(): boolean {
    return this.viewer.expiresAt <= Date.now();
  }

  /** Activity: keeps the user online. */
  touch(): void {
    void this.sessions.services.presence.touch(this.viewer.userId, this.viewer.sessionId);
  }

  /**
   * open(), or 'late' when it takes longer than REALTIME_OPEN_TIMEOUT (Redis slow to answer its
   * channels): the transport then tells the client to try again, and its close undoes the rest.
   */
  async openInTime(): Promise<boolean | 'late'> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => void (timer = setTimeout(r, this.sessions.openTimeoutMs, 'late')).unref());
    return Promise.race([this.open(), late]).finally(() => clearTimeout(timer));
  }

  /**
   * Counts the session for its user, opens a presence socket and tracks the user's memberships;
   * resolves once this instance receives the user's channels, so nothing published after it is
   * missed (off Redis, at once: what is published meanwhile is read back when it returns, see
   * PubSub.take). False, holding nothing, when the user has as many sessions as allowed. A failed load
   * releases its own reference (and throws); close() releases the rest.
   */
  async open(): Promise<boolean> {
    // Gone already (during the authentication or a rate check): nothing to hold.
    if (this.closed) return true;
    const { userId, sessionId } = this.viewer;
    if (!this.sessions.admit(this)) return false;
    this.admitted = true;
    const { presence, memberships, safety } = this.sessions.services;
    if (!this.presenceLater) this.present();
    // Its block list and mutes load with its memberships: the subscription filters read them from
    // memory. Contacts mode: the user's contacts and their presence channels, taken alongside.
    const contacts = presence.visibility.contacts;
    const [tracked, held, seen] = await Promise.allSettled([memberships.track(userId), safety.track(userId), contacts?.track(userId)]);
    if (tracked.status === 'fulfilled' && held.status === 'fulfilled' && seen.status === 'fulfilled' && !this.closed) {
      this.tracked = true;
      return true;
    }
    if (tracked.status === 'fulfilled') memberships.untrack(userId);
    if (held.status === 'fulfilled') safety.untrack(userId);
    if (seen.status === 'fulfilled') contacts?.untrack(userId);
    if (tracked.status === 'rejected') throw tracked.reason;
    if (held.status === 'rejected') throw held.reason;
    if (seen.status === 'rejected') throw seen.reason;
    return true;
  }

  /** Counts the session as a presence socket of its user (once, while admitted). */
  present(): void {
    if (this.inPresence || !this.admitted || this.closed) return;
    this.inPresence = true;
    this.sessions.services.presence.socketOpened(this.viewer.userId, this.viewer.sessionId);
  }

  /** The connection went: releases what open() took (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.admitted) return;
    this.admitted = false;
    this.sessions.release(this);
    const { userId, sessionId } = this.viewer;
    const { presence, memberships } = this.sessions.services;
    if (this.tracked) {
      memberships.untrack(userId);
      this.sessions.services.safety.untrack(userId);
      presence.visibility.contacts?.untrack(userId);
    }
    if (this.inPresence) presence.socketClosed(userId, sessionId, this.revoked);
  }
}
