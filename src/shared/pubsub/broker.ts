import type { Cluster } from 'ioredis';
import { onReconnect, type RedisClient, type RedisConnections } from '../redis';

/** Gets every message of the channels subscribed through a broker, as the text published. */
export type MessageHandler = (channel: string, message: string) => void;

/**
 * How events travel between instances: text on named channels. The few topic-wide channels and
 * the many conversation channels go the same way; what the text means is the PubSub's business.
 * One handler for every channel, so a subscription costs a Set entry, not a closure.
 */
export interface Broker {
  /** 'memory': this process alone, so nothing published elsewhere can be missed. */
  readonly kind: 'redis' | 'memory';
  /** Sets the one handler; it gets only channels subscribed here (the connection may carry others). */
  onMessage(handler: MessageHandler): void;
  /** @throws when the broker refuses it (Redis down); nothing is retried. */
  publish(channel: string, message: string): Promise<void>;
  /** Resolves once the channel's messages reach the handler; subscribing twice is harmless. */
  subscribe(channel: string): Promise<void>;
  /** The handler gets nothing more of the channel from the moment of the call. */
  unsubscribe(channel: string): Promise<void>;
  /** Unsubscribes every channel at once: the handler gets nothing more. Never throws, and never waits for Redis (it may be away). */
  close(): Promise<void>;
  /**
   * Calls `listener` each time the subscriber connection is back after a loss (what was published
   * meanwhile never came), or Redis answers again after holding this instance's commands
   * (`stalled`); returns its removal.
   */
  onReconnect?(listener: (lostAt: number, stalled?: boolean) => void): () => void;
  /** Whether the subscriber connection is up now (false during an outage: a subscribe then waits for its return). */
  connected?(): boolean;
  /** While not connected: since when (the connection's loss, or the oldest command Redis holds); undefined while connected. */
  lostSince?(): number | undefined;
}

const ignore: MessageHandler = () => undefined;

/** How often a broker looks whether Redis holds its instance's commands, and whether it answers again. */
const STALL_CHECK_MS = 500;

/** In-process: a publish reaches this broker's handler at once, if the channel is subscribed. */
export class MemoryBroker implements Broker {
  readonly kind = 'memory';
  private readonly channels = new Set<string>();
  private handler = ignore;

  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }

  async publish(channel: string, message: string): Promise<void> {
    if (this.channels.has(channel)) this.handler(channel, message);
  }

  async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
  }

  async close(): Promise<void> {
    this.channels.clear();
  }
}

/**
 * Classic Redis pub/sub (PUBLISH / SUBSCRIBE) on a subscriber connection of its own, which
 * ioredis resubscribes after a reconnect. On a cluster each PUBLISH is copied to every node.
 */
export class RedisBroker implements Broker {
  readonly kind = 'redis';
  /** Channels subscribed here: after an unsubscribe, the connection may still deliver a few. */
  protected readonly channels = new Set<string>();
  private handler = ignore;
  /** Told when Redis answers again after holding this instance's commands (see watchStall). */
  private readonly stallListeners = new Set<(lostAt: number, stalled: boolean) => void>();
  private stallTimer: NodeJS.Timeout | undefined;
  private stalledAt: number | undefined;
  /** When the subscriber connection closed, until it is ready again. */
  private closedAt: number | undefined;

  constructor(
    protected readonly publisher: RedisClient,
    protected readonly subscriber: RedisClient,
    event: 'message' | 'smessage' = 'message',
    /** When the oldest command Redis holds was sent, while it holds one (RedisConnections.heldSince). */
    private readonly heldSince: () => number | undefined = () => undefined,
  ) {
    subscriber.on(event, (channel: string, message: string) => {
      if (this.channels.has(channel)) this.handler(channel, message);
    });
    subscriber.on('close', () => void (this.closedAt ??= Date.now()));
    subscriber.on('ready', () => void (this.closedAt = undefined));
  }

  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.publisher.publish(channel, message);
  }

  async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
    // ioredis writes a SUBSCRIBE at once while its connection shakes hands (Redis runs one while it
    // loads): the ready check's INFO that follows is refused in subscriber mode, the connection goes
    // round again, and the channel, in no list of ioredis's, stayed silent for good (an outside
    // probe, Redis restarted under reconnecting sockets: a group's channel on no instance, 1 of 2).
    // Sent once the handshake is over, it goes out at once or waits in ioredis's queue.
    if (this.subscriber.status === 'connect') await handshakeOver(this.subscriber);
    await this.subscriber.subscribe(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
    await this.subscriber.unsubscribe(channel);
  }

  async close(): Promise<void> {
    const all = [...this.channels];
    this.channels.clear();
    if (all.length) void this.subscriber.unsubscribe(...all).catch(() => undefined);
  }

  /**
   * Also after a stall: a Redis that held every command without closing a connection (stopped,
   * a partition without a reset) reconnects nothing, yet what was published meanwhile (refused
   * while held) never came: a block made elsewhere during one never reached the blocker's sockets
   * here, even after it (an outside probe, SIGSTOP). The stall is told as a loss from when its
   * oldest held command was sent.
   */
  onReconnect(listener: (lostAt: number, stalled?: boolean) => void): () => void {
    const off = onReconnect(this.subscriber, (lostAt) => listener(lostAt, false));
    this.stallListeners.add(listener);
    this.stallTimer ??= setInterval(() => this.watchStall(), STALL_CHECK_MS).unref();
    return () => {
      off();
      this.stallListeners.delete(listener);
      if (this.stallListeners.size) return;
      clearInterval(this.stallTimer);
      this.stallTimer = undefined;
    };
  }

  private watchStall(): void {
    const since = this.heldSince();
    if (since !== undefined) {
      this.stalledAt ??= since;
      return;
    }
    if (this.stalledAt === undefined) return;
    // Held commands fail when their connection drops: a stall that became an outage is told by the reconnect.
    if (this.subscriber.status !== 'ready') return void (this.stalledAt = undefined);
    const lostAt = this.stalledAt;
    this.stalledAt = undefined;
    for (const l of [...this.stallListeners]) l(lostAt, true);
  }

  /** False while the subscriber is down, or while Redis holds this instance's commands. */
  connected(): boolean {
    return this.subscriber.status === 'ready' && this.heldSince() === undefined;
  }

  lostSince(): number | undefined {
    if (this.connected()) return undefined;
    return this.closedAt ?? this.heldSince() ?? Date.now();
  }
}

/**
 * Redis Cluster's sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7+): a message goes only to the
 * shard that owns its channel's slot, so adding shards adds capacity. The subscriber is a Cluster
 * opened with `shardedSubscribers`: ioredis keeps one connection per shard and follows slot moves.
 */
export class ShardedRedisBroker extends RedisBroker {
  constructor(publisher: Cluster, subscriber: Cluster) {
    super(publisher, subscriber, 'smessage');
  }

  override async publish(channel: string, message: string): Promise<void> {
    await (this.publisher as Cluster).spublish(channel, message);
  }

  override async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
    await (this.subscriber as Cluster).ssubscribe(channel);
  }

  override async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
    await (this.subscriber as Cluster).sunsubscribe(channel);
  }

  /** One SUNSUBSCRIBE per channel: channels of different slots cannot share one. */
  override async close(): Promise<void> {
    const all = [...this.channels];
    this.channels.clear();
    for (const c of all) void (this.subscriber as Cluster).sunsubscribe(c).catch(() => undefined);
  }
}

/** Resolves once a connection's handshake ends: ready, or closed (and then queueing commands, or ended). */
function handshakeOver(conn: RedisClient): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      conn.off('ready', done);
      conn.off('close', done);
      resolve();
    };
    conn.once('ready', done);
    conn.once('close', done);
  });
}

/** The broker for the configured Redis: sharded, classic, or in-process when there is none. */
export function createBroker(redis: RedisConnections | undefined): Broker {
  if (!redis) return new MemoryBroker();
  if (redis.sharded) return new ShardedRedisBroker(redis.publisher as Cluster, redis.subscriber as Cluster);
  return new RedisBroker(redis.publisher, redis.subscriber, 'message', () => redis.heldSince());
}
