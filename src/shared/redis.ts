import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Env } from '../config/env';
import type { Logger } from './logger';

export type RedisClient = Redis | Cluster;

export interface RedisConnections {
  /** Commands (presence, rate limits, locks). Fails fast while Redis is away. */
  client: RedisClient;
  publisher: RedisClient;
  /** In subscriber mode; resubscribes by itself after a reconnect. */
  subscriber: RedisClient;
  /** Pub/sub goes over sharded channels (a Redis 7+ cluster with REDIS_SHARDED_PUBSUB). */
  sharded: boolean;
  ping(): Promise<boolean>;
  /** Resolves when every connection is ready, or after `ms` (a server may start while Redis is away). */
  ready(ms: number): Promise<boolean>;
  dispose(): Promise<void>;
}

/**
 * Opens the three connections Parley needs, to one Redis (REDIS_URL) or a Redis Cluster
 * (REDIS_CLUSTER_NODES). Returns undefined when neither is configured.
 */
export function connectRedis(env: Env, logger: Logger): RedisConnections | undefined {
  if (!env.REDIS_URL && !env.REDIS_CLUSTER_NODES) return undefined;
  const base: RedisOptions = {
    // Fail commands at once while disconnected instead of queueing them without bound.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    retryStrategy: (times) => Math.min(200 * times, 2000),
    lazyConnect: false,
  };
  const make = (name: string, opts: RedisOptions = {}, cluster: { shardedSubscribers?: boolean } = {}): RedisClient => {
    const conn = env.REDIS_CLUSTER_NODES
      ? new Cluster(
          env.REDIS_CLUSTER_NODES.map((n) => ({ host: n.split(':')[0], port: Number(n.split(':')[1]) })),
          { redisOptions: { ...base, ...opts }, enableOfflineQueue: opts.enableOfflineQueue ?? false, ...cluster },
        )
      : new Redis(env.REDIS_URL!, { ...base, ...opts, connectionName: `parley-${name}` });
    let down = false;
    conn.on('error', (e: Error) => {
      if (!down) logger.warn({ err: e.message, connection: name }, 'redis connection error');
      down = true;
    });
    conn.on('ready', () => {
      if (down) logger.info({ connection: name }, 'redis connection restored');
      down = false;
    });
    return conn;
  };
  const client = make('client');
  const publisher = make('pub');
  // The subscriber queues its SUBSCRIBE commands until connected, so subscriptions made during an outage still land.
  const sharded = !!env.REDIS_CLUSTER_NODES && env.REDIS_SHARDED_PUBSUB;
  // On a cluster with sharded pub/sub, ioredis keeps one subscriber per shard and follows slot moves.
  const subscriber = make('sub', { enableOfflineQueue: true, maxRetriesPerRequest: null }, { shardedSubscribers: sharded });
  return {
    client,
    publisher,
    subscriber,
    sharded,
    async ready(ms) {
      const all = Promise.all(
        [client, publisher, subscriber].map((c) => (c.status === 'ready' ? undefined : new Promise((r) => c.once('ready', r)))),
      ).then(() => true);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
      return Promise.race([all, late]).finally(() => clearTimeout(timer));
    },
    async ping() {
      try {
        return (await client.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async dispose() {
      // QUIT waits for a reply; while Redis is away (or reconnecting) it would wait forever, so cut instead.
      await Promise.all(
        [client, publisher, subscriber].map((c) =>
          c.status === 'ready' ? c.quit().then(() => undefined, () => c.disconnect()) : c.disconnect(),
        ),
      );
    },
  };
}
