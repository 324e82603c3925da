import { randomUUID } from 'node:crypto';
import { PubSub as MemoryEngine, type PubSubEngine } from 'graphql-subscriptions';
import { RedisPubSub } from 'graphql-redis-subscriptions';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from '../logger';
import type { RedisConnections } from '../redis';
import { InOrder, NewestVersions } from './order';
import { ShardedRedisEngine } from './sharded';
import { CONVERSATION_CHANNELS, Topic, type ChannelRoutes, type MessageEventPayload, type MessagePayload, type TopicPayloads } from './topics';

export type Listener<T extends Topic> = (payload: TopicPayloads[T]) => void;

/** The audience keys a listener is offered events for: one (a subscription's viewer, without an array of its own), or several. */
export type Keys = string | readonly string[];

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

/** How events travel between instances: the payload and the instance that published it (and on a conversation channel, its topic). */
const ORIGIN = 'parleyOrigin';
interface Envelope {
  [ORIGIN]: string;
  topic?: Topic;
  payload: unknown;
}

/**
 * A message that carries several events of its topic (`{ parleyBatch: [payload, ...] }`): the
 * presence sweep announces thousands of transitions at once from inside Redis.
 */
export const BATCH_FIELD = 'parleyBatch';

/** The Redis channel of a conversation channel suffix (g:<id>, p:<id>, u:<id>). */
const channelName = (suffix: string): string => `${CONVERSATION_CHANNELS}:${suffix}`;
const CHANNEL_PREFIX = channelName('');

/**
 * Where an event goes on this instance: the keys of its local audience (users, or for presence
 * the user it is about), or 'all' for every keyed listener of the topic. Listeners registered
 * without keys get every event of the topic.
 */
export type Audience = Iterable<string> | 'all';
/** Decides an event's local audience; `channel` is the channel suffix it arrived on, if any. */
export type AudienceOf<T extends Topic> = (payload: TopicPayloads[T], channel: string | undefined) => Audience;

/** A channel taken recently: what was dispatched on it, so the catch-up after taking it delivers nothing twice. */
interface Young {
  seen: Set<string>;
  timer?: NodeJS.Timeout;
}

/**
 * Per-channel subscriptions with one listener for all of them: an instance takes a channel per
 * connected user and per conversation it has a member of, so a closure and an engine entry per
 * channel would be paid per connection. Absent in memory, where publish() already delivers here.
 */
export interface ChannelTransport {
  /** Sets the one handler of every channel's messages (raw text as published). */
  listen(handler: (channel: string, message: string) => void): void;
  subscribe(channel: string): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
}

/** How long after its catch-up a newly taken channel still checks for duplicates. */
const YOUNG_MS = 10_000;

/** Events a pulled stream holds for a consumer that falls behind; beyond, the oldest go (counted). */
const MAX_QUEUE = 1000;

/** An event on its way to dispatch(), when it waits its turn. */
interface Ordered {
  topic: Topic;
  payload: unknown;
  channel: string | undefined;
  keyedOnly: boolean;
}

/** Where a new message stands in its conversation; null for an event that has no place to keep. */
function placeOf(topic: Topic, payload: unknown): number | null {
  if (topic !== Topic.MessageAdded) return null;
  // Every message takes a position, a private one too: its conversation's channel carries it to every instance that takes it.
  const pos = (payload as MessagePayload).pos;
  return typeof pos === 'number' ? pos : null;
}

/** Listeners of one key: usually one, held as it is (a Set per user would cost each connection). */
type Held = Receiver | Set<Receiver>;

function hold(byKey: Map<string, Held>, key: string, listener: Receiver): void {
  const held = byKey.get(key);
  if (!held) byKey.set(key, listener);
  else if (held instanceof Set) held.add(listener);
  else if (held !== listener) byKey.set(key, new Set([held, listener]));
}

function release(byKey: Map<string, Held>, key: string, listener: Receiver): void {
  const held = byKey.get(key);
  if (held === listener) byKey.delete(key);
  else if (held instanceof Set && held.delete(listener) && held.size === 1) byKey.set(key, held.values().next().value!);
}

/**
 * The PubSub behind every subscription. An event is handed only to the local listeners of
 * its audience (see `routeLocally`), so a subscription costs nothing for events it doesn't
 * get. Upstream (Redis or in-process), a topic is one channel, or for a topic on channels (ChannelRoutes)
 * one channel per conversation or user that this instance `take`s while it has a member.
 */
export class PubSub {
  /** This instance, as the origin of what it publishes. */
  private readonly origin = randomUUID();
  /** Listeners that get every event of a topic. */
  private readonly listeners = new Map<Topic, Set<Listener<any> | Receiver>>();
  /** Listeners by audience key (a user id) per topic: usually one, held as it is (a Set per user would cost each connection). */
  private readonly keyed = new Map<Topic, Map<string, Held>>();
  private readonly audiences = new Map<Topic, AudienceOf<any>>();
  private readonly upstream = new Map<string, Promise<number>>();
  /** Channel subscriptions in flight (a second taker waits for the same). */
  private readonly subscribing = new Map<string, Promise<unknown>>();
  /** Channels taken, by name: how many holders. */
  private readonly channels = new Map<string, number>();
  private readonly young = new Map<string, Young>();
  /** Publishes that failed (Redis down); exposed as a metric. */
  publishFailures = 0;
  /** Events taken from upstream (Redis), by topic; the echo of our own included. */
  readonly received: Partial<Record<Topic, number>> = {};
  /** Subscription listeners examined (a selector run) for an event. */
  evaluations = 0;
  /** New messages go to this instance's subscribers in their conversation's order. */
  readonly order = new InOrder<Ordered>((e) => this.dispatch(e.topic, e.payload, e.channel, e.keyedOnly));
  /** A message's edits and reactions: an older copy after a newer one is dropped. */
  readonly versions = new NewestVersions();

  constructor(
    private readonly engine: PubSubEngine,
    readonly kind: 'redis' | 'memory',
    private readonly logger: Logger,
    private readonly routes: ChannelRoutes,
    private readonly transport?: ChannelTransport,
  ) {
    transport?.listen((name, raw) => {
      // The connection carries the engine's topic-wide channels too; those are the engine's.
      if (!this.channels.has(name)) return;
      let message: unknown;
      try {
        message = JSON.parse(raw);
      } catch (e) {
        return this.logger.warn({ err: e, channel: name }, 'unreadable pub/sub message dropped');
      }
      this.receive(name, message);
    });
  }

  /** Sets how a topic's events find their local listeners by key (the application knows who is where). */
  routeLocally<T extends Topic>(topic: T, audience: AudienceOf<T>): void {
    this.audiences.set(topic, audience);
  }

  /**
   * Publishes to every instance that takes the event's channel.
   * @throws when the transport refuses (Redis down): callers that already committed log and count it.
   */
  async publish<T extends Topic>(topic: T, payload: TopicPayloads[T]): Promise<void> {
    // This instance's own listeners get the event at once, as every other instance will get it
    // (a JSON copy), without the round trip through Redis, and even when Redis refuses it; the
    // echo that comes back carries our origin and is skipped. The fan-out to local sockets thus
    // happens before the mutation answers, which keeps a fast client from outrunning delivery
    // (except for a new message that waits its turn in its conversation: see InOrder).
    this.admit(topic, JSON.parse(JSON.stringify(payload)), undefined);
    const channels = this.routes.channelsOf(topic, payload);
    try {
      if (!channels) await this.engine.publish(topic, { [ORIGIN]: this.origin, payload } satisfies Envelope);
      else {
        const envelope = { [ORIGIN]: this.origin, topic, payload } satisfies Envelope;
        await Promise.all(channels.map((c) => this.engine.publish(channelName(c), envelope)));
      }
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
   * Adds a local listener that gets every event of the topic; returns its removal. For a
   * topic on channels it gets only the events of conversation channels this instance takes.
   */
  on<T extends Topic>(topic: T, listener: Listener<T> | Receiver): () => void {
    this.add(topic, listener);
    return () => this.off(topic, listener);
  }

  /** Adds a listener without making a removal closure (see off). With `keys`, only events whose audience has one of them. */
  add<T extends Topic>(topic: T, listener: Listener<T> | Receiver, keys?: Keys): void {
    if (keys !== undefined && typeof listener !== 'function') {
      let byKey = this.keyed.get(topic);
      if (!byKey) this.keyed.set(topic, (byKey = new Map()));
      if (typeof keys === 'string') hold(byKey, keys, listener);
      else for (const k of keys) hold(byKey, k, listener);
    } else {
      let set = this.listeners.get(topic);
      if (!set) this.listeners.set(topic, (set = new Set()));
      set.add(listener);
    }
    if (!this.routes.onChannels(topic)) this.ensureUpstream(topic);
  }

  /** Removes what on() or add() added, with the same topic and keys. */
  off<T extends Topic>(topic: T, listener: Listener<T> | Receiver, keys?: Keys): void {
    if (keys !== undefined && typeof listener !== 'function') {
      const byKey = this.keyed.get(topic);
      if (!byKey) return;
      if (typeof keys === 'string') release(byKey, keys, listener);
      else for (const k of keys) release(byKey, k, listener);
      return;
    }
    this.listeners.get(topic)?.delete(listener);
  }

  /**
   * Takes one conversation channel (reference-counted) and with it every topic on channels's
   * events on it: resolves once this instance receives it, with true when this call subscribed it
   * (it was not taken before). With `catchUp`, the caller will call catchUp() once it has read
   * what may have been published before: until YOUNG_MS after that, what arrives is remembered so
   * that nothing is delivered twice. Without it nothing is remembered (a channel taken for a
   * connecting member is never caught up: kept young, it remembered every event it carried).
   */
  async take(channel: string, catchUp = false): Promise<boolean> {
    const name = channelName(channel);
    const holders = this.channels.get(name) ?? 0;
    this.channels.set(name, holders + 1);
    // In memory there is no gap to cover: publish() hands every event to this instance's listeners.
    if (!this.transport) return false;
    if (holders > 0) {
      await this.subscribing.get(name);
      return false;
    }
    // Until the catch-up is done, what arrives is remembered, so it is not delivered again.
    const young = this.young.get(name);
    if (young?.timer) clearTimeout(young.timer);
    if (catchUp) this.young.set(name, { seen: young?.seen ?? new Set() });
    else this.young.delete(name);
    const subscribed = this.transport.subscribe(name).catch((e) => this.logger.error({ err: e, channel: name }, 'channel subscribe failed'));
    this.subscribing.set(name, subscribed);
    await subscribed;
    if (this.subscribing.get(name) === subscribed) this.subscribing.delete(name);
    return true;
  }

  /** Releases one hold on a channel; the last one unsubscribes. */
  drop(channel: string): void {
    const name = channelName(channel);
    const holders = (this.channels.get(name) ?? 0) - 1;
    if (holders > 0) return void this.channels.set(name, holders);
    this.channels.delete(name);
    this.order.forget(channel);
    const young = this.young.get(name);
    if (young?.timer) clearTimeout(young.timer);
    this.young.delete(name);
    this.subscribing.delete(name);
    void this.transport?.unsubscribe(name).catch(() => undefined);
  }

  /**
   * Delivers events that may have been published on a channel before this instance took it
   * (read back from the database by the caller), skipping what already arrived. Then, for
   * YOUNG_MS, the channel still drops duplicates of what the catch-up delivered.
   */
  catchUp<T extends Topic>(topic: T, channel: string, payloads: TopicPayloads[T][], idOf: (p: TopicPayloads[T]) => string): void {
    const name = channelName(channel);
    const young = this.young.get(name);
    if (!young) return;
    for (const p of payloads) {
      const id = `${topic}\u0000${idOf(p)}`;
      if (young.seen.has(id)) continue;
      young.seen.add(id);
      this.dispatch(topic, p, channel, true);
      const place = placeOf(topic, p);
      if (place !== null) this.order.passed((p as MessagePayload).conversationKey, place);
    }
    young.timer = setTimeout(() => this.young.get(name) === young && this.young.delete(name), YOUNG_MS);
    young.timer.unref();
  }

  /** Channels this instance takes now (for tests and metrics). */
  takenChannels(): string[] {
    return [...this.channels.keys()];
  }

  /** Channels that still remember what they carried, to skip a catch-up's duplicates (for tests). */
  rememberingChannels(): string[] {
    return [...this.young.keys()];
  }

  /** Resolves once this instance receives the topic from upstream. */
  ready(topic: Topic): Promise<unknown> {
    this.ensureUpstream(topic);
    return this.upstream.get(topic)!;
  }

  private ensureUpstream(name: string): void {
    if (this.upstream.has(name)) return;
    const sub = this.engine.subscribe(name, (message: unknown) => this.receive(name, message), {});
    sub.catch((e) => this.logger.error({ err: e, channel: name }, 'upstream subscribe failed'));
    this.upstream.set(name, sub);
  }

  /** From upstream: our own events were dispatched when published; bare payloads (the presence store's Lua PUBLISH) pass as they are. */
  private receive(name: string, message: unknown): void {
    const onChannel = name.startsWith(CHANNEL_PREFIX);
    const channel = onChannel ? name.slice(CHANNEL_PREFIX.length) : undefined;
    const envelope = message !== null && typeof message === 'object' && ORIGIN in message ? (message as Envelope) : undefined;
    // A conversation channel's events name their topic; a topic-wide channel is its topic.
    const topic = onChannel ? envelope?.topic : (name as Topic);
    if (!topic) return;
    if (!onChannel && message !== null && typeof message === 'object' && Array.isArray((message as Record<string, unknown>)[BATCH_FIELD])) {
      for (const payload of (message as Record<string, unknown[]>)[BATCH_FIELD]) this.receive(name, payload);
      return;
    }
    this.received[topic] = (this.received[topic] ?? 0) + 1;
    if (envelope?.[ORIGIN] === this.origin) return;
    const payload = envelope ? envelope.payload : message;
    const young = channel === undefined ? undefined : this.young.get(name);
    if (young) {
      const id = (payload as { id?: unknown })?.id;
      if (typeof id === 'string') {
        const seen = `${topic}\u0000${id}`;
        if (young.seen.has(seen)) return;
        young.seen.add(seen);
      }
    }
    this.admit(topic, payload, channel);
  }

  /**
   * Dispatches an event, a new message in its conversation's order (see InOrder). Each user of a
   * direct conversation gets its messages on their own channel, so each user's copies are a line
   * of their own, and one published here is split the same way.
   */
  private admit(topic: Topic, payload: unknown, channel: string | undefined): void {
    if (topic === Topic.MessageEvent) {
      const m = (payload as MessageEventPayload).message;
      // A direct message's copies (one per user's channel) carry the same version, and pass alike.
      if (typeof m.version === 'number' && !this.versions.fresh(m.id, m.version)) return;
    }
    const place = placeOf(topic, payload);
    if (place === null) return this.dispatch(topic, payload, channel);
    const m = payload as MessagePayload;
    if (channel === undefined && !m.groupId && !m.projectId) {
      const users = m.recipientId && m.recipientId !== m.senderId ? [m.senderId, m.recipientId] : [m.senderId];
      users.forEach((u, i) => {
        const own = this.routes.userChannel(u);
        this.inLine(`${m.conversationKey} ${own}`, own, place, { topic, payload, channel: own, keyedOnly: i > 0 });
      });
      return;
    }
    const own = channel ?? this.routes.messageChannel(m);
    const perUser = channel !== undefined && this.routes.userOfChannel(channel) !== undefined;
    this.inLine(perUser ? `${m.conversationKey} ${channel}` : m.conversationKey, own, place, { topic, payload, channel, keyedOnly: false });
  }

  /**
   * Only where this instance takes the channel does it see every event of the line; elsewhere (its
   * own sends to a conversation none of its sockets is in) there is no one to deliver to in order,
   * and a line would wait at every gap the other instances' sends leave in it.
   */
  private inLine(key: string, channel: string, place: number, e: Ordered): void {
    if (this.channels.has(channelName(channel))) this.order.admit(key, place, e, channel);
    else this.dispatch(e.topic, e.payload, e.channel, e.keyedOnly);
  }

  private dispatch(topic: Topic, payload: unknown, channel: string | undefined, keyedOnly = false): void {
    // Listeners of the whole topic (internal ones; a caught-up event, or the second user's copy of a direct message, is for subscriptions only).
    if (!keyedOnly) this.call(topic, this.listeners.get(topic), payload);
    const byKey = this.keyed.get(topic);
    if (!byKey?.size) return;
    // A copy that came on a user's channel is that user's alone: a direct conversation's event
    // arrives once per user, and an instance with both users connected must not deliver it twice.
    const user = channel === undefined ? undefined : this.routes.userOfChannel(channel);
    const audience = user !== undefined ? [user] : (this.audiences.get(topic)?.(payload, channel) ?? 'all');
    if (audience === 'all') {
      const seen = new Set<Receiver>();
      for (const held of byKey.values()) {
        if (!(held instanceof Set)) {
          if (!seen.has(held)) seen.add(held), this.offer(topic, held, payload);
        } else for (const l of held) if (!seen.has(l)) seen.add(l), this.offer(topic, l, payload);
      }
      return;
    }
    for (const key of audience) {
      const held = byKey.get(key);
      if (held === undefined) continue;
      if (held instanceof Set) this.call(topic, held, payload);
      else this.offer(topic, held, payload);
    }
  }

  /** Hands an event to one keyed listener (most keys have one): a listener's failure is logged, and the dispatch goes on. */
  private offer(topic: Topic, listener: Receiver, payload: unknown): void {
    try {
      listener.receive(payload);
    } catch (e) {
      this.logger.error({ err: e, topic }, 'subscription listener failed');
    }
  }

  private call(topic: Topic, set: Iterable<Listener<any> | Receiver> | undefined, payload: unknown): void {
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
   * payload to what this subscriber should see, or undefined to skip it. With `keys`, it is
   * only offered events whose audience holds one of them (see routeLocally).
   * A consumer that falls MAX_QUEUE events behind loses the oldest ones (counted).
   */
  iterate<T extends Topic, R>(topic: T, select: (payload: TopicPayloads[T]) => R | undefined, opts: { keys?: Keys } = {}): PushIterator<R> {
    return new TopicStream<T, R>(this, topic, select, opts.keys);
  }

  /** Events dropped for slow consumers. */
  dropped = 0;

  async dispose(): Promise<void> {
    for (const [, sub] of this.upstream) {
      const id = await sub.catch(() => undefined);
      if (id !== undefined) this.engine.unsubscribe(id);
    }
    for (const young of this.young.values()) clearTimeout(young.timer);
    this.order.dispose();
    this.versions.clear();
    if (this.transport) await Promise.all([...this.channels.keys()].map((name) => this.transport!.unsubscribe(name).catch(() => undefined)));
    this.upstream.clear();
    this.subscribing.clear();
    this.channels.clear();
    this.young.clear();
    this.listeners.clear();
    this.keyed.clear();
  }
}

export function createPubSub(redis: RedisConnections | undefined, logger: Logger, routes: ChannelRoutes): PubSub {
  if (!redis) return new PubSub(new MemoryEngine(), 'memory', logger, routes);
  if (redis.sharded) {
    const subscriber = redis.subscriber as Cluster;
    return new PubSub(new ShardedRedisEngine(redis.publisher as Cluster, subscriber, logger), 'redis', logger, routes, {
      listen: (handler) => subscriber.on('smessage', handler),
      subscribe: (channel) => subscriber.ssubscribe(channel),
      unsubscribe: (channel) => subscriber.sunsubscribe(channel),
    });
  }
  const subscriber = redis.subscriber as Redis;
  // The engine keeps the few topic-wide channels; the per-conversation ones go straight to the connection.
  return new PubSub(new RedisPubSub({ publisher: redis.publisher as any, subscriber: subscriber as any }), 'redis', logger, routes, {
    listen: (handler) => subscriber.on('message', handler),
    subscribe: (channel) => subscriber.subscribe(channel),
    unsubscribe: (channel) => subscriber.unsubscribe(channel),
  });
}

/**
 * One subscription's stream (see PubSub.iterate). A class rather than closures: an idle server
 * holds one per subscription, thousands of them, so its fields are all it costs (and as few as
 * it needs: before a sink is attached, one field holds either the queued values or the waiting
 * next()).
 */
class TopicStream<T extends Topic, R> implements PushIterator<R>, Receiver {
  /** Pulled: values not taken yet, or the next() waiting for one. */
  private pending: R[] | ((r: IteratorResult<R>) => void) | undefined = undefined;
  /** Pushed: where every value goes; DONE once returned. */
  private sink: Sink<R> | typeof DONE | undefined = undefined;

  constructor(
    private readonly pubsub: PubSub,
    private readonly topic: T,
    private readonly select: (payload: TopicPayloads[T]) => R | undefined,
    private readonly keys: Keys | undefined,
  ) {
    pubsub.add(topic, this, keys);
  }

  receive(payload: unknown): void {
    const sink = this.sink;
    if (sink === DONE) return;
    this.pubsub.evaluations++;
    const value = this.select(payload as TopicPayloads[T]);
    if (value === undefined) return;
    if (sink) return sink.deliver(value);
    const pending = this.pending;
    if (typeof pending === 'function') {
      this.pending = undefined;
      return pending({ value, done: false });
    }
    const queue = pending ?? (this.pending = []);
    if (queue.length >= MAX_QUEUE) {
      queue.shift();
      this.pubsub.dropped++;
    }
    queue.push(value);
  }

  next(): Promise<IteratorResult<R>> {
    const pending = this.pending;
    if (Array.isArray(pending) && pending.length) return Promise.resolve({ value: pending.shift()!, done: false });
    if (this.sink === DONE) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.pending = resolve));
  }

  return(): Promise<IteratorResult<R>> {
    if (this.sink !== DONE) {
      this.sink = DONE;
      this.pubsub.off(this.topic, this, this.keys);
      const pending = this.pending;
      this.pending = undefined;
      if (typeof pending === 'function') pending({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(e: unknown): Promise<IteratorResult<R>> {
    void this.return();
    return Promise.reject(e);
  }

  push(sink: Sink<R>): void {
    if (this.sink === DONE) return;
    this.sink = sink;
    const queued = this.pending;
    this.pending = undefined;
    // Pushed from now on: what queued before goes first, and no queue is kept.
    if (Array.isArray(queued)) for (const value of queued) if (!this.ended) sink.deliver(value);
  }

  /** Returned (a value's delivery may end it). */
  private get ended(): boolean {
    return this.sink === DONE;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** A stream's sink once it has ended. */
const DONE = Symbol('done');
