/**
 * The presence sweep, once, from the command line:
 *
 *   DATABASE_URL=postgres://… REDIS_URL=redis://… npm run presence:sweep
 *
 * Marks OFFLINE every user idle for longer than PRESENCE_TIMEOUT who holds no live socket,
 * publishes each transition once and writes their lastSeenAt, exactly as the cron job does.
 * It takes no tick lock: removal is atomic, so running it next to the servers' own sweep is safe.
 * Exit code 0 on success, 1 on bad configuration or an unreachable Redis or database.
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { loadEnvOrReport } from '../config/env';
import { openDatabase } from '../core/database';
import { entities } from '../modules/entities';
import { PresenceService } from '../modules/presence/presence.service';
import { RedisPresenceStore } from '../modules/presence/presence.store';
import { createLogger } from '../shared/logger';
import { createPubSub } from '../shared/pubsub/pubsub';
import { connectRedis, type RedisClient } from '../shared/redis';
import { channelRoutes } from '../modules/conversation/conversation.keys';
import { presenceStoreChannel } from '../modules/presence/presence.routing';

/** Commands fail fast while disconnected (no offline queue), so wait for the connection first. */
async function ready(client: RedisClient, timeoutMs = 5000): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis not ready after ${timeoutMs} ms`)), timeoutMs);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function main(): Promise<number> {
  const env = loadEnvOrReport();
  if (!env) return 1;
  const logger = createLogger(env, { job: 'presence-sweep', via: 'cli' });
  if (!env.REDIS_URL && !env.REDIS_CLUSTER_NODES) {
    // Without Redis, presence lives in each server's memory, where this process cannot reach it.
    logger.error('presence:sweep needs REDIS_URL (or REDIS_CLUSTER_NODES): without Redis each server sweeps its own memory');
    return 1;
  }
  if (!env.DATABASE_URL) {
    logger.error('presence:sweep needs DATABASE_URL: it writes lastSeenAt of the users it marks OFFLINE');
    return 1;
  }
  const database = await openDatabase(env, logger, { entities, migrate: false });
  const redis = connectRedis(env, logger)!;
  const pubsub = createPubSub(redis, logger, channelRoutes({ presencePerUser: env.PRESENCE_VISIBILITY === 'contacts' }));
  try {
    await ready(redis.client);
    const presence = new PresenceService({
      store: new RedisPresenceStore(redis.client),
      pubsub,
      orm: database.orm,
      env,
      logger,
      instanceId: `cli-${randomUUID()}`,
      storeChannel: presenceStoreChannel(env.PRESENCE_VISIBILITY, redis.sharded),
    });
    const run = await presence.sweep();
    logger.info({ expired: run.expired, ms: run.ms }, `presence sweep: ${run.expired} users marked OFFLINE in ${run.ms} ms`);
    return 0;
  } finally {
    await pubsub.dispose().catch(() => undefined);
    await redis.dispose();
    await database.dispose();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`presence:sweep failed: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
