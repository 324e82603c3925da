import { boundedLru } from '../../shared/lru';
import { hash, verify, type Algorithm } from '@node-rs/argon2';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import type { Viewer } from './auth.viewer';
import { BadUserInputError, ConflictError, UnauthenticatedError } from '../../shared/errors';
import { transact, type Outbox } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic } from '../../shared/pubsub/topics';
import type { PresenceService } from '../presence/presence.service';
import { User as UserEntity, type User } from '../user/user.entity';
import { deletedUsername, userRepository } from '../user/user.repository';
import { DELETED_DISPLAY_NAME, toUserPayload } from '../user/user.mapper';
import type { PasswordLimiter } from './auth.ratelimit';
import { sessionRepository } from './auth.repository';
import { hashToken, newToken } from './auth.tokens';
import { isUsername, mayBePassword, passwordForm, validateDisplayName, validatePassword, validateUsername } from './auth.validation';
import { isWellFormed } from '../../shared/validation';

/** New hashes' argon2id parameters (verify reads a stored hash's own): OWASP's baseline, 19 MiB, 2 passes, 1 lane; tests' minimal cost (PASSWORD_HASH_COST). */
const ARGON2 = {
  owasp: { algorithm: 2 as Algorithm, memoryCost: 19_456, timeCost: 2, parallelism: 1 },
  minimal: { algorithm: 2 as Algorithm, memoryCost: 1024, timeCost: 1, parallelism: 1 },
} as const;
const CACHE_TTL_MS = 60_000;
/** How long a revoked token is remembered for the operations still running with it (an HTTP request's or a socket's longest). */
const REVOKED_MEMORY_MS = 10 * 60_000;
/** Token hashes a recheck of open sessions asks the database about in one query. */
const STORED_BATCH = 1000;
const CACHE_MAX = 100_000;

/**
 * Whether `password` is the one `stored` hashes; a hash that is none (a deleted account's '!')
 * matches nothing. Composed first (passwordForm); as typed too when that differs, for a hash made
 * before passwords were composed.
 */
async function matches(stored: string, password: string): Promise<boolean> {
  // Half of a surrogate pair was never accepted (see validatePassword): hashed, it would become U+FFFD and match another.
  if (!isWellFormed(password)) return false;
  const composed = passwordForm(password);
  try {
    return (await verify(stored, composed)) || (composed !== password && (await verify(stored, password)));
  } catch {
    return false;
  }
}

/** Work another feature does when an account goes away, inside the same transaction. */
export type AccountDeletionHook = (em: EntityManager, userId: string, outbox: Outbox) => Promise<void>;
/** Work another feature does when an account is renamed, with the name before and after, inside the rename's transaction. */
export type RenameHook = (em: EntityManager, userId: string, from: string, to: string, outbox: Outbox) => Promise<void>;
/** Runs in a profile change's transaction when what others see as the user's name (display name, else username) changed. */
export type RetitleHook = (em: EntityManager, userId: string, title: string, outbox: Outbox) => Promise<void>;

export interface AuthResult {
  token: string;
  user: User;
  expiresAt: Date;
  sessionId: string;
}


export interface AuthOptions {
  orm: MikroORM;
  pubsub: PubSub;
  presence: PresenceService;
  /** Every password check goes through it. */
  limiter: PasswordLimiter;
  env: Pick<Env, 'TOKEN_TTL' | 'LOBBY_ADMINS' | 'MODERATORS' | 'PASSWORD_HASH_COST'>;
  /** Runs in the signup transaction (the lobby membership). */
  onSignup: (em: EntityManager, user: User, outbox: Outbox) => Promise<void>;
}

export class AuthService {
  /** tokenHash -> session, so a request costs no database round trip; revocations evict across instances. */
  private readonly cache = boundedLru<string, Viewer>({ max: CACHE_MAX, ttlMs: CACHE_TTL_MS });
  /**
   * Revocations this instance has heard (its own, others' by Redis, a reconnection's clear). A
   * session read from the database is cached only if none came while it was read: a read begun
   * before a logout's delete answered with the row after the revocation had emptied the cache, and
   * put the token back for the cache's minute (an outside probe: a logged-out token kept sending).
   */
  private revocations = 0;
  /**
   * Token hashes revoked lately, heard here, by when: an operation under way with one runs no
   * further root field (authChecker). A document's fields after its own `logout`, or after a
   * `logoutOtherSessions` elsewhere, ran with the revoked token (outside probes: a `joinGroup`
   * after `logout` joined; 10-14 of 15 aliased sends were stored after the revocation answered).
   */
  private readonly revokedLately = new Map<string, number>();
  private readonly deletionHooks: AccountDeletionHook[] = [];
  private readonly renameHooks: RenameHook[] = [];
  private readonly retitleHooks: RetitleHook[] = [];
  private off?: () => void;
  private dummyHash?: Promise<string>;

  private readonly orm: MikroORM;
  private readonly pubsub: PubSub;
  private readonly presence: PresenceService;
  private readonly limiter: PasswordLimiter;
  private readonly env: AuthOptions['env'];
  private readonly onSignup: AuthOptions['onSignup'];
  /** Lower-cased usernames LOBBY_ADMINS and MODERATORS name. */
  private readonly privileged: Set<string>;

  constructor(o: AuthOptions) {
    this.privileged = new Set([...o.env.LOBBY_ADMINS, ...o.env.MODERATORS]);
    this.orm = o.orm;
    this.pubsub = o.pubsub;
    this.presence = o.presence;
    this.limiter = o.limiter;
    this.env = o.env;
    this.onSignup = o.onSignup;
  }

  start(): void {
    const offRevoked = this.pubsub.on(Topic.SessionsRevoked, (p) => {
      this.revocations++;
      for (const h of p.tokenHashes) this.cache.delete(h);
      this.noteRevoked(p.tokenHashes);
    });
    // A revocation published while this instance was cut off from Redis never comes: back on it,
    // every cached session is read again from the database at its next use.
    const offReconnect = this.pubsub.onReconnect(() => {
      this.revocations++;
      this.cache.clear();
    });
    this.off = () => {
      offRevoked();
      offReconnect();
    };
  }

  onAccountDeleted(hook: AccountDeletionHook): void {
    this.deletionHooks.push(hook);
  }

  onRenamed(hook: RenameHook): void {
    this.renameHooks.push(hook);
  }

  onRetitled(hook: RetitleHook): void {
    this.retitleHooks.push(hook);
  }

  /** The viewer a token stands for, or null when it is unknown, revoked or expired. */
  async authenticate(token: string): Promise<Viewer | null> {
    if (token.length > 512) return null;
    return this.sessionOf(hashToken(token));
  }

  /** The viewer a stored token hash stands for (a redeemed stream ticket), or null when its session is revoked or expired. */
  async sessionOf(tokenHash: string): Promise<Viewer | null> {
    const now = Date.now();
    // Off Redis, a revocation made on another instance can't reach this cache: the database is asked
    // each time (a stolen token revoked elsewhere kept reading and sending here until Redis came back: an outside probe).
    const hit = this.pubsub.offRedis() ? undefined : this.cache.get(tokenHash);
    if (hit) {
      return hit.expiresAt > now ? { userId: hit.userId, sessionId: hit.sessionId, tokenHash, expiresAt: hit.expiresAt } : null;
    }
    const heard = this.revocations;
    const session = await sessionRepository.byTokenHash(this.orm.em.fork() as EntityManager, tokenHash);
    if (!session || session.expiresAt.getTime() <= now) {
      this.cache.delete(tokenHash);
      return null;
    }
    const entry = { userId: session.user.id, sessionId: session.id, tokenHash, expiresAt: session.expiresAt.getTime() };
    // A revocation since the read began may have taken this row away: this request goes on (it began before), the next one reads again.
    if (this.revocations === heard) this.cache.set(tokenHash, entry);
    return { userId: entry.userId, sessionId: entry.sessionId, tokenHash, expiresAt: entry.expiresAt };
  }

  /**
   * Of `tokenHashes`, those whose session is still stored, read from the database (a batch at a
   * time): a revocation published while Redis was away reached no other instance.
   */
  async stillStored(tokenHashes: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const em = this.orm.em.fork() as EntityManager;
    for (let i = 0; i < tokenHashes.length; i += STORED_BATCH) {
      for (const h of await sessionRepository.stored(em, tokenHashes.slice(i, i + STORED_BATCH))) out.add(h);
    }
    return out;
  }

  /**
   * `ip`: the address it came from, the account's first known one (see PasswordLimiter). `made`
   * says the call counts against that address's signup rate (RateLimit.spendWhenMade) once the
   * input is valid, before the name is looked up: a bad input spends nothing.
   */
  async signup(
    em: EntityManager,
    input: { username: string; password: string; displayName?: string | null },
    ip?: string,
    made: () => void = () => undefined,
  ): Promise<AuthResult> {
    const username = validateUsername(input.username);
    const password = validatePassword(input.password);
    const displayName = validateDisplayName(input.displayName);
    // A name taken spends as a signup does: it answers anyone, signed in or not, whether a name is held.
    made();
    if (await userRepository.usernameTaken(em, username)) throw new ConflictError('That username is taken.', 'username');
    const passwordHash = await hash(password, ARGON2[this.env.PASSWORD_HASH_COST]);
    try {
      const result = await transact(em, this.pubsub, async (tem, outbox) => {
        const user = await userRepository.insert(tem, { username, displayName, passwordHash });
        const issued = await this.issue(tem, user);
        // Last: it updates the lobby's row, which every signup waits on until the one before commits.
        await this.onSignup(tem, user, outbox);
        return issued;
      });
      await this.presence.online(result.user.id, result.sessionId);
      if (ip !== undefined) await this.limiter.signedUp(result.user.id, ip);
      return result;
    } catch (e) {
      // Two signups racing for one name: the unique index decides.
      if (e instanceof UniqueConstraintViolationException) throw new ConflictError('That username is taken.', 'username');
      throw e;
    }
  }

  /** Signs in; the account's live sockets elsewhere are told (sessionEvent NEW_LOGIN, with this request's user agent). */
  async login(em: EntityManager, username: string, password: string, ip: string, userAgent: string | null = null): Promise<AuthResult> {
    const invalid = () => new UnauthenticatedError('Invalid username or password.');
    if (typeof username !== 'string' || username.length > 64 || !mayBePassword(password)) throw invalid();
    // A name that could never have been registered is not looked up, but costs the same.
    const user = isUsername(username) ? await userRepository.findByUsername(em, username, true) : null;
    // Counted by id, so that deleteAccount's checks add to the same count; a name no one holds by name.
    const account = user?.id ?? `name:${username.toLowerCase()}`;
    await this.limiter.take(account, ip);
    // An unknown user costs the same hash as a wrong password, and gets the same answer.
    const ok = user ? await matches(user.passwordHash, password) : await verify(await this.dummy(), password).then(() => false);
    if (!user || !ok) throw invalid();
    await this.limiter.passed(account, ip);
    // Under the account's row lock: a deletion under way finishes first, and then no session is
    // issued for it (one issued meanwhile outlived the deletion, a working token of no account).
    const result = await em.transactional(async (tem) => {
      if (!(await userRepository.lockActive(tem as EntityManager, user.id))) throw invalid();
      return this.issue(tem as EntityManager, user);
    });
    await em.flush();
    await this.presence.online(user.id, result.sessionId);
    await this.pubsub.publishSafe(Topic.SessionEvent, { kind: 'NEW_LOGIN', userId: user.id, sessionId: result.sessionId, at: new Date().toISOString(), userAgent });
    return result;
  }

  /**
   * Of the names LOBBY_ADMINS and MODERATORS list, those no account holds: the first to sign up
   * under one gets its rights (or, retired, no one can: see userRepository.retire). Said at start.
   */
  async unheldPrivilegedNames(em: EntityManager): Promise<{ free: string[]; retired: string[] }> {
    const names = [...this.privileged];
    if (!names.length) return { free: [], retired: [] };
    const held = new Set<string>();
    const retired = new Set<string>();
    for (const r of await userRepository.privilegedHolders(em, names)) (r.retired ? retired : held).add(r.name);
    return { free: names.filter((n) => !held.has(n) && !retired.has(n)), retired: names.filter((n) => !held.has(n) && retired.has(n)) };
  }

  /** Revokes the token this request came with. */
  async logout(em: EntityManager, viewer: Viewer): Promise<boolean> {
    // Before the session's row goes (a round trip), so that the request's activity has less time to land first.
    await this.presence.endingSession(viewer.userId, viewer.sessionId);
    await sessionRepository.delete(em, viewer.sessionId);
    await this.revoked(viewer.userId, [viewer.sessionId], [viewer.tokenHash]);
    await this.presence.loggedOut(viewer.userId, viewer.sessionId);
    return true;
  }

  async updateProfile(em: EntityManager, viewer: Viewer, input: { username?: string | null; displayName?: string | null }): Promise<User> {
    let user!: User;
    let from = '';
    try {
      await transact(em, this.pubsub, async (tem, outbox) => {
        // The account's row first, as its deletion locks it: read and written unlocked, a rename
        // racing deleteAccount (another session, a token still cached elsewhere) gave the deleted
        // placeholder a real name, held for good (a review). Deleted meanwhile: the session went with it.
        if (!(await userRepository.lockForProfile(tem, viewer.userId))) throw new UnauthenticatedError();
        user = await userRepository.account(tem, viewer.userId);
        from = user.username;
        const shown = user.displayName;
        const titled = user.displayName || user.username;
        // Its own name again is no change (an account may hold a name made before today's rules).
        if (input.username !== undefined && input.username !== null && input.username !== user.username) {
          const username = validateUsername(input.username);
          const changed = username.toLowerCase() !== user.username.toLowerCase();
          // A name LOBBY_ADMINS or MODERATORS gives rights to is taken at signup only: a rename into it
          // would hand anyone those rights (the reports of others' direct messages among them).
          if (changed && (this.privileged.has(username.toLowerCase()) || (await userRepository.usernameTaken(tem, username)))) {
            throw new ConflictError('That username is taken.', 'username');
          }
          user.username = username;
        }
        // Likewise its own display name again (made before a rule refused one of its characters).
        if (input.displayName !== undefined && input.displayName !== user.displayName) user.displayName = validateDisplayName(input.displayName);
        // A privileged name given up is retired with the rename, in its transaction: else whoever
        // signed up under it first took its rights.
        if (user.username.toLowerCase() !== from.toLowerCase() && this.privileged.has(from.toLowerCase())) await userRepository.retire(tem, from);
        await tem.flush();
        // Copies of the profile other instances keep (a typist's) follow it: a rename's typing events went on naming the old one for a minute (an outside probe).
        if (user.username !== from || user.displayName !== shown) outbox.add(Topic.ProfileChanged, { user: toUserPayload(user) });
        // What follows from the name (the lobby role it gives) changes with it, or neither does:
        // after the commit, a failure left a renamed-away lobby admin their rights until a restart (a review).
        if (user.username !== from) for (const hook of this.renameHooks) await hook(tem, user.id, from, user.username, outbox);
        // The title of their direct conversations in their friends' sidebars (a friend's rename reached no row live: a probe).
        const title = user.displayName || user.username;
        if (title !== titled) for (const hook of this.retitleHooks) await hook(tem, user.id, title, outbox);
      });
    } catch (e) {
      if (e instanceof UniqueConstraintViolationException) throw new ConflictError('That username is taken.', 'username');
      throw e;
    }
    return user;
  }

  /**
   * Deletes the account: tokens, friendships and memberships go; the user row stays as
   * an anonymous placeholder so that past messages keep a sender.
   */
  async deleteAccount(em: EntityManager, viewer: Viewer, password: string, ip: string): Promise<boolean> {
    if (typeof password !== 'string' || !password.length) throw new BadUserInputError('Password is required.', 'password');
    // This request's own activity goes unwritten from the start: its batch would land during the
    // password's check, and a user OFFLINE until now was announced ONLINE, then OFFLINE deleted (an
    // outside probe: 6 of 6). A wrong password costs that one request's activity, nothing more
    // (its session's; the other sessions' are dropped once the account is gone, below).
    await this.presence.endingSession(viewer.userId, viewer.sessionId);
    const user = await this.checkPassword(em, viewer, password, ip);
    const sessions = await transact(em, this.pubsub, async (tem, outbox) => {
      // The account's row first: a login under way commits its session before these are read (and
      // revoked), or waits and then finds the account gone (see login). A deletion that waited on
      // another finds its own session revoked with the account: told so, not that it deleted it too.
      if (!(await userRepository.lockForProfile(tem, viewer.userId))) throw new UnauthenticatedError('This account was deleted.');
      // Its placeholder first, ahead of the events its deletion makes: a typist's end, told as it
      // leaves its groups, named the old username another account may take at once (an outside probe).
      outbox.add(Topic.ProfileChanged, { user: toUserPayload({ id: user.id, username: deletedUsername(user.id), displayName: DELETED_DISPLAY_NAME, createdAt: user.createdAt }) });
      const all = await sessionRepository.ofUser(tem, viewer.userId);
      for (const hook of this.deletionHooks) await hook(tem, viewer.userId, outbox);
      await sessionRepository.deleteAllOf(tem, viewer.userId);
      // Its name is free again, unless it gave rights (LOBBY_ADMINS, MODERATORS): those go to no one.
      if (this.privileged.has(user.username.toLowerCase())) await userRepository.retire(tem, user.username);
      await userRepository.anonymize(tem, viewer.userId);
      return all;
    });
    await this.presence.endingSession(viewer.userId, null);
    await this.revoked(viewer.userId, sessions.map((s) => s.id), sessions.map((s) => s.tokenHash));
    await this.presence.forget(viewer.userId);
    // Its check above just marked this address as the owner's: the addresses go with the account.
    await this.limiter.forget(viewer.userId);
    return true;
  }

  /**
   * Revokes every other token of the account (a phone lost, a token leaked): their sockets and
   * streams end on every instance, and their activity no longer keeps the user ONLINE. This one
   * stays. How many were revoked.
   */
  async logoutOthers(em: EntityManager, viewer: Viewer, password: string, ip: string): Promise<number> {
    await this.checkPassword(em, viewer, password, ip);
    // One at a time on the account's row, and only while the asking session stands: two sessions
    // asking at once each revoked the other, and the account was left with none, each told its own
    // stayed (an outside probe, 19 of 19).
    const gone = await em.transactional(async (tem) => {
      if (!(await userRepository.lockForProfile(tem, viewer.userId))) throw new UnauthenticatedError();
      if (!(await sessionRepository.stands(tem, viewer.sessionId))) throw new UnauthenticatedError('This session was logged out.');
      return sessionRepository.deleteOthersOf(tem, viewer.userId, viewer.sessionId);
    });
    if (!gone.length) return 0;
    await this.revoked(viewer.userId, gone.map((s) => s.id), gone.map((s) => s.token_hash));
    for (const s of gone) {
      await this.presence.endingSession(viewer.userId, s.id);
      await this.presence.loggedOut(viewer.userId, s.id);
    }
    // An expired session had ended already: gone with the rest, not counted as one this call ended (an outside probe).
    return gone.filter((s) => !s.expired).length;
  }

  /**
   * Forgets sessions expired for a day (a token is refused from its expiry on; the day keeps a
   * session that just ran out readable as expired rather than unknown in the meantime), at most
   * `limit` a call, oldest first: how many. Run once a sweep tick by one instance.
   */
  purgeExpired(limit = 1000): Promise<number> {
    return sessionRepository.purgeExpired(this.orm.em.fork() as EntityManager, new Date(Date.now() - 86_400_000), limit);
  }

  /** The viewer's account once `password` is its own; counted with logins, so a stolen token is no way around their limits. */
  private async checkPassword(em: EntityManager, viewer: Viewer, password: string, ip: string): Promise<User> {
    if (typeof password !== 'string' || !password.length) throw new BadUserInputError('Password is required.', 'password');
    const user = await userRepository.account(em, viewer.userId, true);
    await this.limiter.take(user.id, ip);
    if (!mayBePassword(password) || !(await matches(user.passwordHash, password))) throw new BadUserInputError('Password is incorrect.', 'password');
    await this.limiter.passed(user.id, ip);
    return user;
  }

  /** Whether the token was revoked since its operation began (see revokedLately): authChecker's question, one lookup. */
  revokedSince(tokenHash: string): boolean {
    return this.revokedLately.has(tokenHash);
  }

  private noteRevoked(tokenHashes: readonly string[]): void {
    const now = Date.now();
    // Oldest first (Map order): what no operation can still be running with goes.
    for (const [h, at] of this.revokedLately) {
      if (now - at < REVOKED_MEMORY_MS) break;
      this.revokedLately.delete(h);
    }
    for (const h of tokenHashes) {
      this.revokedLately.delete(h);
      this.revokedLately.set(h, now);
    }
  }

  private async revoked(userId: string, sessionIds: string[], tokenHashes: string[]): Promise<void> {
    this.revocations++;
    for (const h of tokenHashes) this.cache.delete(h);
    this.noteRevoked(tokenHashes);
    await this.pubsub.publishSafe(Topic.SessionsRevoked, { userId, sessionIds, tokenHashes });
  }

  private async issue(em: EntityManager, user: User): Promise<AuthResult> {
    const token = newToken();
    const expiresAt = new Date(Date.now() + this.env.TOKEN_TTL * 1000);
    const session = await sessionRepository.insert(em, { user: em.getReference(UserEntity, user.id), tokenHash: hashToken(token), expiresAt });
    return { token, user, expiresAt, sessionId: session.id };
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= hash('parley-dummy-password', ARGON2[this.env.PASSWORD_HASH_COST]);
    return this.dummyHash;
  }

  dispose(): void {
    this.off?.();
    this.cache.clear();
  }
}
