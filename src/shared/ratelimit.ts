import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Env, RateSpec } from '../config/env';
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
  ) {}

  /** Counts one action: 0 when within the rate, else the ms until the key's window ends. */
  take(key: string, now = Date.now()): number {
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.ms) {
      if (!w && this.windows.size >= this.sweepAt) this.sweep(now);
      this.windows.set(key, (w = { start: now, used: 0 }));
    }
    if (++w.used <= this.points) return 0;
    return w.start + this.ms - now;
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
const LEASE_SCRIPT = 'rateLease';

/**
 * Takes a lease of points for one key in one round trip, on the counter rate-limiter-flexible
 * keeps (`<prefix>:<key>`, the points used in a window that starts at its first action and
 * expires with it), so instances of the previous release count on the same key. ARGV: points,
 * window ms, most points to lease. Returns the points granted (0: none left) and the window's
 * remaining ms.
 */
const LEASE = `
redis.call('SET', KEYS[1], 0, 'PX', ARGV[2], 'NX')
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) ttl = tonumber(ARGV[2]) end
local left = tonumber(ARGV[1]) - tonumber(redis.call('GET', KEYS[1]))
if left <= 0 then return {0, ttl} end
local grant = math.max(1, math.min(math.floor(left / ${LEASE_SHARE}), tonumber(ARGV[3])))
redis.call('INCRBY', KEYS[1], grant)
return {grant, ttl}`;

/**
 * Points leased from Redis per key, spent here: a user sending at a pace asks Redis once per
 * lease, not once per action (that call was a Redis round trip before every send's statement).
 * Never more than `points` per window across instances: every point spent was counted in Redis
 * first. A lease is at most 1/16 of the points left (one point when fewer than 32 are), so near
 * the limit each action asks Redis again, as before; an instance may refuse while another still
 * holds points it leased (at most 1/16 of what was left when it leased), never let more through.
 * While Redis is away, this process counts alone (as rate-limiter-flexible's insurance did).
 */
class LeasedPoints {
  private readonly leases = new Map<string, { left: number; until: number }>();
  private sweepAt = 1024;
  private readonly insurance: LocalWindows;

  constructor(
    private readonly prefix: string,
    private readonly points: number,
    private readonly ms: number,
    private readonly redis: RedisClient,
  ) {
    if (!(LEASE_SCRIPT in redis)) redis.defineCommand(LEASE_SCRIPT, { numberOfKeys: 1, lua: LEASE });
    this.insurance = new LocalWindows(points, ms);
  }

  /** Counts one action: 0 when within the rate, else the ms until the key's window ends. */
  async take(key: string): Promise<number> {
    const now = Date.now();
    const lease = this.leases.get(key);
    if (lease && lease.left > 0 && lease.until > now) {
      lease.left--;
      return 0;
    }
    let granted: number;
    let ttl: number;
    try {
      const lease = (this.redis as unknown as Record<string, (k: string, ...a: number[]) => Promise<[number, number]>>)[LEASE_SCRIPT];
      [granted, ttl] = await lease.call(this.redis, `${this.prefix}:${key}`, this.points, this.ms, LEASE_MAX);
    } catch {
      return this.insurance.take(key, now);
    }
    if (granted <= 0) return Math.max(1, ttl);
    if (granted > 1) {
      if (this.leases.size >= this.sweepAt) this.sweep(now);
      // A lease taken meanwhile by a concurrent action of the same key: both stay spendable.
      const held = this.leases.get(key);
      const keep = held && held.until > now ? held.left : 0;
      this.leases.set(key, { left: keep + granted - 1, until: now + ttl });
    }
    return 0;
  }

  private sweep(now: number): void {
    for (const [key, l] of this.leases) if (l.until <= now || l.left <= 0) this.leases.delete(key);
    this.sweepAt = Math.max(1024, this.leases.size * 2);
  }
}

/**
 * One rate: `points` actions per `duration` seconds per key. Counted in Redis when it is
 * configured, so the limit holds across instances (points leased, see LeasedPoints); in this
 * process otherwise.
 */
export class RateLimit {
  private readonly counter: { take(key: string): number | Promise<number> };

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
}

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
    | 'RATE_LIMIT_EDIT'
    | 'RATE_LIMIT_REACTION'
    | 'RATE_LIMIT_SEARCH'
    | 'RATE_LIMIT_TYPING'
    | 'RATE_LIMIT_WS_MESSAGES'
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
    edit: new RateLimit('edit', env.RATE_LIMIT_EDIT, redis),
    reaction: new RateLimit('reaction', env.RATE_LIMIT_REACTION, redis),
    search: new RateLimit('search', env.RATE_LIMIT_SEARCH, redis),
    // Counted per instance: a refresh every 2 s from every typist would otherwise add a Redis round
    // trip each, and what reaches others is bounded anyway (one event per 2 s, decided in Redis).
    typing: new RateLimit('typing', env.RATE_LIMIT_TYPING),
    streams: new RateLimit('sse-streams', env.RATE_LIMIT_WS_MESSAGES, redis),
  };
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
