import { randomUUID } from 'node:crypto';
import { warnAtMostEvery, type Logger } from '../logger';
import type { RedisConnections } from '../redis';
import { createBroker, type Broker } from './broker';
import { Hub, YoungChannels, type AudienceOf, type Keys, type Listener, type Receiver } from './hub';
import { EventOrder, type InOrder, type InOrderOptions, type Ordered } from './order';
import { TopicStream, type PushIterator } from './stream';
import { CONVERSATION_CHANNELS, Topic, type ChannelRoutes, type MessageEventPayload, type MessagePayload, type TopicPayloads } from './topics';

export type { Audience, AudienceOf, Keys, Listener, Receiver } from './hub';
export type { PushIterator, Sink } from './stream';

/**
 * A message from the presence sweep carrying many transitions (`{ parleyBatch: [payload, ...] }`):
 * it announces thousands at once from inside Redis (a Lua PUBLISH on the topic-wide channel).
 */
export const SWEEP_BATCH_FIELD = 'parleyBatch';

/** The instance that published an event, in its envelope: its own echo is skipped. */
const ORIGIN = 'parleyOrigin';
/** The envelope's origin field, for the presence store's Lua PUBLISH of per-user transitions. */
export const ENVELOPE_ORIGIN = ORIGIN;

/**
 * An event between instances (on a conversation channel, with its topic); bare payloads come from
 * Redis itself. Events published together on a channel travel in one envelope: the first as
 * `topic` and `payload` (all an instance of an earlier release reads), the others' topics in
 * `more` (before the payloads, so that our own echo is counted without parsing it) and their
 * payloads in `then`.
 */
interface Envelope {
  [ORIGIN]: string;
  topic?: Topic;
  more?: Topic[];
  payload: unknown;
  then?: unknown[];
}

/** One event of a topic, for publishTogether. */
export type TopicEvent = { [T in Topic]: { topic: T; payload: TopicPayloads[T] } }[Topic];

/** The events of an envelope from a conversation channel, in order (none when it is not one). */
export function eventsOf(message: unknown): { topic: Topic; payload: unknown }[] {
  const envelope = isObject(message) && ORIGIN in message ? (message as unknown as Envelope) : undefined;
  if (!envelope?.topic) return [];
  const events = [{ topic: envelope.topic, payload: envelope.payload }];
  const { more, then } = envelope;
  if (Array.isArray(more) && Array.isArray(then) && more.length === then.length) for (let i = 0; i < more.length; i++) events.push({ topic: more[i], payload: then[i] });
  return events;
}

/** The broker channel of a conversation channel suffix (g:<id>, p:<id>, u:<id>). */
const CHANNEL_PREFIX = `${CONVERSATION_CHANNELS}:`;
const channelName = (suffix: string): string => CHANNEL_PREFIX + suffix;
/** How long a channel's lines wait for its catch-up before they open without it (see take). */
const CATCH_UP_WAIT_MS = 2000;
/**
 * How long a channel's lines wait for what is read back once Redis is back (see recoverFrom): new
 * lines before they open, started ones before they give a gap up. The read-back shares the pool
 * with every send and socket that comes back at once: 4.5 s in a probe's run (DB_POOL_MAX 5).
 */
const RECOVERY_WAIT_MS = 5000;
/** How long after its connection came back an instance sends again what it could not publish and no other instance reads back (all but new messages): longer than ioredis's longest wait between tries (redis.ts), so others listen again by then. */
const RESEND_AFTER_MS = 3000;
/** Events kept in order by their place (see EventOrder), sent again with it when their publish failed (see keepUnsent). */
const NUMBERED: ReadonlySet<Topic> = new Set([Topic.MessageAdded, Topic.GroupEvent, Topic.ProjectAction]);
/** How long before the loss of Redis a message read back after it may have been stored: its publish was still on its way then. */
const RECOVERY_MARGIN_MS = 5000;
/** Events published again after an outage however long it lasted (see keepUnsent): nothing newer tells what they tell. */
const KEPT_HOWEVER_LONG: ReadonlySet<Topic> = new Set([Topic.FriendEvent, Topic.SafetyChanged]);
/** Events from Redis held at most while memberships are read again after a reconnect (see resyncOnReconnect); past it they go at once. */
const HELD_MAX = 100_000;
/**
 * How long after its connection is back the listening side counts as hearing its channels again:
 * ioredis says ready before it sends their SUBSCRIBE, and a store asked meanwhile on another
 * connection could answer for a moment it did not hear (see heardFrom).
 */
const RESUBSCRIBED_MS = 1000;
/** The most messages a read-back after a loss of Redis delivers (the reader's limit, see MessageService.storedOn). */
export const RECOVERY_MAX = 10_000;
/** At most one warning of failed publishes (with the stack) per this long; the others are debug lines. */
const STACK_EVERY_MS = 10_000;
/** Events whose failed publish an instance keeps to publish again (the oldest rows go first). */
const UNSENT_MAX = 1000;
/** How old a kept row or receipt may be when it is published again (other instances remember newer ones for a minute). */
const RESEND_ROWS_MS = 50_000;
/** ioredis's message for a command that waited past its commandTimeout: written, so a Redis that answers again runs it. */
const COMMAND_TIMED_OUT = 'Command timed out';
interface Unsent {
  event: TopicEvent;
  at: number;
  /** Its PUBLISH was written and timed out (Redis held it): a Redis that answers again still runs it. */
  written: boolean;
}
/** Events a subscription keeps while its check runs (as a pulled stream's queue). */
const EARLY_MAX = 1000;

const isObject = (m: unknown): m is Record<string, unknown> => m !== null && typeof m === 'object';

/**
 * The realtime node: what the application publishes and subscribes through. It joins three parts:
 * the Broker (between instances: a channel per topic, or for a topic on channels (ChannelRoutes)
 * one per conversation or user this instance `take`s while it has a member), the EventOrder
 * (the order subscribers see), and the Hub (this instance's listeners and their audiences).
 */
export class PubSub {
  /** This instance, as the origin of what it publishes. */
  private readonly origin = randomUUID();
  /** How every envelope published here starts: the echo is known without parsing it. */
  private readonly echo = `{"${ORIGIN}":${JSON.stringify(this.origin)}`;
  private readonly hub: Hub;
  private readonly events: EventOrder;
  private readonly young = new YoungChannels();
  /** Topic-wide channels subscribed, and when each was. */
  private readonly upstream = new Map<Topic, Promise<void>>();
  /** Conversation channels taken (by suffix): how many holders. */
  private readonly holders = new Map<string, number>();
  /** Conversation channels subscribed (by suffix): since when this instance receives them. */
  private readonly heardSince = new Map<string, number>();
  /** Channel subscriptions in flight (a second taker waits for the same). */
  private readonly subscribing = new Map<string, Promise<unknown>>();
  /** Channels first taken while off Redis, with when: what the read-back finds of them from well before is not theirs (see take). */
  private readonly takenOffline = new Map<string, number>();
  /** Events whose publish failed, oldest first, with when (see keepUnsent). */
  private unsent: Unsent[] = [];
  /** Removes the listener that marks the return to Redis (resumedAt) and publishes what failed meanwhile. */
  private readonly offReconnect: () => void;
  /** Logs a failed publish (see publishTogetherSafe). */
  private readonly publishFailed: ReturnType<typeof warnAtMostEvery>;
  private disposed = false;
  /** Removes recoverFrom's reconnect listener. */
  private stopRecovering: (() => void) | undefined;
  /** What is read again once this instance is back on Redis (see resyncOnReconnect). */
  private resyncTask: (() => Promise<unknown>) | undefined;
  /** Events from Redis held while that read runs, in their order (see holdUntilResynced). */
  private held: [string, string][] | undefined;
  /** Settles once the read after the last reconnect is done (resolved when there was none). */
  resynced: Promise<unknown> = Promise.resolve();
  /** Checks this instance's local audience of channels before it delivers there while off Redis (see checkLocallyWhileOff). */
  private localCheck: ((channels: string[]) => Promise<unknown>) | undefined;
  /** Publishes that failed (Redis down); exposed as a metric. */
  publishFailures = 0;
  /** From when the listening connection hears every channel again after its last loss (see heardFrom). */
  private resumedAt = -Infinity;
  /** Events taken from upstream (Redis), by topic; the echo of our own included. */
  readonly received: Partial<Record<Topic, number>> = {};

  constructor(
    private readonly broker: Broker,
    private readonly logger: Logger,
    private readonly routes: ChannelRoutes,
    /** How new messages wait for the ones before them (see InOrder). */
    order: InOrderOptions = {},
  ) {
    this.hub = new Hub(routes, logger);
    this.publishFailed = warnAtMostEvery(logger, STACK_EVERY_MS, 'publish failed; the change is committed and reachable by query');
    this.events = new EventOrder(this.hub, routes, (channel) => this.takes(channel), order);
    broker.onMessage((name, text) => (this.held && this.held.length < HELD_MAX ? void this.held.push([name, text]) : this.receive(name, text)));
    this.offReconnect =
      broker.onReconnect?.((_lostAt, stalled) => {
        this.resumedAt = Date.now() + RESUBSCRIBED_MS;
        this.holdUntilResynced();
        // New messages at once: an instance that comes back later reads them back itself
        // (recoverFrom), and a line waits for them in their place. What no instance can read back
        // (a group's events, a project's actions, a message's changes, sidebar rows and receipts)
        // once the others are back too (each tries every 2 s at most): sent at once, a rename, or
        // the rows of a send, reached none that came back a moment later (outside probes: 4 of 4,
        // 3 of 11). A stall lost no one's subscriptions: all at once.
        void this.resendUnsent(30, stalled, stalled ? undefined : (t) => t === Topic.MessageAdded);
        if (!stalled) setTimeout(() => void this.resendUnsent(30, stalled), RESEND_AFTER_MS).unref();
      }) ?? (() => undefined);
  }

  get kind(): Broker['kind'] {
    return this.broker.kind;
  }

  /** New messages go to this instance's subscribers in their conversation's order. */
  get order(): InOrder<Ordered> {
    return this.events.lines;
  }

  /** Subscription listeners examined (a selector run) for an event. */
  get evaluations(): number {
    return this.hub.evaluations;
  }

  /** Events dropped for slow consumers. */
  get dropped(): number {
    return this.hub.dropped;
  }

  /** Where a conversation line looks for messages whose publish it missed, before it gives them up (see EventOrder.fillFrom). */
  fillGapsFrom(stored: (q: { conversationKey: string; after: string; before: string; limit: number }) => Promise<MessagePayload[]>): void {
    // What a join's catch-up delivered went through the line too: a search skips its places.
    // A channel taken off Redis is heard from once its SUBSCRIBE lands: till then, from when it was taken.
    // While off Redis, a channel held through the loss is not heard either: a line opening then (a
    // message sent through this instance) reads what was stored since the loss, else it opened past
    // what others sent meanwhile, and the read-back once Redis was back found its line past them
    // (an outside probe: direct messages lost for good, 8 s outages).
    const heardFrom = (channel: string) => {
      const heard = this.heardSince.get(channel) ?? this.takenOffline.get(channel);
      const lost = this.broker.lostSince?.();
      return heard === undefined || lost === undefined ? heard : Math.max(heard, lost - RECOVERY_MARGIN_MS);
    };
    this.events.fillFrom(
      stored,
      heardFrom,
      (channel) => (!this.heardSince.has(channel) && this.takenOffline.has(channel)) || this.offRedis(),
    );
  }

  /**
   * Where the messages published while this instance was off Redis are read back, once it is on
   * again: `stored` reads the messages of these channels (group, project and user channels, by
   * suffix) stored since `since`, oldest first, as published. Each goes to subscriptions in its
   * line's place, unless its line delivered it already; lines wait for them meanwhile (up to
   * RECOVERY_WAIT_MS: one opening does not start past them, a started one keeps its gaps for them). Before,
   * a line's lost first messages were never delivered, and a lost last one waited for a next
   * message to show its gap (an outside probe: 144 of 11,803 deliveries around 3 s cuts).
   */
  recoverFrom(stored: (channels: string[], since: Date) => Promise<MessagePayload[]>): void {
    this.stopRecovering?.();
    let reading = 0;
    this.stopRecovering = this.onReconnect((lostAt) => {
      const channels = [...this.holders.keys()];
      const takenOffline = new Map(this.takenOffline);
      this.takenOffline.clear();
      if (!channels.length) return;
      // A channel taken meanwhile by sockets that opened then (each read what came before as it
      // opened, as clients do): not what was stored well before that. Nor, on one taken before the
      // loss, what was stored before it was taken: its sockets opened after it, and a read-back
      // with no traffic since delivered it as new (an outside probe, 2 of 2).
      const before = (c: string, p: MessagePayload) => {
        const offline = takenOffline.get(c);
        if (offline !== undefined) return offline > Date.parse(p.createdAt) + RECOVERY_MARGIN_MS;
        return (this.heardSince.get(c) ?? -Infinity) > Date.parse(p.createdAt);
      };
      // A second loss while this one is read back: the hold is the later read-back's to release.
      const mine = ++reading;
      for (const c of channels) this.events.lines.holdOpening(c, RECOVERY_WAIT_MS);
      stored(channels, new Date(lostAt - RECOVERY_MARGIN_MS))
        .then(
          (payloads) => {
            if (this.disposed) return;
            for (const p of payloads) for (const c of this.routes.channelsOf(Topic.MessageAdded, p) ?? []) if (this.holders.has(c) && !before(c, p)) this.events.recovered(c, p);
            const fields = { channels: channels.length, messages: payloads.length };
            if (payloads.length >= RECOVERY_MAX) this.logger.warn(fields, 'messages published while off Redis read back, the newest left out (too many)');
            else this.logger.info(fields, 'messages published while off Redis read back');
          },
          (e) => this.logger.warn({ err: e, channels: channels.length }, 'messages published while off Redis could not be read back'),
        )
        .finally(() => {
          if (mine === reading && !this.disposed) for (const c of channels) this.events.lines.releaseOpening(c);
        });
    });
  }

  /** Sets how a topic's events find their local listeners by key (the application knows who is where). */
  routeLocally<T extends Topic>(topic: T, audience: AudienceOf<T>): void {
    this.hub.routeLocally(topic, audience);
  }

  /**
   * Publishes to every instance that takes the event's channel.
   * @throws when the broker refuses (Redis down): callers that already committed log and count it.
   */
  publish<T extends Topic>(topic: T, payload: TopicPayloads[T]): Promise<void> {
    return this.publishTogether([{ topic, payload } as TopicEvent]);
  }

  /**
   * Publishes events that go out together (a message and the sidebar change it makes) as publish()
   * does each: to this instance's listeners one after the other, and to other instances as one
   * envelope per channel they share (one PUBLISH, and one echo back, instead of one per event:
   * 4-9% of bench:rooms' rate, A/B), in their order there too. `here` false: to other instances only.
   * @throws as publish() does; none of them is then known to have reached other instances.
   */
  async publishTogether(events: readonly TopicEvent[], here = true): Promise<void> {
    const texts = events.map((e) => JSON.stringify(e.payload));
    // This instance's own listeners get each event at once, as every other instance will get it
    // (a JSON copy), without the round trip through Redis, and even when Redis refuses it; the
    // echo that comes back carries our origin and is skipped. The fan-out to local sockets thus
    // happens before the mutation answers, which keeps a fast client from outrunning delivery
    // (except for a new message that waits its turn in its conversation: see InOrder).
    const channelsOf = events.map((e) => this.routes.channelsOf(e.topic, e.payload));
    if (here && this.localCheck && this.offRedis()) await this.localCheck(channelsOf.flatMap((c) => c ?? [])).catch(() => undefined);
    for (let i = 0; here && i < events.length; i++) {
      // On a channel taken lately (see take), a catch-up may deliver this event too: it is
      // remembered there, and not delivered again if the catch-up came first (a message committed
      // while a member's join read what came before it was delivered twice).
      if (channelsOf[i] && this.young.size && this.repeatedOnYoung(channelsOf[i]!, events[i])) continue;
      if (!this.events.wanted(events[i].topic, events[i].payload, channelsOf[i])) continue;
      this.events.admit(events[i].topic, JSON.parse(texts[i]), undefined);
    }
    const onChannel = new Map<string, number[]>();
    const sends: Promise<void>[] = [];
    for (let i = 0; i < events.length; i++) {
      const channels = channelsOf[i];
      if (!channels) sends.push(this.broker.publish(events[i].topic, `${this.echo},"payload":${texts[i]}}`));
      else for (const c of channels) onChannel.get(c)?.push(i) ?? onChannel.set(c, [i]);
    }
    for (const [c, [first, ...rest]] of onChannel) {
      const more = rest.length ? `,"more":${JSON.stringify(rest.map((i) => events[i].topic))}` : '';
      const then = rest.length ? `,"then":[${rest.map((i) => texts[i]).join(',')}]` : '';
      sends.push(this.broker.publish(channelName(c), `${this.echo},"topic":${JSON.stringify(events[first].topic)}${more},"payload":${texts[first]}${then}}`));
    }
    try {
      await Promise.all(sends);
    } catch (e) {
      this.publishFailures++;
      // A resend (`here` false) that failed is kept by resendUnsent itself, once.
      if (here) this.keepUnsent(events, e instanceof Error && e.message === COMMAND_TIMED_OUT);
      throw e;
    }
  }

  /** Whether this instance receives a channel's events: a conversation channel it holds, or a topic-wide one. */
  private takes(channel: string): boolean {
    return this.holders.has(channel) || this.upstream.has(channel as Topic);
  }

  /**
   * Events whose publish failed that other instances can't read back themselves, published again
   * once this instance is back on Redis: new messages, a group's events and a project's actions
   * (numbered, each marked `resent`: a group's events are kept nowhere else, and sockets open
   * through an outage never heard a rename or a departure: an outside probe, 4 of 4), and the
   * sidebar rows and read receipts that carry members' read markers (a marker moved here while cut
   * off left the others' unread counts wrong for good: an outside probe, 4 of 4). And a message's
   * edits, deletions, reactions, pins and thread counters, each told with the message's version, so
   * that a late copy loses to a newer one as rows do (NewestVersions): sockets open through an
   * outage kept the old text, reactions and pins for good. And friend events and blocks
   * (KEPT_HOWEVER_LONG), which no newer event stands for: a friend request no socket would hear of
   * otherwise (an outside probe: REQUESTED lost for good, 2 of 2), and a block whose listeners end
   * what the blocker was shown (the blocked user's typing went on to its lapse on other instances,
   * and their presence as it was: an outside probe). Block lists themselves are read again.
   */
  private keepUnsent(events: readonly TopicEvent[], written: boolean): void {
    const at = Date.now();
    for (const e of events) {
      const p = e.payload as MessagePayload;
      if (NUMBERED.has(e.topic)) {
        if (typeof p.pos !== 'number' || p.replay || p.resent) continue;
      } else if (e.topic === Topic.MessageEvent) {
        if (typeof (e.payload as MessageEventPayload).message.version !== 'number') continue;
      } else if (e.topic !== Topic.ConversationUpdated && e.topic !== Topic.ReadReceipt && !KEPT_HOWEVER_LONG.has(e.topic)) continue;
      this.unsent.push({ event: e, at, written });
      if (this.unsent.length <= UNSENT_MAX) continue;
      // Over the bound, rows, receipts and message events go before new messages and group events.
      const row = this.unsent.findIndex((u) => !NUMBERED.has(u.event.topic));
      this.unsent.splice(row >= 0 ? row : 0, 1);
    }
  }

  /**
   * Back on Redis: what this instance could not publish goes out again, in its order (see
   * keepUnsent). Other instances' lines take a message unless they passed its place, its sidebar
   * rows and receipts as any (newer copies win there). Without it, an instance cut off alone left
   * the others' subscribers without its users' messages until a next one showed the gap (a
   * review), or for good where the conversation had no line yet. After a stall (`stalled`: no
   * connection dropped) only those refused before they were written: Redis runs the ones it held,
   * and their copies came twice, the second out of order (an outside probe, 3 of 3).
   */
  private async resendUnsent(tries = 30, stalled = false, only?: (topic: Topic) => boolean): Promise<void> {
    if (!this.unsent.length || this.disposed) return;
    const kept = only ? this.unsent.filter((u) => only(u.event.topic)) : this.unsent;
    this.unsent = only ? this.unsent.filter((u) => !only(u.event.topic)) : [];
    const failed: Unsent[] = [];
    // Rows and receipts only while other instances still remember newer ones to prefer (their
    // newest heads and versions: a minute); a late row would show an older state.
    const fresh = Date.now() - RESEND_ROWS_MS;
    for (const u of kept) {
      const e = u.event;
      if ((!NUMBERED.has(e.topic) && !KEPT_HOWEVER_LONG.has(e.topic) && u.at < fresh) || (stalled && u.written)) continue;
      const again = NUMBERED.has(e.topic) ? ({ topic: e.topic, payload: Object.assign({}, e.payload, { resent: true as const }) } as TopicEvent) : e;
      // One at a time, so that one that failed is the only one sent again; to other instances
      // only (this one's listeners had it when it happened).
      if (failed.length || !(await this.publishTogetherSafe([again], false))) failed.push(u);
    }
    if (!failed.length) return;
    // The publishing connection is not back yet (the listening one is): again in a second, for a while.
    this.unsent = failed.concat(this.unsent).slice(-UNSENT_MAX);
    if (tries > 1) setTimeout(() => void this.resendUnsent(tries - 1, stalled, only), 1000).unref();
  }

  /**
   * Runs `task` while this instance is off Redis, `pauseMs` after the last run ended (a run over
   * many users never overlaps the next, nor runs back to back): what other instances tell over
   * Redis meanwhile never comes. Returns its removal.
   */
  whileOff(pauseMs: number, task: () => Promise<unknown>): () => void {
    const connected = this.broker.connected?.bind(this.broker);
    if (!connected) return () => undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const next = () => {
      if (stopped) return;
      timer = setTimeout(() => {
        if (this.disposed) return;
        if (connected()) return next();
        void task()
          .catch((e: unknown) => this.logger.debug({ err: e }, 'a task while off Redis failed'))
          .finally(next);
      }, pauseMs);
      timer.unref();
    };
    next();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /**
   * What this instance reads again once it is back on Redis (memberships, block lists): changes
   * made elsewhere meanwhile were told over Redis, so never here. Until it is read, what comes from
   * Redis waits (HELD_MAX at most), then goes in its order: another instance's events published
   * again at once (a message sent through it while Redis was away) reached, here, a member removed
   * meanwhile through a third (an outside probe: three instances, 2 of 2).
   */
  resyncOnReconnect(task: () => Promise<unknown>): void {
    this.resyncTask = task;
  }

  private holdUntilResynced(): void {
    const task = this.resyncTask;
    if (!task || this.disposed) return;
    const held = (this.held ??= []);
    const resynced: Promise<unknown> = task()
      .catch((e: unknown) => this.logger.warn({ err: e }, 'reading memberships again after Redis came back failed'))
      .finally(() => {
        // A later reconnect's read holds on: the last one to end lets them go.
        if (this.held !== held || this.resynced !== resynced) return;
        this.held = undefined;
        for (const [name, text] of held) this.receive(name, text);
      });
    this.resynced = resynced;
  }

  /**
   * While this instance is off Redis, what it publishes reaches its own sockets only after `check`
   * read again who of them may have it (a group's or project's members here): a removal made
   * through another instance meanwhile never reached this one, and its sockets got the group's
   * messages and edits sent through it for up to the resync's 2 s (an outside probe, 2 of 2).
   */
  checkLocallyWhileOff(check: (channels: string[]) => Promise<unknown>): void {
    this.localCheck = check;
  }

  /** Whether this instance is off Redis now (an outage, or Redis holding its commands): what other instances publish doesn't reach it. */
  offRedis(): boolean {
    return this.broker.connected?.() === false;
  }

  /** Calls `listener` each time this instance is back on Redis after a loss: events published meanwhile never reached it. */
  onReconnect(listener: (lostAt: number) => void): () => void {
    return this.broker.onReconnect?.(listener) ?? (() => undefined);
  }

  /** Publishes and never throws: for events whose data is already committed. */
  publishSafe<T extends Topic>(topic: T, payload: TopicPayloads[T]): Promise<boolean> {
    return this.publishTogetherSafe([{ topic, payload } as TopicEvent]);
  }

  /** publishTogether() that never throws: for events whose data is already committed; false when it failed. */
  async publishTogetherSafe(events: readonly TopicEvent[], here = true): Promise<boolean> {
    try {
      await this.publishTogether(events, here);
      return true;
    } catch (e) {
      // Logged with its request id (at debug but once in STACK_EVERY_MS): with Redis away every send
      // failed alike, a warning each (an outside probe: 88 lines an instance in a 20 s run), each
      // with its stack 20 MB of log over nine 3 s cuts (another).
      this.publishFailed(e, { topics: events.map((e) => e.topic) });
      return false;
    }
  }

  /** Hands an event to this instance's subscriptions of its topic as a publish would here (every local listener it is routed to); nothing crosses Redis. */
  dispatchHere<T extends Topic>(topic: T, payload: TopicPayloads[T]): void {
    this.hub.dispatch(topic, payload, undefined);
  }

  /** Hands an event to this instance's subscriptions held under `keys` only; nothing crosses Redis. */
  deliverLocally<T extends Topic>(topic: T, keys: Iterable<string>, payload: TopicPayloads[T]): void {
    this.hub.dispatchTo(topic, keys, payload);
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
    this.hub.add(topic, listener, keys);
    this.listenUpstream(topic);
  }

  /** Removes what on() or add() added, with the same topic and keys. */
  off<T extends Topic>(topic: T, listener: Listener<T> | Receiver, keys?: Keys): void {
    this.hub.off(topic, listener, keys);
  }

  /**
   * An async iterator over a topic for one GraphQL subscription. `select` maps each
   * payload to what this subscriber should see, or undefined to skip it. With `keys`, it is
   * only offered events whose audience holds one of them (see routeLocally).
   * A consumer that falls behind loses the oldest events (counted in `dropped`).
   */
  iterate<T extends Topic, R>(topic: T, select: (payload: TopicPayloads[T]) => R | undefined, opts: { keys?: Keys } = {}): PushIterator<R> {
    this.listenUpstream(topic);
    return new TopicStream<T, R>(this.hub, topic, select, opts.keys);
  }

  /**
   * iterate() for a subscription that checks something first (the viewer's access to the
   * conversation it names, read from the database): it listens from the call, and what arrives
   * during the check waits and goes through `select` once the check is known. A client that
   * subscribes and then reads what it missed (history) thus misses nothing published between its
   * subscribe frame and the check's answer, which under load took longer than its wait. When the
   * check throws, nothing is kept and the error is the subscription's, as before. A check known
   * already (a value, not a promise: nothing to read) makes a plain stream, with nothing to hold.
   */
  async iterateChecked<T extends Topic, C, R>(
    topic: T,
    check: C | Promise<C>,
    select: (payload: TopicPayloads[T], checked: C) => R | undefined,
    opts: { keys?: Keys } = {},
  ): Promise<PushIterator<R>> {
    if (!(check instanceof Promise)) return this.iterate(topic, (p) => select(p, check), opts);
    let early: TopicPayloads[T][] | undefined = [];
    let checked!: C;
    this.listenUpstream(topic);
    const stream = new TopicStream<T, R>(
      this.hub,
      topic,
      (p) => {
        if (!early) return select(p, checked);
        // A pulled stream's bound (see TopicStream): beyond, the oldest go.
        if (early.push(p) > EARLY_MAX) early.shift(), this.hub.dropped++;
        return undefined;
      },
      opts.keys,
    );
    try {
      checked = await check;
    } catch (e) {
      void stream.return();
      throw e;
    }
    const waited = early;
    early = undefined;
    for (const p of waited) stream.receive(p);
    return stream;
  }

  /**
   * Takes one conversation channel (reference-counted) and with it every topic on channels's
   * events on it: resolves once this instance receives it (off Redis, at once: what comes meanwhile
   * is read back on its return, see recoverFrom), with true when this call subscribed it (it was
   * not taken before). With `catchUp`, the caller will call catchUp() once it has read
   * what may have been published before: until a while after that, what arrives is remembered so
   * that nothing is delivered twice. Without it nothing is remembered (a channel taken for a
   * connecting member is never caught up: kept young, it remembered every event it carried).
   */
  async take(channel: string, catchUp = false): Promise<boolean> {
    const holders = this.holders.get(channel) ?? 0;
    this.holders.set(channel, holders + 1);
    // In memory there is no gap to cover: publish() hands every event to this instance's listeners.
    if (this.broker.kind === 'memory') return false;
    if (holders > 0) {
      if (this.broker.connected?.() !== false) await this.subscribing.get(channel);
      return false;
    }
    // Until the catch-up is done, what arrives is remembered, so it is not delivered again; and
    // the channel's lines wait for it to open, so that what it reads comes before what follows.
    this.young.taking(channel, catchUp);
    if (catchUp) this.events.lines.holdOpening(channel, CATCH_UP_WAIT_MS);
    const name = channelName(channel);
    const subscribed = this.broker.subscribe(name).catch((e) => this.logger.error({ err: e, channel: name }, 'channel subscribe failed'));
    this.subscribing.set(channel, subscribed);
    const landed = () => {
      if (this.subscribing.get(channel) !== subscribed) return;
      this.subscribing.delete(channel);
      if (this.holders.has(channel)) this.heardSince.set(channel, Date.now());
    };
    // Off Redis (an outage): the SUBSCRIBE waits in the connection's queue until it is back, and
    // what is published meanwhile is read back then (recoverFrom). A socket opening now goes on
    // without it: it waited for Redis, was told to try again after 10 s, and an SSE stream got no
    // answer at all, while queries and mutations were served (an outside probe: 3 of 3).
    if (this.broker.connected?.() === false) {
      this.takenOffline.set(channel, Date.now());
      void subscribed.then(landed);
      return true;
    }
    await subscribed;
    landed();
    return true;
  }

  /** Releases one hold on a channel; the last one unsubscribes. */
  drop(channel: string): void {
    const holders = (this.holders.get(channel) ?? 0) - 1;
    if (holders > 0) return void this.holders.set(channel, holders);
    this.holders.delete(channel);
    this.heardSince.delete(channel);
    this.takenOffline.delete(channel);
    this.events.forget(channel);
    this.young.forget(channel);
    this.subscribing.delete(channel);
    void this.broker.unsubscribe(channelName(channel)).catch(() => undefined);
  }

  /**
   * Delivers events that may have been published on a channel before this instance took it
   * (read back from the database by the caller), skipping what already arrived. Then, for a
   * while, the channel still drops duplicates of what the catch-up delivered.
   */
  catchUp<T extends Topic>(topic: T, channel: string, payloads: TopicPayloads[T][], idOf: (p: TopicPayloads[T]) => string): void {
    if (!this.young.has(channel)) return this.events.lines.releaseOpening(channel);
    for (const p of payloads) {
      if (this.young.repeated(channel, topic, idOf(p))) continue;
      this.events.caughtUp(topic, p, channel);
    }
    this.young.caughtUp(channel);
    this.events.lines.releaseOpening(channel);
  }

  /**
   * Since when every event of `topic` like `payload` published anywhere reaches this instance: in
   * one process, always (-Infinity); else since it took the earliest of the event's conversation
   * channels it holds (a channel let go and taken again reads from when it was taken again), and
   * not before the listening connection came back from its last loss (a time to come for a second
   * after, while its channels are subscribed again: what was published in the gap never came).
   * Undefined when it holds none (a topic-wide topic: never asserted).
   */
  heardFrom<T extends Topic>(topic: T, payload: TopicPayloads[T]): number | undefined {
    if (this.broker.kind === 'memory') return -Infinity;
    let from: number | undefined;
    for (const c of this.routes.channelsOf(topic, payload) ?? []) {
      const since = this.heardSince.get(c);
      if (since !== undefined && (from === undefined || since < from)) from = since;
    }
    return from === undefined ? undefined : Math.max(from, this.resumedAt);
  }

  /** Channels this instance takes now (for tests and metrics). */
  takenChannels(): string[] {
    return [...this.holders.keys()].map(channelName);
  }

  /** Channels that still remember what they carried, to skip a catch-up's duplicates (for tests). */
  rememberingChannels(): string[] {
    return this.young.channels().map(channelName);
  }

  /** Resolves once this instance receives the topic from upstream (a topic on channels: each take() does). */
  ready(topic: Topic): Promise<unknown> {
    return this.listenUpstream(topic) ?? Promise.resolve();
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.held = undefined;
    this.stopRecovering?.();
    this.offReconnect();
    this.young.dispose();
    this.events.dispose();
    await this.broker.close();
    this.upstream.clear();
    this.subscribing.clear();
    this.holders.clear();
    this.heardSince.clear();
    this.hub.clear();
  }

  /** A topic-wide topic's channel is subscribed with its first listener, and kept. */
  private listenUpstream(topic: Topic): Promise<void> | undefined {
    if (this.routes.onChannels(topic) && !this.routes.alsoTopicWide?.(topic)) return undefined;
    let subscribed = this.upstream.get(topic);
    if (subscribed) return subscribed;
    // Refused because this instance stops (a start that found no Redis, too): no error to alert on.
    subscribed = this.broker.subscribe(topic).catch((e) => this.logger[this.disposed ? 'debug' : 'error']({ err: e, channel: topic }, 'upstream subscribe failed'));
    this.upstream.set(topic, subscribed);
    return subscribed;
  }

  private count(topic: Topic): void {
    this.received[topic] = (this.received[topic] ?? 0) + 1;
  }

  /** From the broker: a topic-wide channel is named by its topic; a conversation channel's envelopes name theirs. */
  private receive(name: string, text: string): void {
    const channel = name.startsWith(CHANNEL_PREFIX) ? name.slice(CHANNEL_PREFIX.length) : undefined;
    // Our own events were dispatched when published.
    if (text.startsWith(this.echo)) {
      if (channel === undefined) return this.count(name as Topic);
      for (const topic of this.topicsOfEcho(text)) this.count(topic);
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (e) {
      return this.logger.warn({ err: e, channel: name }, 'unreadable pub/sub message dropped');
    }
    if (channel === undefined) this.receiveOnTopic(name as Topic, message);
    else this.receiveOnChannel(channel, message);
  }

  /** Whether a young channel of the event saw it already; it is remembered on every young one. */
  private repeatedOnYoung(channels: readonly string[], e: TopicEvent): boolean {
    let repeated = false;
    for (const c of channels) if (this.young.repeated(c, e.topic, (e.payload as { id?: unknown } | null)?.id)) repeated = true;
    return repeated;
  }

  /** Envelopes from other instances; bare payloads and sweep batches from the presence store's Lua PUBLISH. */
  private receiveOnTopic(topic: Topic, message: unknown): void {
    if (isObject(message) && Array.isArray(message[SWEEP_BATCH_FIELD])) {
      for (const payload of message[SWEEP_BATCH_FIELD] as unknown[]) this.count(topic), this.events.admit(topic, payload, undefined);
      return;
    }
    this.count(topic);
    this.events.admit(topic, isObject(message) && ORIGIN in message ? (message as unknown as Envelope).payload : message, undefined);
  }

  private receiveOnChannel(channel: string, message: unknown): void {
    for (const { topic, payload } of eventsOf(message)) {
      this.count(topic);
      if (this.young.repeated(channel, topic, (payload as { id?: unknown } | null)?.id)) continue;
      this.events.admit(topic, payload, channel);
    }
  }

  /** The topics of our own envelope on a conversation channel (`…,"topic":"<topic>"[,"more":[…]],"payload":…`). */
  private topicsOfEcho(text: string): Topic[] {
    const start = this.echo.length + ',"topic":"'.length;
    const end = text.indexOf('"', start);
    const topic = text.slice(start, end) as Topic;
    if (!text.startsWith(',"more":', end + 1)) return [topic];
    return [topic, ...(JSON.parse(text.slice(end + 1 + ',"more":'.length, text.indexOf(']', end) + 1)) as Topic[])];
  }
}

export function createPubSub(redis: RedisConnections | undefined, logger: Logger, routes: ChannelRoutes, order: InOrderOptions = {}): PubSub {
  return new PubSub(createBroker(redis), logger, routes, order);
}
