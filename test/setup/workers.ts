/**
 * What keeps two jest workers apart on one PostgreSQL and one Redis. Worker 1 uses DATABASE_URL
 * and REDIS_URL as given; worker N (N > 1) a database of its own (`<name>_w<N>`, made by
 * global-setup), Redis database N - 1 and REDIS_KEY_PREFIX `w<N>:`. Each test wipes its worker's
 * database and Redis database (resetState) and no other; the prefix keeps its pub/sub channels
 * apart too, as Redis shares channels across its databases.
 */

/** What a worker after the first adds to REDIS_KEY_PREFIX. */
const WORKER_PREFIX = /^w\d+:/;

/** The database worker `n` uses, by its URL. */
export function workerDatabaseUrl(url: string, n: number): string {
  if (n <= 1) return url;
  const u = new URL(url);
  u.pathname = `/${u.pathname.slice(1)}_w${n}`;
  return u.toString();
}

/** The Redis URL and key prefix worker `n` uses. */
export function workerRedis(url: string, n: number): { url: string; prefix: string } {
  if (n <= 1) return { url, prefix: '' };
  const u = new URL(url);
  if (u.pathname.length > 1) throw new Error(`REDIS_URL names a Redis database (${u.pathname}): the test workers pick their own; leave it out`);
  u.pathname = `/${n - 1}`;
  return { url: u.toString(), prefix: `w${n}:` };
}

/** Points `env` (a worker's process.env, before its test file runs) at worker `n`'s own database, Redis database and prefix. */
export function applyWorker(env: NodeJS.ProcessEnv, n: number): void {
  if (n <= 1) return;
  if (env.DATABASE_URL) env.DATABASE_URL = workerDatabaseUrl(env.DATABASE_URL, n);
  if (env.REDIS_URL) {
    const redis = workerRedis(env.REDIS_URL, n);
    env.REDIS_URL = redis.url;
    env.REDIS_KEY_PREFIX = `${env.REDIS_KEY_PREFIX ?? ''}${redis.prefix}`;
  }
}

/**
 * Whether a channel seen on the shared Redis belongs to worker `n`, whose servers prefix with
 * `prefix`: worker 1's are those no other worker's prefix follows.
 */
export function ofWorker(channel: string, n: number, prefix: string): boolean {
  return channel.startsWith(prefix) && (n > 1 || !WORKER_PREFIX.test(channel.slice(prefix.length)));
}
