import { randomUUID } from 'node:crypto';
import { PubSub as MemoryEngine, type PubSubEngine } from 'graphql-subscriptions';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import type { Cluster } from 'ioredis';
import type { Logger } from '../logger';
import type { RedisConnections } from '../redis';
import { ShardedRedisEngine } from './sharded';
import { Topic, TOPIC_ROUTES, type TopicPayloads } from './topics';

export type Listener<T extends Topic> = (payload: TopicPayloads[T]) => void;

/** A listener kept as an object: one per subscription without a closure of its own. */
export interface Receiver {
  receive(payload: unknown): void;
}

/** Where a pushed stream hands its values. */
export interface Sink<R> {
  deliver(value: R): void;
}

/**
 * A subscription's event stream. Besides pulling with next(), a consumer can switch it to
 * `push`: every selected value is then handed over synchronously, in the dispatch, without a
 * promise per value (the fan-out uses this to write one event to thousands of sockets in one pass).
 */
export interface PushIterator<R> extends AsyncIterableIterator<R> {
  push(sink: Sink<R>): void;
}

/** How events travel between instances: the payload and the instance that published it. */
const ORIGIN = 'parleyOrigin';
interface Envelope {
  [ORIGIN]: string;
  payload: unknown;
}

/**
 * The PubSub behind every subscription. One upstream subscription per topic per
 * instance (Redis or in-process), fanned out to local listeners in memory.
 */
export class PubSub {
  /** This instance, as the origin of what it publishes. */
  private readonly origin = randomUUID();
  private readonly listeners = new Map<Topic, Set<Listener<any> | Receiver>>();
  /** Listeners of one route (a conversation) of a topic. */
  private readonly routed = new Map<Topic, Map<string, Set<Listener<any> | Receiver>>>();
  private readonly upstream = new Map<Topic, Promise<number>>();
  /** Publishes that failed (Redis down); exposed as a metric. */
  publishFailures = 0;

  constructor(
    private readonly engine: PubSubEngine,
    readonly kind: 'redis' | 'memory',
    private readonly logger: Logger,
  ) {}

  /**
   * Publishes to every instance.
   * @throws when the transport refuses (Redis down): callers that already committed log and count it.
   */
  async publish<T extends Topic>(topic: T, payload: TopicPayloads[T]): Promise<void> {
    // This instance's own listeners get the event at once, as every other instance will get it
    // (a JSON copy), without the round trip through Redis, and even when Redis refuses it; the
    // echo that comes back carries our origin and is skipped. The fan-out to local sockets thus
    // happens before the mutation answers, which keeps a fast client from outrunning delivery.
    this.dispatch(topic, JSON.parse(JSON.stringify(payload)));
    try {
      await this.engine.publish(topic, { [ORIGIN]: this.origin, payload } satisfies Envelope);
    } catch (e) {
      this.publishFailures++;
      throw e;
    }
  }

  /** Publishes and never throws: for events whose data is already committed. */
  async publishSafe<T extends Topic>(topic: T, payload: TopicPayloads[T]): Promise<boolean> {
    try {
      await this.publish(topic, payload);
      return true;
    } catch (e) {
      this.logger.warn({ err: e, topic }, 'publish failed; the change is committed and reachable by query');
      return false;
    }
  }

  /**
   * Adds a local listener; returns its removal. With a `route` (see TOPIC_ROUTES) it is called
   * only for events of that route, so an event costs nothing to listeners of other conversations.
   */
  on<T extends Topic>(topic: T, listener: Listener<T> | Receiver, route?: string): () => void {
    this.add(topic, listener, route);
    return () => this.off(topic, listener, route);
  }

  /** Adds a listener without making a removal closure (see off). */
  add<T extends Topic>(topic: T, listener: Listener<T> | Receiver, route?: string): void {
    let set: Set<Listener<any> | Receiver> | undefined;
    if (route !== undefined && TOPIC_ROUTES[topic]) {
      let byRoute = this.routed.get(topic);
      if (!byRoute) this.routed.set(topic, (byRoute = new Map()));
      set = byRoute.get(route);
      if (!set) byRoute.set(route, (set = new Set()));
    } else {
      set = this.listeners.get(topic);
      if (!set) this.listeners.set(topic, (set = new Set()));
    }
    set.add(listener);
    this.ensureUpstream(topic);
  }

  /** Removes what on() or add() added, with the same topic and route. */
  off<T extends Topic>(topic: T, listener: Listener<T> | Receiver, route?: string): void {
    if (route !== undefined && TOPIC_ROUTES[topic]) {
      const byRoute = this.routed.get(topic);
      const set = byRoute?.get(route);
      if (set?.delete(listener) && !set.size) byRoute!.delete(route);
      return;
    }
    this.listeners.get(topic)?.delete(listener);
  }

  /** Resolves once this instance receives the topic from upstream. */
  ready(topic: Topic): Promise<unknown> {
    this.ensureUpstream(topic);
    return this.upstream.get(topic)!;
  }

  private ensureUpstream(topic: Topic): void {
    if (this.upstream.has(topic)) return;
    const sub = this.engine.subscribe(topic, (message: unknown) => this.receive(topic, message), {});
    sub.catch((e) => this.logger.error({ err: e, topic }, 'upstream subscribe failed'));
    this.upstream.set(topic, sub);
  }

  /** From upstream: our own events were dispatched when published; bare payloads (the presence store's Lua PUBLISH) pass as they are. */
  private receive(topic: Topic, message: unknown): void {
    if (message !== null && typeof message === 'object' && ORIGIN in message) {
      const envelope = message as Envelope;
      if (envelope[ORIGIN] !== this.origin) this.dispatch(topic, envelope.payload);
      return;
    }
    this.dispatch(topic, message);
  }

  private dispatch(topic: Topic, payload: unknown): void {
    this.call(topic, this.listeners.get(topic), payload);
    const byRoute = this.routed.get(topic);
    if (byRoute?.size) this.call(topic, byRoute.get((TOPIC_ROUTES[topic] as (p: unknown) => string)(payload)), payload);
  }

  private call(topic: Topic, set: Set<Listener<any> | Receiver> | undefined, payload: unknown): void {
    if (!set) return;
    for (const listener of set) {
      try {
        if (typeof listener === 'function') listener(payload);
        else listener.receive(payload);
      } catch (e) {
        this.logger.error({ err: e, topic }, 'subscription listener failed');
      }
    }
  }

  /**
   * An async iterator over a topic for one GraphQL subscription. `select` maps each
   * payload to what this subscriber should see, or undefined to skip it.
   * A consumer that falls `maxQueue` events behind loses the oldest ones (counted).
   */
  iterate<T extends Topic, R>(topic: T, select: (payload: TopicPayloads[T]) => R | undefined, opts: { route?: string; maxQueue?: number } = {}): PushIterator<R> {
    return new TopicStream<T, R>(this, topic, select, opts.route, opts.maxQueue ?? 1000);
  }

  /** Events dropped for slow consumers. */
  dropped = 0;

  async dispose(): Promise<void> {
    for (const [, sub] of this.upstream) {
      const id = await sub.catch(() => undefined);
      if (id !== undefined) this.engine.unsubscribe(id);
    }
    this.upstream.clear();
    this.listeners.clear();
    this.routed.clear();
  }
}

export function createPubSub(redis: RedisConnections | undefined, logger: Logger): PubSub {
  if (!redis) return new PubSub(new MemoryEngine(), 'memory', logger);
  if (redis.sharded) return new PubSub(new ShardedRedisEngine(redis.publisher as Cluster, redis.subscriber as Cluster, logger), 'redis', logger);
  return new PubSub(new RedisPubSub({ publisher: redis.publisher as any, subscriber: redis.subscriber as any }), 'redis', logger);
}

/**
 * One subscription's stream (see PubSub.iterate). A class rather than closures: an idle
 * server holds one per subscription, thousands of them, so its fields are all it costs.
 */
class TopicStream<T extends Topic, R> implements PushIterator<R>, Receiver {
  private queue: R[] | undefined;
  private waiting: ((r: IteratorResult<R>) => void) | undefined;
  private sink: Sink<R> | undefined;
  private done = false;

  constructor(
    private readonly pubsub: PubSub,
    private readonly topic: T,
    private readonly select: (payload: TopicPayloads[T]) => R | undefined,
    private readonly route: string | undefined,
    private readonly maxQueue: number,
  ) {
    pubsub.add(topic, this, route);
  }

  receive(payload: unknown): void {
    if (this.done) return;
    const value = this.select(payload as TopicPayloads[T]);
    if (value === undefined) return;
    if (this.sink) return this.sink.deliver(value);
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      return w({ value, done: false });
    }
    const queue = (this.queue ??= []);
    if (queue.length >= this.maxQueue) {
      queue.shift();
      this.pubsub.dropped++;
    }
    queue.push(value);
  }

  next(): Promise<IteratorResult<R>> {
    if (this.queue?.length) return Promise.resolve({ value: this.queue.shift()!, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiting = resolve));
  }

  return(): Promise<IteratorResult<R>> {
    if (!this.done) {
      this.done = true;
      this.pubsub.off(this.topic, this, this.route);
      this.queue = undefined;
      this.waiting?.({ value: undefined, done: true });
      this.waiting = undefined;
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(e: unknown): Promise<IteratorResult<R>> {
    void this.return();
    return Promise.reject(e);
  }

  push(sink: Sink<R>): void {
    this.sink = sink;
    const queued = this.queue;
    this.queue = undefined;
    // Pushed from now on: what queued before goes first, and no queue is kept.
    for (const value of queued ?? []) if (!this.done) sink.deliver(value);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
