import type { ConversationUpdatedPayload } from '../../shared/pubsub/topics';
import type { LRUCache } from 'lru-cache';
import { boundedLru } from '../../shared/lru';
import { newer, ownFromPayload, type HeadState, type OwnState } from './conversation.events';

type Keyed = OwnState & { key: string; userId: string };

interface Entry {
  state: OwnState;
  /** When it was last read from the database or carried by an event. */
  at: number;
}

interface Miss {
  key: string;
  userId: string;
  /** `epoch` when it was asked: a load that outlived a forget() or drop() is delivered, not kept. */
  epoch: number;
  promise: Promise<OwnState | null>;
  resolve: (s: OwnState | null) => void;
  reject: (e: unknown) => void;
}

/**
 * Members' own states (read markers) for the users connected to this instance: an event about a
 * conversation carries its head and only the states that changed, and each receiver's row is
 * derived here. Filled lazily, one query per batch of misses (the local receivers of an event,
 * together), and kept current by every event that carries a member's new state: while a user is
 * connected here, this instance takes all their conversations' channels, so it sees them all.
 * Copies merge with `newer` (every field only grows), so a late read or an event arriving out
 * of order never moves a state back. What no event tells is dropped: a user's states when their
 * last connection here ends, a membership's when it changes (a rejoin starts anew). An entry is
 * read again after `ttlMs`, which bounds what a lost event (Redis down) can leave stale.
 */
export class MemberStates {
  /**
   * By user, then conversation key; users least recently used first. Not lru-cache: a user's
   * states are counted and evicted one by one but forgotten together when their last connection ends.
   */
  private readonly users = new Map<string, Map<string, Entry>>();
  private count = 0;
  private misses = new Map<string, Miss>();
  private scheduled = false;
  /** Counts forget() and drop() calls. */
  private epoch = 0;
  /** Queries made (for tests and metrics). */
  loads = 0;

  constructor(
    private readonly load: (pairs: readonly { key: string; userId: string }[]) => Promise<Keyed[]>,
    private readonly opts: { max: number; ttlMs: number; batch: number } = { max: 100_000, ttlMs: 5 * 60_000, batch: 1000 },
  ) {}

  /** The known state, unless it is older than ttlMs. */
  get(userId: string, key: string): OwnState | undefined {
    const states = this.touch(userId);
    const e = states?.get(key);
    return e && Date.now() - e.at <= this.opts.ttlMs ? e.state : undefined;
  }

  /** Merges a fresh copy (read or carried); returns the merged state. */
  put(userId: string, key: string, state: OwnState): OwnState {
    let states = this.touch(userId);
    if (!states) this.users.set(userId, (states = new Map()));
    const e = states.get(key);
    const merged = e ? newer(e.state, state) : state;
    if (!e) this.count++;
    states.set(key, { state: merged, at: Date.now() });
    // Over the bound: the least recently used user's states go.
    while (this.count > this.opts.max && this.users.size > 1) this.forget(this.users.keys().next().value!);
    return merged;
  }

  /** Whether an event carries a state of which a copy is held here (absorb would change something). */
  holdsAny(p: ConversationUpdatedPayload): boolean {
    for (const userId in p.members) if (this.users.get(userId)?.has(p.conversationKey)) return true;
    return false;
  }

  /** The states an event carries update the copies held here (none is added). */
  absorb(p: ConversationUpdatedPayload): void {
    for (const userId in p.members) if (this.users.get(userId)?.has(p.conversationKey)) this.put(userId, p.conversationKey, ownFromPayload(p.members[userId]));
  }

  /** A user is no longer connected here: their states would miss the events of other instances. */
  forget(userId: string): void {
    const states = this.users.get(userId);
    if (!states) return;
    this.count -= states.size;
    this.users.delete(userId);
    this.epoch++;
  }

  /** A membership changed (left, or joined again with a new row). */
  drop(userId: string, key: string): void {
    if (this.users.get(userId)?.delete(key)) this.count--;
    this.epoch++;
  }

  /** Reads a state, with the other misses of this turn in one query; null when the user has no row. */
  fetch(userId: string, key: string): Promise<OwnState | null> {
    const id = `${userId} ${key}`;
    const pending = this.misses.get(id);
    if (pending) return pending.promise;
    let resolve!: Miss['resolve'];
    let reject!: Miss['reject'];
    const promise = new Promise<OwnState | null>((res, rej) => ((resolve = res), (reject = rej)));
    this.misses.set(id, { key, userId, epoch: this.epoch, promise, resolve, reject });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
    return promise;
  }

  /** States held (for tests). */
  get size(): number {
    return this.count;
  }

  clear(): void {
    this.users.clear();
    this.count = 0;
  }

  private touch(userId: string): Map<string, Entry> | undefined {
    const states = this.users.get(userId);
    if (states) {
      this.users.delete(userId);
      this.users.set(userId, states);
    }
    return states;
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const misses = [...this.misses.values()];
    this.misses = new Map();
    for (let i = 0; i < misses.length; i += this.opts.batch) {
      const batch = misses.slice(i, i + this.opts.batch);
      try {
        this.loads++;
        const found = new Map((await this.load(batch)).map((s) => [`${s.userId} ${s.key}`, s]));
        for (const m of batch) {
          const s = found.get(`${m.userId} ${m.key}`);
          if (!s) m.resolve(null);
          else {
            const { key: _k, userId: _u, ...state } = s;
            m.resolve(m.epoch === this.epoch ? this.put(m.userId, m.key, state) : state);
          }
        }
      } catch (e) {
        for (const m of batch) m.reject(e);
      }
    }
  }
}

/** A conversation's head only grows: more messages (seq), or the same with a later activity. */
const later = (a: HeadState, b: HeadState): boolean => a.seq > b.seq || (a.seq === b.seq && (a.activityAt ?? 0) > (b.activityAt ?? 0));

/**
 * The newest head this instance has seen of each conversation, for a moment. Events about one
 * conversation race after their commits (two instances, two commits answered back to back): one
 * that comes after a newer one carries an older head, and a row derived from it would move back
 * (a lower unread count, an older last message) and could be the row a sidebar keeps. Derived
 * from the newest head instead, a late event shows the conversation as it is. Entries serve for
 * `ttlMs`, well beyond any race, so a head that went away (a conversation deleted) is not kept.
 */
export class NewestHeads {
  private readonly heads: LRUCache<string, HeadState>;

  constructor(opts: { max: number; ttlMs: number } = { max: 100_000, ttlMs: 60_000 }) {
    this.heads = boundedLru({ max: opts.max, ttlMs: opts.ttlMs });
  }

  /** The newer of an event's head and the newest seen here; remembers it. */
  newest(key: string, head: HeadState | null): HeadState | null {
    const known = this.heads.get(key);
    if (known && (!head || !later(head, known))) return known;
    if (head) this.heads.set(key, head);
    return head;
  }

  clear(): void {
    this.heads.clear();
  }
}
