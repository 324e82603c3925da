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
    if (!failed && refused.length === 1 && refusedBy[1] && (await this.known.has(keys[0]))) return;
    await this.giveBack(keys);
    if (failed) throw failed.reason;
    throw new RateLimitedError(Math.max(...refused.map((r) => r.msBeforeNext / 1000)), 'Too many wrong passwords; try again later.');
  }

  /** The password was right: the attempt is given back, the owner's own typos from this address are forgiven (the account-wide count keeps its failures), and the address is theirs for 30 days. */
  async passed(account: string, ip: string): Promise<void> {
    const keys = this.limits.map((l) => l.key(account, ip));
    await Promise.all([this.limits[0].limiter.delete(keys[0]), this.giveBack(keys, 1), this.known.add(keys[0])]);
  }

  /** The account signed up from `ip`: an address of the owner's from the start. */
  signedUp(account: string, ip: string): Promise<void> {
    return this.known.add(this.limits[0].key(account, ip));
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
 * Addresses accounts signed in from (`account|address`), for 30 days: in Redis when configured, so
 * every instance knows them, and in this process too (what it saw itself still counts while Redis is
 * away). Not a rate limiter's window: its memory store expires a key with a timer, and a timer past
 * 2^31 ms fires at once.
 */
class KnownAddresses {
  private readonly seen = boundedLru<string, true>({ max: 100_000, ttlMs: KNOWN_SECONDS * 1000 });

  constructor(private readonly redis?: RedisClient) {}

  async add(key: string): Promise<void> {
    this.seen.set(key, true);
    await this.redis?.set(`pw-known:${key}`, '1', 'EX', KNOWN_SECONDS).catch(() => undefined);
  }

  async has(key: string): Promise<boolean> {
    if (this.seen.has(key)) return true;
    return !!this.redis && (await this.redis.exists(`pw-known:${key}`).catch(() => 0)) === 1;
  }
}
