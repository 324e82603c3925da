import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Env, RateSpec } from '../config/env';
import { GraphQLError } from 'graphql';
import { RateLimitedError } from './errors';
import type { RedisClient } from './redis';

/**
 * A counter of `points` per `duration` seconds per key: in Redis when it is configured (so it
 * holds across instances), in this process otherwise, and in this process while Redis is away
 * (rather than refusing, or allowing, everything).
 */
export function createLimiter(keyPrefix: string, points: number, duration: number, redis?: RedisClient): RateLimiterAbstract {
  const opts = { keyPrefix, points, duration };
  return redis
    ? new RateLimiterRedis({ ...opts, storeClient: redis, useRedisPackage: false, insuranceLimiter: new RateLimiterMemory(opts) })
    : new RateLimiterMemory(opts);
}

/**
 * Fixed windows per key in this process, as RateLimiterMemory counts them (a window starts at a
 * key's first action), without its timer and promises per call: ~25 us of a typing refresh's
 * ~300 went there. Windows that ended are swept when the map has doubled since the last sweep.
 */
class LocalWindows {
  private readonly windows = new Map<string, { start: number; used: number }>();
  private sweepAt = 1024;

  constructor(
    private readonly points: number,
    private readonly ms: number,
    private readonly countRefused = false,
  ) {}

  /** Counts one action (or `units` of a quantity): 0 when within the rate, else the ms until the key's window ends. */
  take(key: string, now = Date.now(), units = 1): number {
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.ms) {
      if (!w && this.windows.size >= this.sweepAt) this.sweep(now);
      this.windows.set(key, (w = { start: now, used: 0 }));
    }
    if (w.used + units <= this.points) {
      w.used += units;
      return 0;
    }
    // Refused: counted only where what is refused spends too (LocalQuota). A rate's refused call
    // spends nothing, as in Redis, so that a point given back is one the next call can take.
    if (this.countRefused) w.used += units;
    return w.start + this.ms - now;
  }

  /** Gives back one action `take` counted, while its window lasts. */
  giveBack(key: string, now = Date.now()): void {
    const w = this.windows.get(key);
    if (w && now - w.start < this.ms && w.used > 0) w.used--;
  }

  private sweep(now: number): void {
    for (const [key, w] of this.windows) if (now - w.start >= this.ms) this.windows.delete(key);
    this.sweepAt = Math.max(1024, this.windows.size * 2);
  }
}

/** A lease is at most this share of the points left in Redis (1/16): close to the limit, one point at a time. */
const LEASE_SHARE = 16;
/** At most this many points per lease. */
const LEASE_MAX = 64;
const LEASE_SCRIPT = 'rateLeases';
const GIVE_BACK_SCRIPT = 'rateGiveBack';
/** One point back to a key's counter in Redis, if its window still holds one. */
const GIVE_BACK = `
local used = tonumber(redis.call('GET', KEYS[1]))
if used and used > 0 then return redis.call('DECR', KEYS[1]) end
return 0`;

/**
 * Takes a lease of points for each of its keys in one round trip, on the counter
 * rate-limiter-flexible keeps (`<prefix>:<key>`, the points used in a window that starts at its
 * first action and expires with it), so instances of the previous release count on the same keys.
 * Several keys in one call only on a single Redis node (a cluster's keys may lie on other nodes).
 * ARGV: points, window ms, most points to lease. Returns, for each key in turn, the points granted
 * (0: none left) and the window's remaining ms.
 */
const LEASE = `
local out = {}
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], 0, 'PX', ARGV[2], 'NX')
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2]) ttl = tonumber(ARGV[2]) end
  local left = tonumber(ARGV[1]) - tonumber(redis.call('GET', KEYS[i]))
  local grant = 0
  if left > 0 then
    grant = math.max(1, math.min(math.floor(left / ${LEASE_SHARE}), tonumber(ARGV[3])))
    redis.call('INCRBY', KEYS[i], grant)
  end
  out[#out + 1] = grant
  out[#out + 1] = ttl
end
return out`;

/**
 * A rate of at least this many points a window lets a key's first action of a window on this
 * instance through before Redis has counted it (see LeasedPoints): one action over the limit per
 * instance and window at most, a third of a percent of the send limit's 300.
 */
const FIRST_ACTION_AHEAD_MIN_POINTS = 64;
/** How long leases taken behind first actions wait to go to Redis together. */
const BEHIND_BATCH_MS = 10;
/** The most keys one lease script takes. */
const LEASES_PER_SCRIPT = 1000;

/** What this instance holds of a key's window: points leased and not spent, until when; a lease on its way. */
interface Lease {
  left: number;
  until: number;
  /** The lease taken behind a first action, until Redis answers it. */
  pending?: Promise<void>;
}

/**
 * Points leased from Redis per key, spent here: a user sending at a pace asks Redis once per
 * lease, not once per action (that call was a Redis round trip before every send's statement).
 * Every point spent is counted in Redis: a lease is at most 1/16 of the points left (one point
 * when fewer than 32 are), so near the limit each action asks Redis again; an instance may refuse
 * while another still holds points it leased (at most 1/16 of what was left when it leased).
 * With `ahead` (a rate of FIRST_ACTION_AHEAD_MIN_POINTS or more), a key's first action of a window
 * on this instance does not wait for Redis: its lease is taken behind it, with the others of the
 * next BEHIND_BATCH_MS in one script, and that action is one of its points. Most senders send
 * once in a while, so this was one Redis round trip before most sends' statements (11% of
 * bench:rooms' rate, A/B). A key whose window is used up still gets that one action through on
 * each instance: at most one action over the limit per instance and window; a key Redis refused
 * is asked again before each action until its window ends. Exact (`ahead` off) for small rates.
 * While Redis is away, this process counts alone (as rate-limiter-flexible's insurance did).
 */
class LeasedPoints {
  private readonly leases = new Map<string, Lease>();
  /** Keys whose lease is being asked of Redis now, by an action that found none left (see take). */
  private readonly asking = new Map<string, Promise<number>>();
  private sweepAt = 1024;
  private readonly insurance: LocalWindows;
  /** Keys whose first action went ahead, waiting for their lease (see behind). */
  private queue: { key: string; resolve: (r: [number, number]) => void; reject: (e: unknown) => void }[] = [];
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly prefix: string,
    private readonly points: number,
    private readonly ms: number,
    private readonly redis: RedisClient,
    private readonly ahead = points >= FIRST_ACTION_AHEAD_MIN_POINTS,
  ) {
    if (!(LEASE_SCRIPT in redis)) redis.defineCommand(LEASE_SCRIPT, { lua: LEASE });
    if (!(GIVE_BACK_SCRIPT in redis)) redis.defineCommand(GIVE_BACK_SCRIPT, { numberOfKeys: 1, lua: GIVE_BACK });
    this.insurance = new LocalWindows(points, ms);
  }

  /** Counts one action: 0 when within the rate, else the ms until the key's window ends. */
  async take(key: string): Promise<number> {
    const now = Date.now();
    const lease = this.leases.get(key);
    if (lease && lease.until > now) {
      if (lease.left > 0) {
        lease.left--;
        return 0;
      }
      if (lease.pending) {
        await lease.pending;
        return this.take(key);
      }
    } else if (this.ahead) {
      this.goAhead(key, now);
      return 0;
    }
    // One lease asked of Redis per key at a time: the key's other actions wait for it and spend
    // from it. Asked each for its own, a burst's leases (1/16 of what was left, each) used up the
    // window in Redis while their points sat here, and the last of the burst were refused below
    // the rate (13 of 100 sends, four users sending at once through two instances).
    const asking = this.asking.get(key);
    if (asking) {
      await asking;
      return this.take(key);
    }
    const asked = this.ask(key, lease, now);
    this.asking.set(key, asked);
    try {
      return await asked;
    } finally {
      if (this.asking.get(key) === asked) this.asking.delete(key);
    }
  }

  /**
   * Gives back one action `take` counted: to the lease it came from while that lasts (this
   * instance holds the point again), else to the key's counter in Redis, which every instance
   * reads (a small rate's point is taken from Redis one at a time, and given back there); to this
   * process's count while Redis is away.
   */
  async giveBack(key: string): Promise<void> {
    const lease = this.leases.get(key);
    // A first action's lease on its way sets what is left when it comes: given back after it.
    if (lease?.pending) await lease.pending;
    const now = Date.now();
    if (lease && lease.until > now && this.leases.get(key) === lease) {
      lease.left++;
      return;
    }
    const giveBack = (this.redis as unknown as Record<string, (key: string) => Promise<number>>)[GIVE_BACK_SCRIPT];
    await giveBack.call(this.redis, `${this.prefix}:${key}`).catch(() => this.insurance.giveBack(key, now));
  }

  /** One action's lease from Redis (see take): 0 within the rate, else the ms until the window ends. */
  private async ask(key: string, lease: Lease | undefined, now: number): Promise<number> {
    let granted: number;
    let ttl: number;
    try {
      [[granted, ttl]] = await this.lease([key]);
    } catch {
      return this.insurance.take(key, now);
    }
    // The window as Redis said it is, from when it answered.
    const until = Date.now() + Math.max(1, ttl);
    if (granted <= 0) {
      // Known refused until its window ends: no action of it goes ahead before then.
      if (this.ahead) this.merge(key, lease, 0, until);
      return Math.max(1, ttl);
    }
    if (granted > 1 || this.ahead) this.merge(key, lease, granted - 1, until);
    return 0;
  }

  /**
   * Keeps `left` points of a lease Redis granted for `key` until `until`. What changed meanwhile
   * stays: a lease of a concurrent action of the same key adds up with this one; a newer one (a
   * first action of the next window gone ahead, its lease still on its way) keeps its own window
   * and gets the points, rather than being replaced by the older window's (which let a third action
   * go ahead in it).
   */
  private merge(key: string, before: Lease | undefined, left: number, until: number): void {
    const now = Date.now();
    const held = this.leases.get(key);
    if (held && held !== before && held.until > now) {
      held.left += left;
      return;
    }
    this.hold(key, { left: (held && held.until > now ? held.left : 0) + left, until }, now);
  }

  /** Leases for `keys` in one script: points granted and the window's ms left, for each. */
  private async lease(keys: string[]): Promise<[number, number][]> {
    const leases = (this.redis as unknown as Record<string, (n: number, ...a: (string | number)[]) => Promise<number[]>>)[LEASE_SCRIPT];
    const flat = await leases.call(this.redis, keys.length, ...keys.map((k) => `${this.prefix}:${k}`), this.points, this.ms, LEASE_MAX);
    return keys.map((_, i) => [Number(flat[2 * i]), Number(flat[2 * i + 1])]);
  }

  /**
   * A key's first action of a window here, let through: its lease is taken behind it, and the
   * key's next actions wait for that. Refused or unanswered, the key's actions are asked of Redis
   * (or, while it is away, counted here) until the window ends.
   */
  private goAhead(key: string, now: number): void {
    const lease: Lease = { left: 0, until: now + this.ms };
    lease.pending = this.behind(key).then(
      ([granted, ttl]) => {
        lease.left = Math.max(0, granted - 1);
        lease.until = Date.now() + Math.max(1, ttl);
        lease.pending = undefined;
      },
      () => {
        this.insurance.take(key, now);
        lease.pending = undefined;
      },
    );
    this.hold(key, lease, now);
  }

  /** A lease for `key` with the others asked within BEHIND_BATCH_MS: one script for them all. */
  private behind(key: string): Promise<[number, number]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ key, resolve, reject });
      this.flushTimer ??= setTimeout(() => this.flush(), BEHIND_BATCH_MS).unref();
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    this.flushTimer = undefined;
    // A cluster's keys lie on their own nodes: each is answered by its own, a node away fails only its keys.
    // One node: in chunks, so that one script never holds Redis long.
    const chunk = this.redis instanceof Redis ? LEASES_PER_SCRIPT : 1;
    for (let i = 0; i < batch.length; i += chunk) {
      const part = batch.slice(i, i + chunk);
      void this.lease(part.map((b) => b.key)).then(
        (replies) => part.forEach((b, j) => b.resolve(replies[j])),
        (e: unknown) => part.forEach((b) => b.reject(e)),
      );
    }
  }

  private hold(key: string, lease: Lease, now: number): void {
    if (this.leases.size >= this.sweepAt) this.sweep(now);
    this.leases.set(key, lease);
  }

  private sweep(now: number): void {
    // With `ahead`, a spent lease still says its key's first action of the window went by.
    for (const [key, l] of this.leases) if (!l.pending && (l.until <= now || (l.left <= 0 && !this.ahead))) this.leases.delete(key);
    this.sweepAt = Math.max(1024, this.leases.size * 2);
  }
}

/**
 * One rate: `points` actions per `duration` seconds per key. Counted in Redis when it is
 * configured, so the limit holds across instances (points leased, see LeasedPoints); in this
 * process otherwise.
 */
export class RateLimit {
  private readonly counter: { take(key: string): number | Promise<number>; giveBack(key: string): void | Promise<void> };

  constructor(
    readonly name: string,
    readonly spec: RateSpec,
    redis?: RedisClient,
  ) {
    this.counter = redis ? new LeasedPoints(`rl:${name}`, spec.points, spec.duration * 1000, redis) : new LocalWindows(spec.points, spec.duration * 1000);
  }

  /**
   * Counts one action for `key`.
   * @throws RateLimitedError with extensions.retryAfter (seconds) once the key has used its points.
   */
  async consume(key: string, message?: string): Promise<void> {
    const wait = await this.counter.take(key);
    if (wait > 0) throw new RateLimitedError(wait / 1000, message);
  }

  /**
   * As spend, for work that learns only inside (after its checks, in its transaction) whether it
   * makes the action: `work` calls `made` when it does (a join, not a member found already in), and
   * a call that never does gives its point back, refused or not; one that did keeps it, refused
   * after or not (a signup's taken name), whatever a deadlock's retry calls again. The point is
   * still taken before `work` runs, so past the limit RATE_LIMITED answers before the work looks at
   * what it asks (CONFIGURATION.md), as for spend: a spender taken at the decision answered an
   * unknown user, project or group first past the limit (an outside probe, 2 of 2).
   */
  spendWhenMade<T>(key: string, message: string, work: (made: () => void) => Promise<T>): Promise<T> {
    const made = { yes: false };
    return this.spend(key, message, () => work(() => void (made.yes = true)), undefined, made);
  }

  /**
   * Runs `work` as one action of `key`: RATE_LIMITED before it runs once the key has used its
   * points, and the point given back when `work` is refused for what it asks (bad input, not
   * found, forbidden, a conflict), so that such a call spends none: twenty `createGroup(name: "  ")`
   * left a good one RATE_LIMITED for an hour (a review). A failure of the service's own
   * (SERVICE_UNAVAILABLE, an unexpected error) keeps it: retries against a struggling database
   * stay limited. A call past the limit while calls of its key are under way here waits for those
   * and asks again: a point one of them holds may come back. Refused at once, a copy sent with its
   * first (a double submit) was told to wait an hour while the first alone was spent, the copy
   * itself a CONFLICT (an outside probe, 3 of 3). `made`: see spendWhenMade.
   */
  spend<T>(key: string, message: string, work: () => Promise<T>, retry?: { limited: () => Promise<T | null>; free: (r: T) => boolean }, made?: { yes: boolean }): Promise<T> {
    // Without async/await: this wraps every send, and each await is a promise more (execution.test counts them).
    const go = (ms: number, again: boolean): Promise<T> => {
      if (ms > 0) {
        // Again after each wait while calls are under way: copies woken together share the points
        // given back, and those left without one wait for the copies that took them (a fourth copy
        // of three was refused after one wait: an outside probe). And at once when a point came
        // back while Redis was being asked: its answer was from before (an outside probe: 7-16 of
        // 50 copies refused with a point free, the calls they waited for ended by then).
        const calls = this.keys.get(key);
        if (calls && calls.n > 0) return this.afterUnderWay(calls).then(() => this.take(key, go));
        if (again) return this.take(key, go);
      }
      // A call that writes nothing (a send's retry) costs nothing: past the limit it still gets what
      // `limited` finds (null: RATE_LIMITED), and under it its point comes back once `free` says so.
      if (ms > 0 && retry) return retry.limited().then((r) => (r === null ? Promise.reject(new RateLimitedError(ms / 1000, message)) : r));
      if (ms > 0) return Promise.reject(new RateLimitedError(ms / 1000, message));
      this.calls(key).n++;
      let running: Promise<T>;
      try {
        running = work();
      } catch (e) {
        // Thrown rather than rejected: still ended, or its key's refused calls would wait for it for good.
        running = Promise.reject(e);
      }
      return running.then(
        (r) => (retry?.free(r) || made?.yes === false ? Promise.resolve(this.counter.giveBack(key)).then(() => this.settled(key, r, true)) : this.settled(key, r, false)),
        async (e: unknown) => {
          const back = made ? !made.yes && refusal(e) : refusal(e);
          if (back) await this.counter.giveBack(key);
          throw this.settled(key, e, back);
        },
      );
    };
    return this.take(key, go);
  }

  /**
   * The counter's answer for one action of `key`, to `then` (at once when it has it), with
   * whether a point of the key came back while it was asked.
   */
  private take<R>(key: string, then: (ms: number, again: boolean) => R | Promise<R>): Promise<R> {
    const calls = this.calls(key);
    calls.asking++;
    const back = calls.back;
    const answer = (ms: number) => {
      calls.asking--;
      const again = ms > 0 && calls.back !== back;
      // Granted, the call starts on this same entry (spend's `n`): not dropped and made again a send.
      if (ms > 0) this.forget(key, calls);
      return then(ms, again);
    };
    const wait = this.counter.take(key);
    return typeof wait === 'number' ? Promise.resolve(answer(wait)) : wait.then(answer);
  }

  /**
   * Per key, while any is: its calls under way in `spend` here (their points held), its counts
   * being asked, how many calls have ended and how many gave their point back.
   */
  private readonly keys = new Map<string, KeyCalls>();

  private calls(key: string): KeyCalls {
    let calls = this.keys.get(key);
    if (!calls) this.keys.set(key, (calls = { n: 0, asking: 0, ended: 0, back: 0 }));
    return calls;
  }

  private forget(key: string, calls: KeyCalls): void {
    if (calls.n === 0 && calls.asking === 0 && !calls.waiting?.length) this.keys.delete(key);
  }

  /** One of `key`'s calls has ended, its point given back if `back`: `value` passed through. */
  private settled<V>(key: string, value: V, back: boolean): V {
    const calls = this.keys.get(key)!;
    calls.ended++;
    if (back) calls.back++;
    calls.n--;
    if (calls.waiting?.length) {
      const woken = calls.waiting.filter((x) => x.at <= calls.ended);
      calls.waiting = calls.waiting.filter((x) => x.at > calls.ended);
      for (const x of woken) x.wake();
    }
    this.forget(key, calls);
    return value;
  }

  /** Resolves once the calls under way now have ended (as many ends as there are calls now). */
  private afterUnderWay(calls: KeyCalls): Promise<void> {
    return new Promise((wake) => (calls.waiting ??= []).push({ at: calls.ended + calls.n, wake }));
  }
}

/** A key's calls in RateLimit.spend (see its `keys`). */
interface KeyCalls {
  n: number;
  asking: number;
  ended: number;
  back: number;
  /** Calls past the limit waiting for calls under way to end (made when the first waits). */
  waiting?: { at: number; wake: () => void }[];
}

/** Codes of a call refused for what it asks: it gives its rate's point back (RateLimit.spend). */
const REFUSALS = new Set(['BAD_USER_INPUT', 'NOT_FOUND', 'FORBIDDEN', 'CONFLICT', 'PAYLOAD_TOO_LARGE', 'RATE_LIMITED', 'UNAUTHENTICATED']);
const refusal = (e: unknown): boolean => e instanceof GraphQLError && REFUSALS.has(e.extensions?.code as string);

/** The rates checked at the edge, shared by HTTP and WebSocket operations. */
export interface Rates {
  /** sendMessage, per user. */
  sendMessage: RateLimit;
  /** signup, per client address. */
  signup: RateLimit;
  /** login attempts, per client address. */
  login: RateLimit;
  /** createGroup, per user. */
  createGroup: RateLimit;
  /** joinGroup and leaveGroup, per user. */
  groupMembership: RateLimit;
  /** sendFriendRequest, per user. */
  friendRequest: RateLimit;
  groupInvite: RateLimit;
  report: RateLimit;
  /** createProject, per user. */
  createProject: RateLimit;
  /** addProjectParticipant, per adder: only an add made counts. */
  projectAdd: RateLimit;
  /** editMessage and deleteMessage, per user. */
  edit: RateLimit;
  /** addReaction and removeReaction, per user. */
  reaction: RateLimit;
  /** searchMessages, per user. */
  search: RateLimit;
  /** setTyping, per user, on this instance. */
  typing: RateLimit;
  /** SSE stream requests, per user: each is one subscribe, counted as a WebSocket counts its messages. */
  streams: RateLimit;
  /** MiB of attachment data read as base64 in queries, per user, on this instance. */
  attachmentData: LocalQuota;
}

export function createRates(
  env: Pick<
    Env,
    | 'RATE_LIMIT_SEND_MESSAGE'
    | 'RATE_LIMIT_SIGNUP'
    | 'RATE_LIMIT_LOGIN'
    | 'RATE_LIMIT_CREATE_GROUP'
    | 'RATE_LIMIT_GROUP_MEMBERSHIP'
    | 'RATE_LIMIT_FRIEND_REQUEST'
    | 'RATE_LIMIT_GROUP_INVITE'
    | 'RATE_LIMIT_REPORT'
    | 'RATE_LIMIT_CREATE_PROJECT'
    | 'RATE_LIMIT_PROJECT_ADD'
    | 'RATE_LIMIT_EDIT'
    | 'RATE_LIMIT_REACTION'
    | 'RATE_LIMIT_SEARCH'
    | 'RATE_LIMIT_TYPING'
    | 'RATE_LIMIT_WS_MESSAGES'
    | 'RATE_LIMIT_ATTACHMENT_DATA'
  >,
  redis?: RedisClient,
): Rates {
  return {
    sendMessage: new RateLimit('send-message', env.RATE_LIMIT_SEND_MESSAGE, redis),
    signup: new RateLimit('signup', env.RATE_LIMIT_SIGNUP, redis),
    login: new RateLimit('login', env.RATE_LIMIT_LOGIN, redis),
    createGroup: new RateLimit('create-group', env.RATE_LIMIT_CREATE_GROUP, redis),
    groupMembership: new RateLimit('group-membership', env.RATE_LIMIT_GROUP_MEMBERSHIP, redis),
    friendRequest: new RateLimit('friend-request', env.RATE_LIMIT_FRIEND_REQUEST, redis),
    groupInvite: new RateLimit('group-invite', env.RATE_LIMIT_GROUP_INVITE, redis),
    report: new RateLimit('report', env.RATE_LIMIT_REPORT, redis),
    createProject: new RateLimit('create-project', env.RATE_LIMIT_CREATE_PROJECT, redis),
    projectAdd: new RateLimit('project-add', env.RATE_LIMIT_PROJECT_ADD, redis),
    edit: new RateLimit('edit', env.RATE_LIMIT_EDIT, redis),
    reaction: new RateLimit('reaction', env.RATE_LIMIT_REACTION, redis),
    search: new RateLimit('search', env.RATE_LIMIT_SEARCH, redis),
    // Counted per instance: a refresh every 2 s from every typist would otherwise add a Redis round
    // trip each, and what reaches others is bounded anyway (one event per 2 s, decided in Redis).
    typing: new RateLimit('typing', env.RATE_LIMIT_TYPING),
    streams: new RateLimit('sse-streams', env.RATE_LIMIT_WS_MESSAGES, redis),
    attachmentData: new LocalQuota(env.RATE_LIMIT_ATTACHMENT_DATA),
  };
}

/**
 * A quantity per window per key, counted in this process (attachment data, in MiB: what one
 * instance spends on it is what it limits). What is refused counts too, as a refused action does.
 */
export class LocalQuota {
  private readonly windows: LocalWindows;

  constructor(readonly spec: RateSpec) {
    this.windows = new LocalWindows(spec.points, spec.duration * 1000, true);
  }

  /** @throws RateLimitedError with extensions.retryAfter once `key` has used its window's quota. */
  spend(key: string, units: number, message: string): void {
    const wait = this.windows.take(key, Date.now(), units);
    if (wait > 0) throw new RateLimitedError(wait / 1000, message);
  }
}

/**
 * A fixed-window counter for one socket (a socket lives on one instance, so memory is enough).
 * `hit()` answers 'ok', 'limited' (over the rate: refuse operations) or 'abuse' (twice over: close).
 */
export class SocketRate {
  private windowStart = Date.now();
  private count = 0;

  constructor(private readonly spec: RateSpec) {}

  hit(now = Date.now()): 'ok' | 'limited' | 'abuse' {
    if (now - this.windowStart >= this.spec.duration * 1000) {
      this.windowStart = now;
      this.count = 0;
    }
    this.count++;
    if (this.count <= this.spec.points) return 'ok';
    return this.count > this.spec.points * 2 ? 'abuse' : 'limited';
  }

  /** Seconds until the window resets. */
  retryAfter(now = Date.now()): number {
    return Math.max(0, (this.windowStart + this.spec.duration * 1000 - now) / 1000);
  }
}
