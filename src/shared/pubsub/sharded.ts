import { PubSubEngine } from 'graphql-subscriptions';
import type { Cluster } from 'ioredis';
import type { Logger } from '../logger';

/**
 * Pub/sub over Redis Cluster's sharded channels (SPUBLISH / SSUBSCRIBE, Redis 7+). A classic
 * PUBLISH is copied to every node of a cluster, so its cost grows with the cluster; a sharded
 * one goes only to the shard that owns the channel's slot, so adding shards adds capacity.
 * graphql-redis-subscriptions speaks only classic pub/sub, hence this small engine.
 *
 * The subscriber is a Cluster opened with `shardedSubscribers: true`: ioredis keeps one
 * subscriber connection per shard and re-subscribes after a reconnect or a slot move.
 */
export class ShardedRedisEngine extends PubSubEngine {
  private readonly handlers = new Map<string, Map<number, (payload: unknown) => void>>();
  private readonly topicOf = new Map<number, string>();
  private nextId = 0;

  constructor(
    private readonly publisher: Cluster,
    private readonly subscriber: Cluster,
    private readonly logger: Logger,
  ) {
    super();
    subscriber.on('smessage', (channel: string, message: string) => this.onMessage(channel, message));
  }

  /** @throws when the shard is unreachable (the caller counts it; data is already committed). */
  async publish(topic: string, payload: unknown): Promise<void> {
    await this.publisher.spublish(topic, JSON.stringify(payload));
  }

  async subscribe(topic: string, onMessage: (payload: unknown) => void): Promise<number> {
    const id = this.nextId++;
    let set = this.handlers.get(topic);
    const first = !set;
    if (!set) this.handlers.set(topic, (set = new Map()));
    set.set(id, onMessage);
    this.topicOf.set(id, topic);
    if (first) await this.subscriber.ssubscribe(topic);
    return id;
  }

  unsubscribe(id: number): void {
    const topic = this.topicOf.get(id);
    if (topic === undefined) return;
    this.topicOf.delete(id);
    const set = this.handlers.get(topic);
    set?.delete(id);
    if (set && !set.size) {
      this.handlers.delete(topic);
      this.subscriber.sunsubscribe(topic).catch((e: Error) => this.logger.warn({ err: e.message, topic }, 'sunsubscribe failed'));
    }
  }

  private onMessage(topic: string, message: string): void {
    const set = this.handlers.get(topic);
    if (!set) return;
    let payload: unknown;
    try {
      payload = JSON.parse(message);
    } catch (e) {
      this.logger.warn({ err: e, topic }, 'unreadable sharded pub/sub message dropped');
      return;
    }
    for (const handler of set.values()) handler(payload);
  }
}
