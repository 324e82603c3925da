import type { LRUCache } from 'lru-cache';
import { boundedLru } from '../lru';
import { Topic, type ChannelRoutes, type ConversationUpdatedPayload, type GroupEventPayload, type MembershipChangedPayload, type MessageEventPayload, type MessagePayload, type PresencePayload, type ProjectActionPayload, type ReadReceiptPayload } from './topics';

/** An event and its position on its line: a message's among all its conversation's messages (one more with each, in commit order: the head's row lock). */
export interface Waiting<E> {
  pos: number;
  event: E;
  /** Events about it that came while it waited (an edit, a deletion): delivered right after it. */
  then?: E[];
}

interface Line<E> {
  /** The last position delivered; null while the line opens (its first events gather). */
  last: number | null;
  /** The position it opened at: what comes before it was before the line's time (see whereIs). */
  from: number | null;
  /** The last event delivered: where a search for what a gap lost starts (see Gaps). */
  lastEvent: E | undefined;
  /** A search of the database for what a gap lost is under way: the wait is not given up twice. */
  filling: boolean;
  /** Places delivered from the database (see filledIn) or by a replay, whose publish may still come (that copy is dropped), with when. */
  read: Map<number, number> | undefined;
  /**
   * Places the line went past without their events (a gap given up), with when: one that turns up
   * later (a late search, a read-back after Redis came back, a resend) is delivered late rather
   * than dropped as delivered.
   */
  skipped: Map<number, number> | undefined;
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
 * Where a line finds what a gap lost (see InOrder.fillFrom): the events stored between two it
 * has (`after`, its last delivered, and `before`), at most `limit`, each with its position. What
 * is not stored there was never written (or is gone), and is given up.
 */
export type Gaps<E> = (q: { key: string; channel: string; after: E; afterPos: number; before: E; beforePos: number; limit: number }) => Promise<Waiting<E>[]>;

/**
 * Where a line that opens on a channel taken moments ago looks for what was stored before its
 * first event and after the channel was taken (InOrder.openFrom): those publishes reach this
 * instance too, maybe later than the first event. Undefined when there is nothing to look for.
 */
export type Openings<E> = (q: { key: string; channel: string; first: E; limit: number }) => Promise<Waiting<E>[]> | undefined;

/** A line's first place: a conversation's first message (the head's pos starts at 0), a project's first change. */
const FIRST_PLACE = 1;

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
  /** Channels whose new lines wait to open (a catch-up is being read: see holdOpening), each with its longest wait. */
  private readonly holding = new Map<string, NodeJS.Timeout>();
  /** How long an event waits for the one ahead of it (MESSAGE_ORDER_HOLD on a server). */
  readonly holdMs: number;
  private readonly openMs: number;
  private readonly idleMs: number;
  private readonly max: number;
  /** Events that waited, gaps given up, and events found in the database for a gap (for tests and metrics). */
  held = 0;
  gaps = 0;
  filled = 0;
  /** Where a gap's events are looked for before it is given up (none: given up at once). */
  private gapsFrom: Gaps<E> | undefined;
  /** Where an opening line looks for what came before its first event (none: it starts there). */
  private openingsFrom: Openings<E> | undefined;
  /** A gap wider than this is given up without a search (a conversation that moved on for minutes). */
  private static readonly FILL_MAX = 500;
  /** Places a line remembers having read back from the database (the oldest go first), and for how long. */
  private static readonly READ_MAX = 1000;
  private static readonly READ_MS = 60_000;
  /** A failed search of a gap is made again after 1 s, then 2, 4 and every 5 s: for about a minute. */
  private static readonly SEARCH_TRIES = 14;
  private static readonly SEARCH_AGAIN_MS = 1000;
  private static readonly SEARCH_AGAIN_MAX_MS = 5000;

  constructor(
    private readonly deliver: (event: E) => void,
    o: InOrderOptions = {},
  ) {
    this.holdMs = o.holdMs ?? 500;
    this.openMs = o.openMs ?? 20;
    this.idleMs = o.idleMs ?? 600_000;
    this.max = o.max ?? 50_000;
  }

  /**
   * Before a wait is given up, its line looks for what it waited for in the database: a publish
   * lost (an instance that died between its commit and its publish, Redis away for a while) then
   * costs subscribers `holdMs` of delay instead of the message.
   */
  fillFrom(gaps: Gaps<E>): void {
    this.gapsFrom = gaps;
  }

  /**
   * A channel just taken, whose catch-up (what was published before it was taken, read from the
   * database) is on its way: its lines gather what arrives, and open only once the catch-up joined
   * them (releaseOpening), or after `maxMs`, so the catch-up's messages come before later ones.
   */
  holdOpening(channel: string, maxMs: number): void {
    clearTimeout(this.holding.get(channel));
    this.holding.set(channel, setTimeout(() => this.releaseOpening(channel), maxMs).unref());
  }

  /** Whether the lines of `channel` wait to open for its catch-up (see holdOpening). */
  holds(channel: string): boolean {
    return this.holding.has(channel);
  }

  /** The catch-up of a channel is in its lines: those that gathered long enough open. */
  releaseOpening(channel: string): void {
    const timer = this.holding.get(channel);
    if (!timer) return;
    clearTimeout(timer);
    this.holding.delete(channel);
    for (const key of this.linesOfChannel.get(channel) ?? []) {
      const line = this.lines.get(key);
      if (!line || line.last !== null) continue;
      clearTimeout(line.timer);
      // The catch-up read what came before: nothing more to look for.
      this.opened(key, line, false);
    }
  }

  /**
   * A line's first event says nothing of those before it: one sent just before it through another
   * instance may arrive after it. A line opening on a channel taken moments ago (a socket that just
   * connected) reads what was stored since, and starts from the earliest of it.
   */
  openFrom(openings: Openings<E>): void {
    this.openingsFrom = openings;
  }

  /** Whether line `key` has started (it knows where it stands) and not yet passed `pos`. */
  awaits(key: string, pos: number): boolean {
    const last = this.lines.get(key)?.last;
    return last != null && pos > last;
  }

  /**
   * Where `pos` stands on line `key`: no line; read back from the database (delivered); skipped
   * (the line went past it without it: a gap given up); before the place the line opened at (not
   * its to deliver, unless its subscriptions were there when it was stored); passed (delivered);
   * or ahead (still to come: the line opening, or past its last).
   */
  whereIs(key: string, pos: number): 'none' | 'read' | 'skipped' | 'before' | 'passed' | 'ahead' {
    const line = this.lines.get(key);
    if (!line) return 'none';
    if (line.read?.has(pos)) return 'read';
    if (line.skipped?.has(pos)) return 'skipped';
    if (line.from !== null && pos < line.from) return 'before';
    return line.last !== null && pos <= line.last ? 'passed' : 'ahead';
  }

  /** Remembers that `pos` was delivered on line `key` outside it (a late copy then is dropped). */
  noteRead(key: string, pos: number): void {
    const line = this.lines.get(key);
    if (line) this.remember(line, pos);
  }

  /**
   * Puts `event` behind the one waiting at `pos` on line `key`, to be delivered right after it;
   * false when none waits there (delivered already, or not come yet), and the caller delivers it.
   */
  behind(key: string, pos: number, event: E): boolean {
    const waiting = this.lines.get(key)?.waiting.find((w) => w.pos === pos);
    if (!waiting) return false;
    (waiting.then ??= []).push(event);
    return true;
  }

  /**
   * Puts `event` behind every event waiting on line `key`, to be delivered right after the last of
   * them; false when none waits, and the caller delivers it.
   */
  behindAll(key: string, event: E): boolean {
    const waiting = this.lines.get(key)?.waiting;
    if (!waiting?.length) return false;
    (waiting[waiting.length - 1].then ??= []).push(event);
    return true;
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
    if (!line) {
      line = this.open(key, channel);
      // The first place there is (a new conversation's first message, a project's first change):
      // nothing can come before it, so the line starts at once instead of gathering for `openMs`,
      // in which a group's events overtook the message, and a deletion right after lost it (an
      // outside probe: 19 of 20 sockets); unless its channel's catch-up is on its way.
      if (pos === FIRST_PLACE && !this.holding.has(channel)) {
        clearTimeout(line.timer);
        line.timer = undefined;
        line.last = FIRST_PLACE - 1;
        line.from = FIRST_PLACE;
      }
    }
    line.at = now;
    // The publish of one read back from the database, late: delivered already. The mark stays (it
    // lapses with READ_MS): a second copy (the publish Redis ran after a stall, then its resend) too.
    if (line.read?.has(pos) && line.last !== null && pos <= line.last) return;
    // One the line gave up on, come after all: delivered late (below), and no longer awaited.
    line.skipped?.delete(pos);
    if (line.last === null || !this.ready(line, pos)) {
      // A copy of one already waiting (a replay, or found by a search meanwhile) waits once.
      if (line.waiting.some((w) => w.pos === pos)) return;
      if (line.last !== null) this.held++;
      line.waiting.push({ pos, event });
      line.waiting.sort((x, y) => x.pos - y.pos);
      line.timer ??= setTimeout(() => this.giveUp(key), this.holdMs).unref();
      return;
    }
    this.pass(line, pos, event);
    this.release(key, line);
  }

  /**
   * The channel was let go: what comes on it while it is not taken goes by, so its lines would
   * wait at that gap once it is taken again. They start anew then (those still waiting finish first).
   */
  forget(channel: string): void {
    this.releaseOpening(channel);
    const keys = this.linesOfChannel.get(channel);
    if (!keys) return;
    for (const key of keys) {
      const line = this.lines.get(key);
      // What still waits goes now (no search: the channel went), and the line with it: taken
      // again, the channel starts afresh, and no gap is measured from before it was let go.
      if (line) {
        clearTimeout(line.timer);
        this.passUpTo(line, Infinity);
      }
      this.lines.delete(key);
    }
    this.linesOfChannel.delete(channel);
  }

  dispose(): void {
    for (const line of this.lines.values()) clearTimeout(line.timer);
    for (const timer of this.holding.values()) clearTimeout(timer);
    this.lines.clear();
    this.linesOfChannel.clear();
    this.holding.clear();
  }

  private open(key: string, channel: string): Line<E> {
    this.lines.delete(key);
    if (this.lines.size >= this.max) {
      for (const [k, l] of this.lines) {
        if (this.lines.size < this.max) break;
        if (!l.waiting.length) this.remove(k, l);
      }
    }
    const line: Line<E> = { last: null, from: null, lastEvent: undefined, filling: false, read: undefined, skipped: undefined, waiting: [], timer: undefined, at: 0, channel };
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
  private opened(key: string, line: Line<E>, search = true): void {
    line.timer = undefined;
    // Its channel's catch-up is still being read: releaseOpening opens it.
    if (this.holding.has(line.channel)) return;
    if (this.lines.get(key) !== line || !line.waiting.length || line.filling) return;
    const asked = search ? this.openingsFrom?.({ key, channel: line.channel, first: line.waiting[0].event, limit: InOrder.FILL_MAX }) : undefined;
    if (!asked) return this.start(key, line);
    line.filling = true;
    this.withinHold(asked).then(
      (found) => this.openedWith(key, line, found),
      () => this.openedWith(key, line, []),
    );
  }

  /** What an opening line found before its first event waits with the rest (a copy of its publish dropped when it comes); the line starts. */
  private openedWith(key: string, line: Line<E>, found: Waiting<E>[]): void {
    line.filling = false;
    if (this.lines.get(key) !== line || line.last !== null) return;
    for (const f of found) {
      if (line.waiting.some((w) => w.pos === f.pos)) continue;
      line.waiting.push(f);
      this.remember(line, f.pos);
      this.filled++;
    }
    line.waiting.sort((x, y) => x.pos - y.pos);
    clearTimeout(line.timer);
    line.timer = undefined;
    this.start(key, line);
  }

  /** The line starts from the earliest event it holds. */
  private start(key: string, line: Line<E>): void {
    line.last = line.waiting[0].pos - 1;
    line.from = line.waiting[0].pos;
    this.release(key, line);
    if (line.waiting.length && !line.timer) line.timer = setTimeout(() => this.giveUp(key), this.holdMs).unref();
  }

  private ready(line: Line<E>, pos: number): boolean {
    return line.last !== null && pos <= line.last + 1;
  }

  private pass(line: Line<E>, pos: number, event: E, then?: E[]): void {
    if (line.last === null || pos > line.last) {
      line.last = pos;
      line.lastEvent = event;
    }
    this.deliver(event);
    if (then) for (const e of then) this.deliver(e);
  }

  /** What waited and is next now goes, in order; what still waits waits afresh for the one before it. */
  private release(key: string, line: Line<E>): void {
    let moved = false;
    while (line.waiting.length && this.ready(line, line.waiting[0].pos)) {
      const { pos, event, then } = line.waiting.shift()!;
      this.pass(line, pos, event, then);
      moved = true;
    }
    if (!moved || line.last === null) return;
    clearTimeout(line.timer);
    line.timer = line.waiting.length ? setTimeout(() => this.giveUp(key), this.holdMs).unref() : undefined;
  }

  /**
   * The one awaited did not come: the database is asked for what is stored in the gap (see
   * fillFrom); then what waited goes, in order, with what was found, and the line goes on from it.
   */
  private giveUp(key: string): void {
    const line = this.lines.get(key);
    if (!line) return;
    line.timer = undefined;
    if (!line.waiting.length || line.filling) return;
    // A line still waiting for its channel's catch-up opens with it (releaseOpening). A started one
    // whose channel's read-back (after Redis came back) is on its way waits for it, a gap included:
    // the read-back holds what was published while this instance was away. Searched for instead,
    // every line at once on a database busy with the return, a gap was given up after holdMs and
    // its messages came late, out of order (a deploys probe: 2 of 6 Redis restarts).
    if (this.holding.has(line.channel)) {
      if (line.last !== null) line.timer = setTimeout(() => this.giveUp(key), this.holdMs).unref();
      return;
    }
    const before = line.waiting[line.waiting.length - 1];
    const missing = before.pos - (line.last ?? before.pos) - line.waiting.length;
    // Only from an event delivered.
    if (!this.gapsFrom || line.last === null || !line.lastEvent || missing < 1 || missing > InOrder.FILL_MAX) return this.passUpTo(line, Infinity);
    line.filling = true;
    const q = { key, channel: line.channel, after: line.lastEvent, afterPos: line.last, before: before.event, beforePos: before.pos, limit: before.pos - line.last - 1 };
    const search = this.gapsFrom(q);
    this.withinHold(search).then(
      (found) => this.filledIn(key, line, found, before.pos),
      () => this.filledIn(key, line, [], before.pos),
    );
    // A search that answered after the hold (a busy database): what it found goes late, not never
    // (with a short MESSAGE_ORDER_HOLD, every gap after Redis came back was lost: an outside probe).
    this.lateFrom(key, line, search, q, 0);
  }

  /**
   * What a gap's search finds once the hold is over goes late (foundLate). A search that failed (this
   * instance's database away) is made again, more slowly each time, while the line still misses
   * part of the gap: a send whose commit the database took just as its connection broke is stored
   * but was answered SERVICE_UNAVAILABLE and never published; given up, it reached the other
   * instances' subscribers (they searched) and never this one's (an outside probe, 4 of 4).
   */
  private lateFrom(key: string, line: Line<E>, search: Promise<Waiting<E>[]>, q: Parameters<Gaps<E>>[0], tries: number): void {
    search.then(
      (found) => this.foundLate(key, line, found),
      () => {
        if (tries >= InOrder.SEARCH_TRIES) return;
        const again = () => {
          const missing = line.skipped && [...line.skipped.keys()].some((p) => p > q.afterPos && p < q.beforePos);
          if (this.lines.get(key) !== line || !missing || !this.gapsFrom) return;
          this.lateFrom(key, line, this.gapsFrom(q), q, tries + 1);
        };
        setTimeout(again, Math.min(InOrder.SEARCH_AGAIN_MS * 2 ** tries, InOrder.SEARCH_AGAIN_MAX_MS)).unref();
      },
    );
  }

  /** Events found for places the line gave up meanwhile: delivered now, out of their order. */
  private foundLate(key: string, line: Line<E>, found: Waiting<E>[]): void {
    if (this.lines.get(key) !== line || !line.skipped) return;
    for (const f of found) {
      if (!line.skipped.delete(f.pos)) continue;
      this.remember(line, f.pos);
      this.filled++;
      this.deliver(f.event);
    }
  }

  /** A search's answer, or none once it took holdMs (a database slow to answer holds the line no longer than a lost publish did). */
  private withinHold(search: Promise<Waiting<E>[]>): Promise<Waiting<E>[]> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Waiting<E>[]>((resolve) => (timer = setTimeout(() => resolve([]), this.holdMs).unref()));
    return Promise.race([search, late]).finally(() => clearTimeout(timer));
  }

  /** Remembered for READ_MS (a publish later than that is as good as lost) and up to READ_MAX places. */
  private remember(line: Line<E>, pos: number): void {
    const now = Date.now();
    line.read ??= new Map();
    for (const [p, at] of line.read) {
      if (at > now - InOrder.READ_MS && line.read.size < InOrder.READ_MAX) break;
      line.read.delete(p);
    }
    line.read.set(pos, now);
  }

  /** An event on line `key` that stands for one whose own publish may still come (a replay): that copy is dropped. */
  admitCopy(key: string, pos: number, event: E, channel: string): void {
    this.admit(key, pos, event, channel);
    const line = this.lines.get(key);
    if (line) this.remember(line, pos);
  }

  /** A gap's search answered: what it found waits with the rest, and everything up to `upTo` goes in order, what is still missing given up. */
  private filledIn(key: string, line: Line<E>, found: Waiting<E>[], upTo: number): void {
    line.filling = false;
    if (this.lines.get(key) !== line) return;
    let added = 0;
    for (const f of found) {
      if (f.pos <= line.last! || f.pos > upTo || line.waiting.some((w) => w.pos === f.pos)) continue;
      line.waiting.push(f);
      // Its publish may only be late (a stalled instance): when it comes, it is a copy.
      this.remember(line, f.pos);
      added++;
    }
    this.filled += added;
    line.waiting.sort((x, y) => x.pos - y.pos);
    this.passUpTo(line, upTo);
    // What came after the search began waits, afresh, for what is still on its way.
    clearTimeout(line.timer);
    line.timer = undefined;
    this.release(key, line);
    if (line.waiting.length && !line.timer) line.timer = setTimeout(() => this.giveUp(key), this.holdMs).unref();
  }

  /** What waits up to position `upTo` goes, in order; a hole among it is a gap given up (its places kept as skipped). */
  private passUpTo(line: Line<E>, upTo: number): void {
    let gap = false;
    while (line.waiting.length && line.waiting[0].pos <= upTo) {
      const { pos, event, then } = line.waiting.shift()!;
      if (line.last !== null && pos > line.last + 1) {
        gap = true;
        this.skip(line, line.last + 1, pos - 1);
      }
      this.pass(line, pos, event, then);
    }
    if (gap) this.gaps++;
  }

  /**
   * Keeps `from`..`to` as skipped: the newest READ_MAX places (a longer gap's oldest are given up
   * for good); places older than READ_MS go when the next gap is kept (until then one that turns up
   * still goes, late).
   */
  private skip(line: Line<E>, from: number, to: number): void {
    const now = Date.now();
    line.skipped ??= new Map();
    for (const [p, at] of line.skipped) {
      if (at > now - InOrder.READ_MS) break;
      line.skipped.delete(p);
    }
    for (let p = Math.max(from, to - InOrder.READ_MAX + 1); p <= to; p++) line.skipped.set(p, now);
    for (const p of line.skipped.keys()) {
      if (line.skipped.size <= InOrder.READ_MAX) break;
      line.skipped.delete(p);
    }
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

/**
 * Per message, the version of the newest sidebar row that told each member their mention badge. An
 * edit that changes no one's mentions carries no badge (its row shows the one last told here); when
 * the edit before it, which did change them, is published after it, its copy is dropped as older, and
 * its badge was never told (an outside probe: 2-4 of 80 members kept a wrong badge).
 */
export class BadgeVersions {
  private readonly counted: LRUCache<string, Map<string, number>>;

  constructor(opts: { max: number; ttlMs: number } = { max: 10_000, ttlMs: 60_000 }) {
    this.counted = boundedLru({ max: opts.max, ttlMs: opts.ttlMs });
  }

  /**
   * Remembers the members `counts` tells at `version`; returns those no newer row told, with their
   * counts (for a copy dropped as older: still their badge, since no newer edit changed their mentions).
   */
  told(key: string, version: number, counts: Record<string, number> | undefined): Record<string, number> | undefined {
    if (!counts) return undefined;
    let byMember = this.counted.get(key);
    if (!byMember) this.counted.set(key, (byMember = new Map()));
    let fresh: Record<string, number> | undefined;
    for (const member in counts) {
      if ((byMember.get(member) ?? -1) >= version) continue;
      byMember.set(member, version);
      (fresh ??= {})[member] = counts[member];
    }
    return fresh;
  }

  clear(): void {
    this.counted.clear();
  }
}

/**
 * Per message, the newest messageEvent delivered and the version of the newest pin or unpin. A pin
 * read and published after an edit made just after it arrived after the edit's event and was dropped
 * as older: subscribers that keep the pinned bar from PINNED and UNPINNED never heard of it (an
 * outside probe: 4 of 30 rounds).
 */
export class LatePins {
  private readonly newest: LRUCache<string, { event: MessageEventPayload; pinVersion: number }>;

  constructor(opts: { max: number; ttlMs: number } = { max: 10_000, ttlMs: 60_000 }) {
    this.newest = boundedLru({ max: opts.max, ttlMs: opts.ttlMs });
  }

  /** The message as the newest event admitted of it told it, when that is newer than `version`. */
  newer(id: string, version: number): MessagePayload | undefined {
    const known = this.newest.get(id)?.event.message;
    return known && known.version! > version ? known : undefined;
  }

  /** An event as new as any seen of its message, delivered. */
  delivered(e: MessageEventPayload): void {
    const known = this.newest.get(e.message.id);
    const pin = e.kind === 'PINNED' || e.kind === 'UNPINNED';
    this.newest.set(e.message.id, { event: e, pinVersion: pin ? e.message.version! : (known?.pinVersion ?? -1) });
  }

  /**
   * An event older than one delivered: a pin or unpin no older than any delivered (the same version:
   * a direct message's copy on the other user's channel) goes as itself with the newest message (its
   * pin as this event read it: no newer pin or unpin came); anything else is dropped.
   */
  late(e: MessageEventPayload): MessageEventPayload | undefined {
    if (e.kind !== 'PINNED' && e.kind !== 'UNPINNED') return undefined;
    const known = this.newest.get(e.message.id);
    if (!known || known.pinVersion > e.message.version! || known.event.kind === 'DELETED') return undefined;
    known.pinVersion = e.message.version!;
    const message = Object.assign({}, known.event.message, { pin: e.message.pin });
    return Object.assign({}, known.event, { kind: e.kind, message, replySenderId: undefined });
  }

  clear(): void {
    this.newest.clear();
  }
}

/** Where ordered events go: the hub's dispatch (see Hub). */
export interface Dispatcher {
  dispatch(topic: Topic, payload: unknown, channel: string | undefined, keyedOnly?: boolean): void;
  /** Whether dispatch() would hand the event to anyone (absent: as if it would). */
  wants?(topic: Topic, payload: unknown, channel: string | undefined): boolean;
}

/** An event held in its line: what dispatch() is called with once its turn comes. */
export interface Ordered {
  topic: Topic;
  payload: unknown;
  channel: string | undefined;
  keyedOnly: boolean;
  /** A group's event in its own line: once its place comes, it still goes after the messages its group's line holds (see admit). */
  behind?: string;
}

/**
 * How soon after its channel was taken a line's first message makes it read what came before
 * (see InOrder.openFrom): a line that opens later found nothing for that long, and what it would
 * read was delivered by an earlier line or never published (a gap, for the gap's search).
 */
const OPENING_MS = 10_000;

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
  /** Who a message's sidebar rows told their badge, and at which version. */
  readonly badges = new BadgeVersions();
  /** Pins and unpins that came after a newer event of their message. */
  readonly pins = new LatePins();
  /** Users' presence transitions, apart: a sweep's thousands would push the messages' out. */
  readonly presence = new NewestVersions();
  /** When this instance took a channel (see fillFrom). */
  private takenAt: ((channel: string) => number | undefined) | undefined;

  constructor(
    private readonly hub: Dispatcher,
    private readonly routes: ChannelRoutes,
    /** Whether this instance takes a channel (suffix), or hears a topic-wide topic: only then does it see all of its lines. */
    private readonly takes: (channel: string) => boolean,
    options: InOrderOptions = {},
  ) {
    this.lines = new InOrder<Ordered>((e) => this.release(e), options);
  }

  /** What a line lets go: to the dispatcher, or a group's event behind the messages its group's line still holds. */
  private release(e: Ordered): void {
    if (e.behind !== undefined && this.lines.behindAll(e.behind, { topic: e.topic, payload: e.payload, channel: e.channel, keyedOnly: e.keyedOnly })) return;
    this.hub.dispatch(e.topic, e.payload, e.channel, e.keyedOnly);
  }

  /**
   * Where a conversation line's gap is looked for before it is given up (see InOrder.fillFrom):
   * `stored` reads the messages of `conversationKey` stored after the one created at `after` and
   * before the one created at `before`, oldest first, at most `limit`, as published. What it finds goes to subscriptions only (as a catch-up does).
   */
  fillFrom(
    stored: (q: { conversationKey: string; after: string; before: string; limit: number }) => Promise<MessagePayload[]>,
    /** When this instance took a channel (ms), for a line opening on it: undefined when it does not. */
    takenAt: (channel: string) => number | undefined,
    /** Whether it was taken off Redis, and not heard since: what other instances published since came to none of its lines. */
    unheard: (channel: string) => boolean = () => false,
  ): void {
    this.takenAt = takenAt;
    const read = async (before: Ordered, after: string, limit: number) => {
      // A project's actions are not looked for: each reader has them in their inbox (projectActions).
      if (before.topic !== Topic.MessageAdded) return [];
      const next = before.payload as MessagePayload;
      const found = await stored({ conversationKey: next.conversationKey, after, before: next.createdAt, limit });
      return found.map((payload) => ({ pos: payload.pos!, event: { topic: Topic.MessageAdded, payload, channel: before.channel, keyedOnly: true } }));
    };
    this.lines.fillFrom((q) => read(q.before, (q.after.payload as MessagePayload).createdAt, q.limit));
    // A line opening on a channel taken moments ago (a socket that just connected): what was stored
    // since then. However long ago on one taken off Redis: its first message was sent through this
    // instance, and what others sent before it never came (the line opened past them for good).
    this.lines.openFrom((q) => {
      if (q.first.topic !== Topic.MessageAdded) return undefined;
      const taken = takenAt(q.channel);
      const first = Date.parse((q.first.payload as MessagePayload).createdAt);
      if (taken === undefined || !(first > taken) || (first - taken > OPENING_MS && !unheard(q.channel))) return undefined;
      return read(q.first, new Date(taken).toISOString(), q.limit);
    });
  }

  /**
   * Whether an event published here (on `channels`, its routes' channels) needs its copy admitted
   * here: false only where admit() would keep nothing of it and hand it straight to a dispatcher
   * that has no taker for it. That is a
   * new message's sidebar row (no place; a versioned one, an edit's or deletion's, is remembered)
   * and a new message on channels this instance doesn't take (no line; a replay or resend has
   * rules of its own). Timed in place, the row's JSON copy was 21 µs of a send in many rooms,
   * where no socket subscribes to conversationUpdated; a send to one group over HTTP with no
   * socket here spent 8 and 6 µs parsing the two copies, and 5 and 1 admitting them.
   */
  wanted(topic: Topic, payload: unknown, channels: readonly string[] | undefined): boolean {
    if (!this.hub.wants) return true;
    if (topic === Topic.ConversationUpdated) {
      if (typeof (payload as ConversationUpdatedPayload).message?.version === 'number') return true;
    } else if (topic === Topic.MessageAdded) {
      const m = payload as MessagePayload;
      if (m.replay || m.resent || !channels?.length || channels.some(this.takes)) return true;
    } else return true;
    return this.hub.wants(topic, payload, undefined);
  }

  /**
   * An event published here (`channel` undefined) or received on a channel. Each user of a direct
   * conversation gets its messages on their own channel, so each user's copies are a line of
   * their own, and one published here is split the same way.
   */
  admit(topic: Topic, payload: unknown, channel: string | undefined): void {
    if (topic === Topic.MessageEvent) {
      let m = (payload as MessageEventPayload).message;
      // A direct message's copies (one per user's channel) carry the same version, and pass alike.
      if (typeof m.version === 'number') {
        if (this.versions.fresh(m.id, m.version)) this.pins.delivered(payload as MessageEventPayload);
        else {
          const told = this.pins.late(payload as MessageEventPayload);
          if (!told) return;
          payload = told;
          m = told.message;
        }
      }
      if (this.behindItsMessage(m, { topic, payload, channel, keyedOnly: false })) return;
    } else if (topic === Topic.ReadReceipt) {
      // A user's marks close together: the receipt of an earlier one after a later one's is dropped.
      const r = payload as ReadReceiptPayload;
      if (typeof r.markedAt === 'number' && !this.versions.fresh(`receipt ${r.conversationKey} ${r.userId}`, r.markedAt)) return;
    } else if (topic === Topic.PresenceChanged) {
      // A user's transitions, numbered where the store decided them: one published late, after a
      // later one reached this instance (two instances publishing), would leave the wrong status.
      const p = payload as PresencePayload;
      if (typeof p.v === 'number' && !this.presence.fresh(p.userId, p.v)) return;
    } else if (topic === Topic.ConversationUpdated) {
      const p = payload as ConversationUpdatedPayload;
      // Renames close together (two instances, or two moderators) can be published in either order:
      // a sidebar ended on the older name (an outside probe: 4 rows in 3 runs).
      if (typeof p.titleAt === 'number' && !this.versions.fresh(`title ${p.conversationKey}`, p.titleAt)) return;
      // An edit's or deletion's sidebar row (its message versioned): the same rule, on a line of its own.
      const m = p.message;
      if (m && typeof m.version === 'number') {
        const key = `row ${m.id}`;
        const fresh = this.versions.fresh(key, m.version);
        const counts = this.badges.told(key, m.version, p.mentionCounts);
        if (!fresh) {
          // Older than a row delivered: only the badges no newer row told go, to their members alone,
          // without the message (the row loads its last message as it is now).
          if (!counts) return;
          payload = Object.assign({}, p, { message: undefined, lastMessageOnly: false, only: Object.keys(counts), mentionCounts: counts });
        } else {
          // Older than a messageEvent of its message admitted here (a reaction's change, which makes
          // no row, close behind the edit that made this one): the row carries that newer copy, or
          // a client's cache of the message went back to the edit's reactions (an outside probe: 3 of 6).
          const newer = this.pins.newer(m.id, m.version);
          if (newer) payload = Object.assign({}, p, { message: newer });
        }
      }
    }
    // Who is in a conversation changes after its messages sent before: a deletion or a leave that
    // overtook messages held in their line (a late one before them) took them from its members'
    // argument-less subscriptions (an outside probe: 6 of 12 rounds), and a join gave them to one
    // who joined after them.
    const line = this.routes.membershipLine?.(topic, payload);
    if (topic === Topic.MembershipChanged) {
      // And after the group's events numbered before it: the lobby's name no audience, and each
      // instance asks its membership index as one is delivered, so a ban applied while the removal
      // just before it waited in its line (a line opening gathers) kept the removal from the one banned.
      const p = payload as MembershipChangedPayload;
      if (p.scope === 'group' && this.lines.behindAll(`${Topic.GroupEvent} ${p.id}`, { topic, payload, channel, keyedOnly: false, behind: line })) return;
    }
    if (topic === Topic.ProjectAction || topic === Topic.GroupEvent) {
      // A project's changes, and a group's events, numbered under its row lock: in that order,
      // where this instance hears them all (the topic's channel, from its first listener on).
      // Then, as any membership change, behind the group's messages held before it (release).
      const a = payload as ProjectActionPayload | GroupEventPayload;
      const of = 'projectId' in a ? a.projectId : a.groupId;
      if (typeof a.pos === 'number' && this.takes(topic)) {
        const key = `${topic} ${of}`;
        // Sent again after an outage: a place the line delivered is a copy (its first publish came
        // after all); one it gave up on, or never had, goes late rather than never.
        if (a.resent) {
          const where = this.lines.whereIs(key, a.pos);
          if (where === 'passed' || where === 'read') return;
        }
        return this.lines.admit(key, a.pos, { topic, payload, channel, keyedOnly: false, behind: line }, topic);
      }
    }
    if (line !== undefined && this.lines.behindAll(line, { topic, payload, channel, keyedOnly: false })) return;
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

  /**
   * A message read back by a channel's catch-up: in its line with the rest (to subscriptions only),
   * in its place; one without a place (stored before positions) goes at once.
   */
  caughtUp(topic: Topic, payload: unknown, channel: string): void {
    const place = placeOf(topic, payload);
    const e = { topic, payload, channel, keyedOnly: true };
    if (place === null || !this.takes(channel)) return this.hub.dispatch(topic, payload, channel, true);
    this.lines.admit((payload as MessagePayload).conversationKey, place, e, channel);
  }

  /**
   * An edit, deletion or reaction of a message that waits in its line (the line opening, or one
   * before it late) goes right after it: before, it overtook the message, and a client applying
   * events in order showed a deleted message's text again (an outside probe: 29 of 40 subscribers,
   * a delete sent as the send answered). The line is the message's own, as admit() finds it.
   */
  private behindItsMessage(m: MessagePayload, e: Ordered): boolean {
    if (typeof m.pos !== 'number') return false;
    if (e.channel === undefined && !m.groupId && !m.projectId) {
      const users = m.recipientId && m.recipientId !== m.senderId ? [m.senderId, m.recipientId] : [m.senderId];
      return users.some((u) => this.lines.behind(`${m.conversationKey} ${this.routes.userChannel(u)}`, m.pos!, e));
    }
    const perUser = e.channel !== undefined && this.routes.userOfChannel(e.channel) !== undefined;
    return this.lines.behind(perUser ? `${m.conversationKey} ${e.channel}` : m.conversationKey, m.pos, e);
  }

  /**
   * A message read back after this instance was off Redis (see PubSub.recoverFrom), as received on
   * `channel`: to subscriptions, in its line's place, unless the line delivered it already (a place
   * the line gave up on, messages after it having come first, gets it late); its own publish, if
   * it comes after all, is dropped.
   */
  recovered(channel: string, payload: MessagePayload): void {
    if (typeof payload.pos !== 'number') return;
    const key = this.routes.userOfChannel(channel) !== undefined ? `${payload.conversationKey} ${channel}` : payload.conversationKey;
    const where = this.lines.whereIs(key, payload.pos);
    if (where === 'passed' || where === 'read' || where === 'before') return;
    this.lines.admitCopy(key, payload.pos, { topic: Topic.MessageAdded, payload, channel, keyedOnly: true }, channel);
  }

  /**
   * A message published late, its first publish having failed (see PubSub.resendUnsent): no
   * instance had it from Redis, only maybe from the database (a gap's search, a read-back). A line
   * still before it takes it in its place; a line past it delivers it late, as a late publish,
   * unless it read it from the database (or, for a direct message, whose other channel may have
   * carried it, at all); with no line it goes to the subscriptions that were here when it was
   * stored, without opening one at an old place. Before, a replay's rule dropped it wherever its
   * conversation had no line (lost for good: an outside probe, 3 of 3).
   */
  private resent(key: string, channel: string, place: number, e: Ordered): void {
    if (!this.takes(channel)) return;
    const copy = { topic: e.topic, payload: e.payload, channel: e.channel, keyedOnly: true };
    const where = this.lines.whereIs(key, place);
    // A place the line gave up on: delivered late (admit lets a place behind the line through).
    if (where === 'ahead' || where === 'skipped') return this.lines.admitCopy(key, place, copy, channel);
    if (where === 'read') return;
    // No line, but this instance reads back what it missed while off Redis (recoverFrom): the copy
    // waits in a line that opens with the read-back, in order. Before, it went at once, and again
    // with the read-back (an outside probe: 2, 3, 1, 2, 3 in 3 of 13 runs).
    if (where === 'none' && this.lines.holds(channel)) {
      if (this.storedSinceTaken(channel, e)) this.lines.admitCopy(key, place, copy, channel);
      return;
    }
    // Stored before the place its line opened at: a line opened on a channel taken since (a socket
    // that opened after it, and read it in history) passed it on purpose; delivered now, it came
    // after the messages that line delivered (an outside probe: 4 of 6, Redis lost by all).
    if (where === 'before' && !this.storedSinceTaken(channel, e)) return;
    if (where === 'passed' || where === 'before') {
      if (this.routes.userOfChannel(channel) !== undefined) return;
      this.lines.noteRead(key, place);
      return this.hub.dispatch(copy.topic, copy.payload, copy.channel, true);
    }
    if (this.storedSinceTaken(channel, e)) this.hub.dispatch(copy.topic, copy.payload, copy.channel, true);
  }

  /**
   * A replay (a send's retry found its message stored: its first publish may have been lost), to
   * subscriptions only: in its place on a line before it, late where the line gave that place up;
   * with no line yet, or one still gathering its first events, it opens the line where it stands
   * if it was stored after this instance took the channel (the subscriptions it would have reached).
   * Its own publish, if it comes after all, is then a copy. Before, it went only where a line had
   * started, and a subscriber whose instance had delivered nothing of that conversation yet never
   * got a message whose sender died between its commit and its publish (an outside probe: 2 of 2).
   */
  private replayed(key: string, channel: string, place: number, e: Ordered): void {
    if (!this.takes(channel)) return;
    const where = this.lines.whereIs(key, place);
    if (where === 'read' || where === 'passed' || where === 'before') return;
    if (where === 'skipped' || this.lines.awaits(key, place) || this.storedSinceTaken(channel, e)) {
      this.lines.admitCopy(key, place, { topic: e.topic, payload: e.payload, channel: e.channel, keyedOnly: true }, channel);
    }
  }

  /** Whether a message was stored once this instance had taken `channel`: its subscriptions there were meant to get it. */
  private storedSinceTaken(channel: string, e: Ordered): boolean {
    const taken = this.takenAt?.(channel);
    return taken !== undefined && Date.parse((e.payload as MessagePayload).createdAt) >= taken;
  }

  /** The channel was let go (see InOrder.forget). */
  forget(channel: string): void {
    this.lines.forget(channel);
  }

  dispose(): void {
    this.lines.dispose();
    this.versions.clear();
    this.badges.clear();
    this.pins.clear();
    this.presence.clear();
  }

  /**
   * Only where this instance takes the channel does it see every event of the line; elsewhere (its
   * own sends to a conversation none of its sockets is in) there is no one to deliver to in order,
   * and a line would wait at every gap the other instances' sends leave in it.
   */
  private inLine(key: string, channel: string, place: number, e: Ordered): void {
    if ((e.payload as MessagePayload).replay) return this.replayed(key, channel, place, e);
    if ((e.payload as MessagePayload).resent) return this.resent(key, channel, place, e);
    if (this.takes(channel)) this.lines.admit(key, place, e, channel);
    else this.hub.dispatch(e.topic, e.payload, e.channel, e.keyedOnly);
  }
}
