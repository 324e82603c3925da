import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { createLimiter } from '../../shared/ratelimit';
import type { RedisClient } from '../../shared/redis';
import { RateLimitedError } from '../../shared/errors';

const WINDOW_SECONDS = 15 * 60;

interface Limit {
  limiter: RateLimiterAbstract;
  key: (account: string, ip: string) => string;
}

/**
 * Failed password checks, wherever a password is checked (login, deleteAccount), over 15 minutes.
 * As OWASP's authentication cheat sheet suggests, an account is limited per client address first
 * and from everywhere only at a much higher count, so a stranger who can name a user cannot lock
 * them out from their own address; each address has its own limit too. Counted in Redis when
 * configured, so the limits hold across instances. Only failures count.
 */
export class PasswordLimiter {
  private readonly limits: Limit[];

  constructor(opts: { redis?: RedisClient; maxPerUserIp: number; maxPerUser: number; maxPerIp: number }) {
    this.limits = [
      { limiter: createLimiter('pw-fail-user-ip', opts.maxPerUserIp, WINDOW_SECONDS, opts.redis), key: (account, ip) => `${account}|${ip}` },
      { limiter: createLimiter('pw-fail-user', opts.maxPerUser, WINDOW_SECONDS, opts.redis), key: (account) => account },
      { limiter: createLimiter('pw-fail-ip', opts.maxPerIp, WINDOW_SECONDS, opts.redis), key: (_, ip) => ip },
    ];
  }

  /**
   * `account` is the user's id, or for a name no one holds, the name in lower case.
   * @throws RateLimitedError when any of the limits is already used up.
   */
  async check(account: string, ip: string): Promise<void> {
    const used = await Promise.all(this.limits.map((l) => l.limiter.get(l.key(account, ip))));
    const blocked = used.filter((r, i): r is RateLimiterRes => !!r && r.consumedPoints >= this.limits[i].limiter.points);
    if (blocked.length) {
      throw new RateLimitedError(Math.max(...blocked.map((r) => r.msBeforeNext / 1000)), 'Too many wrong passwords; try again later.');
    }
  }

  async fail(account: string, ip: string): Promise<void> {
    await Promise.all(this.limits.map((l) => l.limiter.penalty(l.key(account, ip), 1))).catch((e) => {
      if (!(e instanceof RateLimiterRes)) throw e;
    });
  }

  /** The owner got in from this address: their own typos there are forgiven, the account-wide count is not. */
  async succeed(account: string, ip: string): Promise<void> {
    await this.limits[0].limiter.delete(this.limits[0].key(account, ip));
  }
}
