import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
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
    const make = (keyPrefix: string, points: number) =>
      opts.redis
        ? new RateLimiterRedis({
            storeClient: opts.redis,
            keyPrefix,
            points,
            duration: WINDOW_SECONDS,
            useRedisPackage: false,
            // While Redis is away, count in this process rather than failing every login.
            insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: WINDOW_SECONDS }),
          })
        : new RateLimiterMemory({ keyPrefix, points, duration: WINDOW_SECONDS });
    this.perUser = make('login-fail-user', opts.maxPerUser);
    this.perIp = make('login-fail-ip', opts.maxPerIp);
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
