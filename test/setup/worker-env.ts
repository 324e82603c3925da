import { workerDatabaseUrl, workerRedis } from './workers';

// Runs in each worker before each test file (jest setupFiles): see workers.ts.
const n = Number(process.env.JEST_WORKER_ID ?? 1);
if (n > 1) {
  if (process.env.DATABASE_URL) process.env.DATABASE_URL = workerDatabaseUrl(process.env.DATABASE_URL, n);
  if (process.env.REDIS_URL) {
    const redis = workerRedis(process.env.REDIS_URL, n);
    process.env.REDIS_URL = redis.url;
    process.env.REDIS_KEY_PREFIX = `${process.env.REDIS_KEY_PREFIX ?? ''}${redis.prefix}`;
  }
}
