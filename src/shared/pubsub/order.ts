import { Recent } from '../recent';

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
  group: string;
}

export interface InOrderOptions {
  /**
   * How long an event waits for the ones before it; then it goes, and the gap is given up. Only a
   * lost publish (Redis refused it, the instance died after its commit) or a stalled instance
   * makes one wait that long: at 100 ms, two instances in one busy test process gave gaps up. @default 500
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
  /** Line keys by channel. */
  private readonly groups = new Map<string, Set<string>>();
  private readonly holdMs: number;
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

  /** An event on line `key`, which comes on channel `group`. */
  admit(key: string, pos: number, event: E, group: string = key): void {
    const now = Date.now();
    let line = this.lines.get(key);
    if (line && !line.waiting.length && now - line.at > this.idleMs) line = undefined;
    else if (line) {
      // Most recently used last, so that the bound lets the idle ones go first.
      this.lines.delete(key);
      this.lines.set(key, line);
    }
    if (!line) line = this.open(key, group);
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
  forget(group: string): void {
    const keys = this.groups.get(group);
    if (!keys) return;
    for (const key of keys) {
      const line = this.lines.get(key);
      if (line?.waiting.length) continue;
      this.lines.delete(key);
      keys.delete(key);
    }
    if (!keys.size) this.groups.delete(group);
  }

  dispose(): void {
    for (const line of this.lines.values()) clearTimeout(line.timer);
    this.lines.clear();
    this.groups.clear();
  }

  private open(key: string, group: string): Line<E> {
    this.lines.delete(key);
    if (this.lines.size >= this.max) {
      for (const [k, l] of this.lines) {
        if (this.lines.size < this.max) break;
        if (!l.waiting.length) this.remove(k, l);
      }
    }
    const line: Line<E> = { last: null, waiting: [], timer: undefined, at: 0, group };
    this.lines.set(key, line);
    let keys = this.groups.get(group);
    if (!keys) this.groups.set(group, (keys = new Set()));
    keys.add(key);
    line.timer = setTimeout(() => this.opened(key, line), this.openMs).unref();
    return line;
  }

  private remove(key: string, line: Line<E>): void {
    this.lines.delete(key);
    const keys = this.groups.get(line.group);
    keys?.delete(key);
    if (keys && !keys.size) this.groups.delete(line.group);
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
  private readonly seen: Recent<number>;
  /** Copies dropped as older than one delivered (for tests and metrics). */
  stale = 0;

  constructor(opts: { max: number; ttlMs: number } = { max: 50_000, ttlMs: 60_000 }) {
    this.seen = new Recent(opts);
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
