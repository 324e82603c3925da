import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { createLimiter } from '../../shared/ratelimit';
import type { RedisClient } from '../../shared/redis';
import { RateLimitedError } from '../../shared/errors';

const WINDOW_SECONDS = 15 * 60;

/**
 * Failed logins per account and per client address. Counted in Redis when configured,
 * so the limits hold across instances. Only failures count.
 */
export class LoginLimiter {
  private readonly perUser: RateLimiterAbstract;
  private readonly perIp: RateLimiterAbstract;

  constructor(opts: { redis?: RedisClient; maxPerUser: number; maxPerIp: number }) {
    this.perUser = createLimiter('login-fail-user', opts.maxPerUser, WINDOW_SECONDS, opts.redis);
    this.perIp = createLimiter('login-fail-ip', opts.maxPerIp, WINDOW_SECONDS, opts.redis);
  }

  /** @throws RateLimitedError when either limit is already used up. */
  async check(username: string, ip: string): Promise<void> {
    const [u, i] = await Promise.all([this.perUser.get(username.toLowerCase()), this.perIp.get(ip)]);
    const blocked = [u, i].filter((r, idx) => r && r.consumedPoints >= (idx === 0 ? this.perUser.points : this.perIp.points));
    if (blocked.length) throw new RateLimitedError(Math.max(...blocked.map((r) => r!.msBeforeNext / 1000)));
  }

  async fail(username: string, ip: string): Promise<void> {
    await Promise.all([this.perUser.penalty(username.toLowerCase(), 1), this.perIp.penalty(ip, 1)]).catch((e) => {
      if (!(e instanceof RateLimiterRes)) throw e;
    });
  }

  async succeed(username: string): Promise<void> {
    await this.perUser.delete(username.toLowerCase());
  }
}
