import type { Logger } from '../logger';
import { Topic, type ChannelRoutes, type ConversationScope, type MessagePayload, type TopicPayloads } from './topics';

export type Listener<T extends Topic> = (payload: TopicPayloads[T]) => void;

/** The audience keys a listener is offered events for: one (a subscription's viewer, without an array of its own), or several. */
export type Keys = string | readonly string[];

/** A listener kept as an object: one per subscription without a closure of its own. */
export interface Receiver {
  receive(payload: unknown): void;
  /** An internal listener's cheap test of whether an event is of use to it (absent: every event is). */
  wants?(payload: unknown): boolean;
}

/**
 * Where an event goes on this instance: the keys of its local audience (users, or for presence
 * the user it is about), or 'all' for every keyed listener of the topic. Listeners registered
 * without keys get every event of the topic.
 */
export type Audience = Iterable<string> | 'all';
/** Decides an event's local audience; `channel` is the channel suffix it arrived on, if any. */
export type AudienceOf<T extends Topic> = (payload: TopicPayloads[T], channel: string | undefined) => Audience;

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
 * This instance's listeners, and who among them an event reaches. An event is handed only to
 * the listeners keyed by its local audience (see routeLocally), so a subscription costs nothing
 * for events it doesn't get; listeners without keys (internal ones) get every event of a topic.
 */
export class Hub {
  /** Listeners that get every event of a topic. */
  private readonly listeners = new Map<Topic, Set<Listener<any> | Receiver>>();
  /** Listeners by audience key (a user id) per topic. */
  private readonly keyed = new Map<Topic, Map<string, Held>>();
  private readonly audiences = new Map<Topic, AudienceOf<any>>();
  /** Subscription listeners examined (a selector run) for an event. */
  evaluations = 0;
  /** Events dropped for slow consumers. */
  dropped = 0;

  constructor(
    private readonly routes: Pick<ChannelRoutes, 'userOfChannel'>,
    private readonly logger: Logger,
  ) {}

  /** Sets how a topic's events find their local listeners by key. */
  routeLocally<T extends Topic>(topic: T, audience: AudienceOf<T>): void {
    this.audiences.set(topic, audience);
  }

  /** With `keys` (and a Receiver), only events whose audience has one of them reach the listener. */
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
  }

  /** Removes what add() added, with the same topic and keys. */
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
   * Hands an event to its local listeners. `keyedOnly`: for subscriptions only (a caught-up event,
   * or the second user's copy of a direct message, which internal listeners already had).
   */
  dispatch(topic: Topic, payload: unknown, channel: string | undefined, keyedOnly = false): void {
    if (!keyedOnly) this.call(topic, this.listeners.get(topic), payload);
    const byKey = this.keyed.get(topic);
    if (!byKey?.size) return;
    const audience = this.audienceOf(topic, payload, channel);
    if (audience === 'all') return this.dispatchToAll(topic, byKey, payload);
    for (const key of audience) {
      const held = byKey.get(key);
      if (held === undefined) continue;
      if (held instanceof Set) this.call(topic, held, payload);
      else this.offer(topic, held, payload);
    }
  }

  /**
   * Whether dispatch() would hand the event to any listener here: one of the topic's listeners
   * without keys that doesn't decline it (see Receiver.wants), or a keyed one of its audience.
   */
  wants(topic: Topic, payload: unknown, channel: string | undefined): boolean {
    const all = this.listeners.get(topic);
    if (all) for (const l of all) if (typeof l === 'function' || !l.wants || l.wants(payload)) return true;
    const byKey = this.keyed.get(topic);
    if (!byKey?.size) return false;
    const audience = this.audienceOf(topic, payload, channel);
    if (audience === 'all') return true;
    for (const key of audience) if (byKey.has(key)) return true;
    return false;
  }

  /**
   * The keys an event's keyed listeners are found under. A copy that came on a user's channel is
   * that user's alone: a direct conversation's event arrives once per user, and an instance with
   * both users connected must not deliver it twice.
   */
  private audienceOf(topic: Topic, payload: unknown, channel: string | undefined): Audience {
    const user = channel === undefined ? undefined : this.routes.userOfChannel(channel);
    return user !== undefined ? [user] : (this.audiences.get(topic)?.(payload, channel) ?? 'all');
  }

  /** Hands an event to the keyed listeners of these keys only (an event meant for one viewer's subscriptions here). */
  dispatchTo(topic: Topic, keys: Iterable<string>, payload: unknown): void {
    const byKey = this.keyed.get(topic);
    if (!byKey) return;
    for (const key of keys) {
      const held = byKey.get(key);
      if (held === undefined) continue;
      if (held instanceof Set) this.call(topic, held, payload);
      else this.offer(topic, held, payload);
    }
  }

  clear(): void {
    this.listeners.clear();
    this.keyed.clear();
  }

  /** Every keyed listener once, though it may be held under several keys. */
  private dispatchToAll(topic: Topic, byKey: Map<string, Held>, payload: unknown): void {
    const seen = new Set<Receiver>();
    for (const held of byKey.values()) {
      if (!(held instanceof Set)) {
        if (!seen.has(held)) seen.add(held), this.offer(topic, held, payload);
      } else for (const l of held) if (!seen.has(l)) seen.add(l), this.offer(topic, l, payload);
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
}

/** How long after its catch-up a newly taken channel still checks for duplicates. */
const YOUNG_MS = 10_000;

/** A channel taken recently: what was dispatched on it, so the catch-up after taking it delivers nothing twice. */
interface Young {
  seen: Set<string>;
  timer?: NodeJS.Timeout;
}

/**
 * Channels taken with a catch-up to follow: between the SUBSCRIBE and the read of what was
 * published before it, an event can come both ways. Until YOUNG_MS after the catch-up, each
 * remembers the ids it dispatched and drops a second copy. Channels are keyed by suffix.
 */
export class YoungChannels {
  private readonly young = new Map<string, Young>();

  /** A channel is being subscribed: with `catchUp` it remembers what arrives (and what it saw before), else nothing. */
  taking(channel: string, catchUp: boolean): void {
    const young = this.young.get(channel);
    if (young?.timer) clearTimeout(young.timer);
    if (catchUp) this.young.set(channel, { seen: young?.seen ?? new Set() });
    else this.young.delete(channel);
  }

  has(channel: string): boolean {
    return this.young.has(channel);
  }

  /** How many channels are young now (none, most of the time: nothing to check). */
  get size(): number {
    return this.young.size;
  }

  /** Whether an event on the channel was dispatched before; if not, it is remembered (on a young channel). */
  repeated(channel: string, topic: Topic, id: unknown): boolean {
    const young = this.young.get(channel);
    if (!young || typeof id !== 'string') return false;
    const seen = `${topic}\u0000${id}`;
    if (young.seen.has(seen)) return true;
    young.seen.add(seen);
    return false;
  }

  /** The catch-up is done: the channel stops remembering YOUNG_MS from now. */
  caughtUp(channel: string): void {
    const young = this.young.get(channel);
    if (!young) return;
    young.timer = setTimeout(() => this.young.get(channel) === young && this.young.delete(channel), YOUNG_MS);
    young.timer.unref();
  }

  forget(channel: string): void {
    const young = this.young.get(channel);
    if (young?.timer) clearTimeout(young.timer);
    this.young.delete(channel);
  }

  channels(): string[] {
    return [...this.young.keys()];
  }

  dispose(): void {
    for (const young of this.young.values()) clearTimeout(young.timer);
    this.young.clear();
  }
}

/** What the routing drives: the PubSub's channel taking and local audiences. */
export interface Routable {
  take(channel: string, catchUp?: boolean): Promise<boolean>;
  drop(channel: string): void;
  catchUp<T extends Topic>(topic: T, channel: string, payloads: TopicPayloads[T][], idOf: (p: TopicPayloads[T]) => string): void;
  routeLocally<T extends Topic>(topic: T, audience: AudienceOf<T>): void;
}

type Scope = 'group' | 'project';

/** The membership index (modules/membership) as the routing sees it. */
export interface LocalMemberships {
  /** The users connected here who are members; undefined when there are none. */
  localMembers(scope: Scope, id: string): Iterable<string> | undefined;
  /** Sets the one watcher, told when this instance starts or stops needing a scope's events. */
  watch(watcher: {
    taken(scope: Scope | 'user', id: string, cause: 'connect' | 'join'): Promise<unknown>;
    dropped(scope: Scope | 'user', id: string): void;
  }): void;
}

export interface ConversationRouting {
  memberships: LocalMemberships;
  /** The channel of a group's, a project's or a connected user's events. */
  channelOf(scope: Scope | 'user', id: string): string;
  /** Messages a conversation may have had, since `joiners` joined it, before this instance took its channel (read back from the database). */
  missed(scope: Scope, id: string, joiners: readonly string[]): Promise<MessagePayload[]>;
  /** A user's channel was let go: their conversations' events no longer come here. */
  userDropped(userId: string): void;
}

/**
 * Where conversation events go. Upstream, this instance takes the channel of every group and
 * project that has a member connected here, and of every connected user (their direct
 * conversations and sessions), so it receives no conversation it has no one in. Here, an event
 * is handed only to the subscriptions of the users it reaches (its local audience).
 */
export function routeConversations(pubsub: Routable, r: ConversationRouting): void {
  const { memberships } = r;
  memberships.watch({
    async taken(scope, id, cause) {
      // Joined while connected: what was published to the conversation before SUBSCRIBE took effect is read back.
      const catchUp = cause === 'join' && scope !== 'user';
      const channel = r.channelOf(scope, id);
      const fresh = await pubsub.take(channel, catchUp);
      if (!fresh || !catchUp) return;
      // The members connected here: the one who joined (none was here before, or the channel was taken).
      const missed = await r.missed(scope, id, [...(memberships.localMembers(scope, id) ?? [])]).catch(() => []);
      pubsub.catchUp(Topic.MessageAdded, channel, missed, (p) => p.id);
    },
    dropped(scope, id) {
      pubsub.drop(r.channelOf(scope, id));
      if (scope === 'user') r.userDropped(id);
    },
  });
  const members = (scope: Scope, id: string): Iterable<string> => memberships.localMembers(scope, id) ?? [];
  pubsub.routeLocally(Topic.MessageAdded, (p) => {
    if (p.groupId) return members('group', p.groupId);
    if (p.projectId && !p.recipientId) return members('project', p.projectId);
    return p.recipientId ? [p.senderId, p.recipientId] : [p.senderId];
  });
  // The conversation events go to the same local audiences as the messages they are about.
  const inScope = (s: ConversationScope) => (s.groupId ? members('group', s.groupId) : s.projectId ? members('project', s.projectId) : (s.userIds ?? []));
  pubsub.routeLocally(Topic.MessageEvent, ({ message: m }) =>
    m.groupId ? members('group', m.groupId) : m.projectId && !m.recipientId ? members('project', m.projectId) : [m.senderId, ...(m.recipientId ? [m.recipientId] : [])],
  );
  pubsub.routeLocally(Topic.ReadReceipt, inScope);
  pubsub.routeLocally(Topic.Typing, inScope);
  // A read marker or a private message is for its users alone; the rest reaches every member.
  pubsub.routeLocally(Topic.ConversationUpdated, (p) => p.only ?? inScope(p));
  pubsub.routeLocally(Topic.SessionEvent, (p) => [p.userId]);
  pubsub.routeLocally(Topic.FriendEvent, (p) => p.audience);
  pubsub.routeLocally(Topic.PresenceChanged, (p) => [p.userId]);
  pubsub.routeLocally(Topic.GroupEvent, (e) => e.audience ?? 'all');
  pubsub.routeLocally(Topic.ProjectAction, (p) => p.entries.map((e) => e.recipientId));
}
