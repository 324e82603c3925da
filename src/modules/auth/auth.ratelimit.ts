import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { createLimiter } from '../../shared/ratelimit';
import type { RedisClient } from '../../shared/redis';
import { RateLimitedError } from '../../shared/errors';
import { boundedLru } from '../../shared/lru';

const WINDOW_SECONDS = 15 * 60;

/** How long an address the owner signed in from stays theirs for the account-wide limit. */
const KNOWN_SECONDS = 30 * 24 * 60 * 60;

interface Limit {
  limiter: RateLimiterAbstract;
  key: (account: string, ip: string) => string;
}

/**
 * Failed password checks, wherever a password is checked (login, deleteAccount), over 15 minutes.
 * As OWASP's authentication cheat sheet suggests, an account is limited per client address first
 * and from everywhere only at a much higher count, so a stranger who can name a user cannot lock
 * them out from their own address; each address has its own limit too. Counted in Redis when
 * configured, so the limits hold across instances. Only failures count (an attempt is taken
 * before its check and given back when the password was right). The account-wide limit holds
 * back new addresses only: one the owner signed in from in the last 30 days still gets its own
 * per-address allowance (ten addresses' wrong guesses used it up for everyone: an outside probe).
 */
export class PasswordLimiter {
  private readonly limits: Limit[];
  private readonly known: KnownAddresses;

  constructor(opts: { redis?: RedisClient; maxPerUserIp: number; maxPerUser: number; maxPerIp: number }) {
    this.limits = [
      { limiter: createLimiter('pw-fail-user-ip', opts.maxPerUserIp, WINDOW_SECONDS, opts.redis), key: (account, ip) => `${account}|${ip}` },
      { limiter: createLimiter('pw-fail-user', opts.maxPerUser, WINDOW_SECONDS, opts.redis), key: (account) => account },
      { limiter: createLimiter('pw-fail-ip', opts.maxPerIp, WINDOW_SECONDS, opts.redis), key: (_, ip) => ip },
    ];
    this.known = new KnownAddresses(opts.redis);
  }

  /**
   * Takes one attempt from every limit before the password is checked, as a failure, so that
   * checks running at once each hold theirs: read first and counted after the slow hash, 16 wrong
   * passwords in flight got 25 of 40 checked against a limit of 10 (an outside probe). A right
   * password gives it back (`passed`). `account` is the user's id, or for a name no one holds, the
   * name in lower case.
   * @throws RateLimitedError when any of the limits is used up (nothing is taken then).
   */
  async take(account: string, ip: string): Promise<void> {
    const keys = this.limits.map((l) => l.key(account, ip));
    // A refused consume counts too (rate-limiter-flexible adds before it compares): all given back below.
    const taken = await Promise.allSettled(this.limits.map((l, i) => l.limiter.consume(keys[i], 1)));
    const refusedBy = taken.map((r) => (r.status === 'rejected' && r.reason instanceof RateLimiterRes ? r.reason : undefined));
    const refused = refusedBy.filter((r) => r !== undefined);
    const failed = taken.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof RateLimiterRes));
    if (!refused.length && !failed) return;
    // Only the account-wide limit refused, and the owner signed in from here before: the attempt counts, and goes ahead.
    if (!failed && refused.length === 1 && refusedBy[1] && (await this.known.has(account, ip))) return;
    await this.giveBack(keys);
    if (failed) throw failed.reason;
    throw new RateLimitedError(Math.max(...refused.map((r) => r.msBeforeNext / 1000)), 'Too many wrong passwords; try again later.');
  }

  /** The password was right: the attempt is given back, the owner's own typos from this address are forgiven (the account-wide count keeps its failures), and the address is theirs for 30 days. */
  async passed(account: string, ip: string): Promise<void> {
    const keys = this.limits.map((l) => l.key(account, ip));
    await Promise.all([this.limits[0].limiter.delete(keys[0]), this.giveBack(keys, 1), this.known.add(account, ip)]);
  }

  /** The account signed up from `ip`: an address of the owner's from the start. */
  signedUp(account: string, ip: string): Promise<void> {
    return this.known.add(account, ip);
  }

  /** The account was deleted: the addresses it signed in from go with it (the failure counts lapse within their 15 minutes). */
  forget(account: string): Promise<void> {
    return this.known.forget(account);
  }

  /**
   * Gives one attempt back to each key that still holds one: a reward on a key whose window ended
   * meanwhile would open a new window below zero, one attempt more each time (timed to a window's
   * end, the limit of 2 let 7 through: the review of 87bc350).
   */
  private async giveBack(keys: string[], from = 0): Promise<void> {
    await Promise.all(
      this.limits.slice(from).map(async (l, i) => {
        const held = await l.limiter.get(keys[from + i]);
        if (held && held.consumedPoints > 0 && held.msBeforeNext > 0) await l.limiter.reward(keys[from + i], 1);
      }),
    ).catch(() => undefined);
  }
}

/**
 * Adds an address to an account's hash (field: the address; value: when it stops counting, in ms)
 * and keeps the hash that long; past 16 fields, drops the lapsed ones. ARGV: address, now, until, ttl.
 */
const KNOWN_ADD = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if redis.call('HLEN', KEYS[1]) > 16 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) <= tonumber(ARGV[2]) then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`;
const KNOWN_ADD_SCRIPT = 'pwKnownAdd';

/**
 * Addresses accounts signed in from, for 30 days: in Redis when configured, so every instance
 * knows them, and in this process too (what it saw itself still counts while Redis is away). One
 * hash an account (`pw-known:<account>`), so that deleting the account forgets its addresses: a key
 * an address (`pw-known:<account>|<address>`, before) could not be listed without scanning Redis,
 * and a deleted account's addresses stayed beside its id for 30 days (an outside soak probe). Not a
 * rate limiter's window: its memory store expires a key with a timer, and a timer past 2^31 ms
 * fires at once.
 */
class KnownAddresses {
  /** By account, as in Redis: each address with when it stops counting, so the account's deletion drops them at once (a walk of every entry held the event loop 28-105 ms at 100,000). */
  private readonly seen = boundedLru<string, Map<string, number>>({ max: 100_000, ttlMs: KNOWN_SECONDS * 1000 });

  constructor(private readonly redis?: RedisClient) {
    if (redis && !(KNOWN_ADD_SCRIPT in redis)) redis.defineCommand(KNOWN_ADD_SCRIPT, { numberOfKeys: 1, lua: KNOWN_ADD });
  }

  async add(account: string, ip: string): Promise<void> {
    const now = Date.now();
    const until = now + KNOWN_SECONDS * 1000;
    const mine = this.seen.get(account) ?? new Map<string, number>();
    mine.set(ip, until);
    if (mine.size > 16) for (const [known, lapse] of mine) if (lapse <= now) mine.delete(known);
    this.seen.set(account, mine);
    if (!this.redis) return;
    const add = (this.redis as unknown as Record<string, (key: string, ...args: (string | number)[]) => Promise<number>>)[KNOWN_ADD_SCRIPT];
    await add.call(this.redis, `pw-known:${account}`, ip, now, until, KNOWN_SECONDS * 1000).catch(() => undefined);
  }

  async has(account: string, ip: string): Promise<boolean> {
    if ((this.seen.get(account)?.get(ip) ?? 0) > Date.now()) return true;
    if (!this.redis) return false;
    const [until, before] = await Promise.all([
      this.redis.hget(`pw-known:${account}`, ip).catch(() => null),
      // Written by builds before the hash, each for its 30 days: a rolling upgrade keeps what they knew.
      this.redis.exists(`pw-known:${account}|${ip}`).catch(() => 0),
    ]);
    return (until !== null && Number(until) > Date.now()) || before === 1;
  }

  /** The account is gone: its addresses too, in Redis and in this process (other instances' memory lets go within the 30 days, or at their restart). */
  async forget(account: string): Promise<void> {
    this.seen.delete(account);
    await this.redis?.del(`pw-known:${account}`).catch(() => undefined);
  }
}
