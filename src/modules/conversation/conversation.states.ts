import type { ConversationUpdatedPayload } from '../../shared/pubsub/topics';
import { newer, ownFromPayload, type OwnState } from './conversation.events';

type Keyed = OwnState & { key: string; userId: string };

interface Entry {
  state: OwnState;
  /** When it was last read from the database or carried by an event. */
  at: number;
}

interface Miss {
  key: string;
  userId: string;
  promise: Promise<OwnState | null>;
  resolve: (s: OwnState | null) => void;
  reject: (e: unknown) => void;
}

/**
 * Members' own states (read markers), as this instance knows them, for the users it delivers
 * conversationUpdated to: an event about a conversation carries its head and only the states
 * that changed, and each receiver's row is derived here. Filled lazily, one query per batch of
 * misses (the local receivers of an event, together), and kept current by every event that
 * carries a member's new state, from any instance. Copies merge with `newer` (every field only
 * grows), so a late read or an event arriving out of order never moves a state back. An entry
 * is read again after `ttlMs`, which bounds what a lost event (pub/sub down) can leave stale.
 */
export class MemberStates {
  /** By `${userId} ${key}`, least recently used first. */
  private readonly entries = new Map<string, Entry>();
  private misses = new Map<string, Miss>();
  private scheduled = false;
  /** Queries made (for tests and metrics). */
  loads = 0;

  constructor(
    private readonly load: (pairs: readonly { key: string; userId: string }[]) => Promise<Keyed[]>,
    private readonly opts: { max: number; ttlMs: number; batch: number } = { max: 100_000, ttlMs: 5 * 60_000, batch: 1000 },
  ) {}

  /** The known state, unless it is older than ttlMs. */
  get(userId: string, key: string): OwnState | undefined {
    const id = `${userId} ${key}`;
    const e = this.entries.get(id);
    if (!e || Date.now() - e.at > this.opts.ttlMs) return undefined;
    this.entries.delete(id);
    this.entries.set(id, e);
    return e.state;
  }

  /** Merges a fresh copy (read or carried); returns the merged state. */
  put(userId: string, key: string, state: OwnState): OwnState {
    const id = `${userId} ${key}`;
    const e = this.entries.get(id);
    const merged = e ? newer(e.state, state) : state;
    this.entries.delete(id);
    this.entries.set(id, { state: merged, at: Date.now() });
    if (this.entries.size > this.opts.max) this.entries.delete(this.entries.keys().next().value!);
    return merged;
  }

  /** An event from any instance: the states it carries update the copies held here (none is added). */
  absorb(p: ConversationUpdatedPayload): void {
    for (const userId in p.members) if (this.entries.has(`${userId} ${p.conversationKey}`)) this.put(userId, p.conversationKey, ownFromPayload(p.members[userId]));
  }

  /** Reads a state, with the other misses of this turn in one query; null when the user has no row. */
  fetch(userId: string, key: string): Promise<OwnState | null> {
    const id = `${userId} ${key}`;
    const pending = this.misses.get(id);
    if (pending) return pending.promise;
    let resolve!: Miss['resolve'];
    let reject!: Miss['reject'];
    const promise = new Promise<OwnState | null>((res, rej) => ((resolve = res), (reject = rej)));
    this.misses.set(id, { key, userId, promise, resolve, reject });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
    return promise;
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
            m.resolve(this.put(m.userId, m.key, state));
          }
        }
      } catch (e) {
        for (const m of batch) m.reject(e);
      }
    }
  }

  /** Entries held (for tests). */
  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
