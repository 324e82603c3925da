/**
 * What keeps two jest workers apart on one PostgreSQL and one Redis. Worker 1 uses DATABASE_URL
 * and REDIS_URL as given; worker N (N > 1) a database of its own (`<name>_w<N>`, made by
 * global-setup), Redis database N - 1 and REDIS_KEY_PREFIX `w<N>:`. Each test wipes its worker's
 * database and Redis database (resetState) and no other; the prefix keeps its pub/sub channels
 * apart too, as Redis shares channels across its databases.
 */

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
