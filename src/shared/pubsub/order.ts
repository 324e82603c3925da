import type { LRUCache } from 'lru-cache';
import { boundedLru } from '../lru';
import { Topic, type ChannelRoutes, type MessageEventPayload, type MessagePayload } from './topics';

/** An event and its position on its line: a message's among all its conversation's messages (one more with each, in commit order: the head's row lock). */
interface Waiting<E> {
  pos: number;
  event: E;
}

interface Line<E> {
  /** The last position delivered; null while the line opens (its first events gather). */
  last: number | null;
  waiting: Waiting<E>[];
  timer: NodeJS.Timeout | undefined;
  /** When it last saw an event. */
  at: number;
  /** The channel it comes on, whose letting go forgets it. */
  channel: string;
}

export interface InOrderOptions {
  /**
   * How long an event waits for the ones before it; then it goes, and the gap is given up. Only a
   * lost publish (Redis refused it, the instance died after its commit) or a stalled instance
   * makes one wait that long; shorter, a busy process gives up gaps that were only late. @default 500
   */
  holdMs?: number;
  /** How long a new line gathers its first events before it starts from the earliest. @default 20 */
  openMs?: number;
  /** A line idle this long starts again (the channel was let go and taken again, say). @default 600000 */
  idleMs?: number;
  /** Lines kept; beyond, the least recently used go. @default 50000 */
  max?: number;
}

/**
 * Delivers each line's events (a conversation's messages, as one instance receives them) in their
 * order. Sends commit one at a time, but what follows a commit races: the answers of two
 * commits back to back, two instances publishing, Redis connections. So an event that comes
 * before the one ahead of it waits, until that one arrives or `holdMs` passes (it was lost: a
 * publish that failed, an instance that died between commit and publish). In order, which is
 * nearly always, nothing waits. A line opens (its first event, or the first after `idleMs`) by
 * gathering what comes within `openMs` and starting from the earliest: nothing says which event
 * is next until one was delivered, and sends racing are milliseconds apart. So the first message
 * after a quiet spell waits `openMs`; the next ones wait for nothing that is not late.
 */
export class InOrder<E> {
  private readonly lines = new Map<string, Line<E>>();
  /** Line keys by the channel they come on. */
  private readonly linesOfChannel = new Map<string, Set<string>>();
  /** How long an event waits for the one ahead of it (MESSAGE_ORDER_HOLD on a server). */
  readonly holdMs: number;
  private readonly openMs: number;
  private readonly idleMs: number;
  private readonly max: number;
  /** Events that waited, and gaps given up (for tests and metrics). */
  held = 0;
  gaps = 0;

  constructor(
    private readonly deliver: (event: E) => void,
    o: InOrderOptions = {},
  ) {
    this.holdMs = o.holdMs ?? 500;
    this.openMs = o.openMs ?? 20;
    this.idleMs = o.idleMs ?? 600_000;
    this.max = o.max ?? 50_000;
  }

  /** An event on line `key`, which comes on `channel`. */
  admit(key: string, pos: number, event: E, channel: string = key): void {
    const now = Date.now();
    let line = this.lines.get(key);
    if (line && !line.waiting.length && now - line.at > this.idleMs) line = undefined;
    else if (line) {
      // Most recently used last, so that the bound lets the idle ones go first.
      this.lines.delete(key);
      this.lines.set(key, line);
    }
    if (!line) line = this.open(key, channel);
    line.at = now;
    if (line.last === null || !this.ready(line, pos)) {
      if (line.last !== null) this.held++;
      line.waiting.push({ pos, event });
      line.waiting.sort((x, y) => x.pos - y.pos);
      line.timer ??= setTimeout(() => this.giveUp(key), this.holdMs).unref();
      return;
    }
    this.pass(line, pos, event);
    this.release(key, line);
  }

  /** An event delivered outside the line (a catch-up read from the database): the line goes on after it. */
  passed(key: string, pos: number): void {
    const line = this.lines.get(key);
    if (line?.last != null) line.last = Math.max(line.last, pos);
  }

  /**
   * The channel was let go: what comes on it while it is not taken goes by, so its lines would
   * wait at that gap once it is taken again. They start anew then (those still waiting finish first).
   */
  forget(channel: string): void {
    const keys = this.linesOfChannel.get(channel);
    if (!keys) return;
    for (const key of keys) {
      const line = this.lines.get(key);
      if (line?.waiting.length) continue;
      this.lines.delete(key);
      keys.delete(key);
    }
    if (!keys.size) this.linesOfChannel.delete(channel);
  }

  dispose(): void {
    for (const line of this.lines.values()) clearTimeout(line.timer);
    this.lines.clear();
    this.linesOfChannel.clear();
  }

  private open(key: string, channel: string): Line<E> {
    this.lines.delete(key);
    if (this.lines.size >= this.max) {
      for (const [k, l] of this.lines) {
        if (this.lines.size < this.max) break;
        if (!l.waiting.length) this.remove(k, l);
      }
    }
    const line: Line<E> = { last: null, waiting: [], timer: undefined, at: 0, channel };
    this.lines.set(key, line);
    let keys = this.linesOfChannel.get(channel);
    if (!keys) this.linesOfChannel.set(channel, (keys = new Set()));
    keys.add(key);
    line.timer = setTimeout(() => this.opened(key, line), this.openMs).unref();
    return line;
  }

  private remove(key: string, line: Line<E>): void {
    this.lines.delete(key);
    const keys = this.linesOfChannel.get(line.channel);
    keys?.delete(key);
    if (keys && !keys.size) this.linesOfChannel.delete(line.channel);
  }

  /** The line starts from the earliest event it gathered. */
  private opened(key: string, line: Line<E>): void {
    line.timer = undefined;
    if (this.lines.get(key) !== line || !line.waiting.length) return;
    line.last = line.waiting[0].pos - 1;
    this.release(key, line);
    if (line.waiting.length && !line.timer) line.timer = setTimeout(() => this.giveUp(key), this.holdMs).unref();
  }

  private ready(line: Line<E>, pos: number): boolean {
    return line.last !== null && pos <= line.last + 1;
  }

  private pass(line: Line<E>, pos: number, event: E): void {
    line.last = Math.max(line.last ?? pos, pos);
    this.deliver(event);
  }

  /** What waited and is next now goes, in order; what still waits waits afresh for the one before it. */
  private release(key: string, line: Line<E>): void {
    let moved = false;
    while (line.waiting.length && this.ready(line, line.waiting[0].pos)) {
      const { pos, event } = line.waiting.shift()!;
      this.pass(line, pos, event);
      moved = true;
    }
    if (!moved || line.last === null) return;
    clearTimeout(line.timer);
    line.timer = line.waiting.length ? setTimeout(() => this.giveUp(key), this.holdMs).unref() : undefined;
  }

  /** The one awaited did not come: what waited goes, in order, and the line goes on from it. */
  private giveUp(key: string): void {
    const line = this.lines.get(key);
    if (!line) return;
    line.timer = undefined;
    if (!line.waiting.length) return;
    this.gaps++;
    for (const { pos, event } of line.waiting.splice(0)) this.pass(line, pos, event);
  }
}

/**
 * The newest version seen of each message for a while (edits, deletions and reaction changes each
 * make one, in commit order): each event tells the whole message as read after its commit, and two
 * changes close together can be read and published in either order. An older copy that arrives
 * after a newer one is dropped, so the last event a subscriber gets is the message as it is.
 */
export class NewestVersions {
  private readonly seen: LRUCache<string, number>;
  /** Copies dropped as older than one delivered (for tests and metrics). */
  stale = 0;

  constructor(opts: { max: number; ttlMs: number } = { max: 50_000, ttlMs: 60_000 }) {
    this.seen = boundedLru({ max: opts.max, ttlMs: opts.ttlMs });
  }

  /** Whether a copy at `version` is as new as any seen (then it is remembered). */
  fresh(key: string, version: number): boolean {
    const known = this.seen.get(key);
    if (known !== undefined && version < known) {
      this.stale++;
      return false;
    }
    this.seen.set(key, version);
    return true;
  }

  clear(): void {
    this.seen.clear();
  }
}

/** Where ordered events go: the hub's dispatch (see Hub). */
export interface Dispatcher {
  dispatch(topic: Topic, payload: unknown, channel: string | undefined, keyedOnly?: boolean): void;
}

/** An event held in its line: what dispatch() is called with once its turn comes. */
export interface Ordered {
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

/**
 * The order subscribers see events in on this instance: a new message after the ones before it in
 * its conversation (InOrder), an edit or reaction change only if no newer copy came first
 * (NewestVersions). Every other event goes to the dispatcher as it comes.
 */
export class EventOrder {
  /** New messages, a line per conversation (and per user's channel for direct ones). */
  readonly lines: InOrder<Ordered>;
  /** A message's edits and reactions: an older copy after a newer one is dropped. */
  readonly versions = new NewestVersions();

  constructor(
    private readonly hub: Dispatcher,
    private readonly routes: ChannelRoutes,
    /** Whether this instance takes a channel (suffix): only then does it see all of its line. */
    private readonly takes: (channel: string) => boolean,
    options: InOrderOptions = {},
  ) {
    this.lines = new InOrder<Ordered>((e) => hub.dispatch(e.topic, e.payload, e.channel, e.keyedOnly), options);
  }

  /**
   * An event published here (`channel` undefined) or received on a channel. Each user of a direct
   * conversation gets its messages on their own channel, so each user's copies are a line of
   * their own, and one published here is split the same way.
   */
  admit(topic: Topic, payload: unknown, channel: string | undefined): void {
    if (topic === Topic.MessageEvent) {
      const m = (payload as MessageEventPayload).message;
      // A direct message's copies (one per user's channel) carry the same version, and pass alike.
      if (typeof m.version === 'number' && !this.versions.fresh(m.id, m.version)) return;
    }
    const place = placeOf(topic, payload);
    if (place === null) return this.hub.dispatch(topic, payload, channel);
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

  /** An event delivered outside its line (a catch-up read from the database): the line goes on after it. */
  passed(topic: Topic, payload: unknown): void {
    const place = placeOf(topic, payload);
    if (place !== null) this.lines.passed((payload as MessagePayload).conversationKey, place);
  }

  /** The channel was let go (see InOrder.forget). */
  forget(channel: string): void {
    this.lines.forget(channel);
  }

  dispose(): void {
    this.lines.dispose();
    this.versions.clear();
  }

  /**
   * Only where this instance takes the channel does it see every event of the line; elsewhere (its
   * own sends to a conversation none of its sockets is in) there is no one to deliver to in order,
   * and a line would wait at every gap the other instances' sends leave in it.
   */
  private inLine(key: string, channel: string, place: number, e: Ordered): void {
    if (this.takes(channel)) this.lines.admit(key, place, e, channel);
    else this.hub.dispatch(e.topic, e.payload, e.channel, e.keyedOnly);
  }
}
