import type { PubSub } from '../shared/pubsub/pubsub';
import { Topic, type MembershipChangedPayload } from '../shared/pubsub/topics';

type Scope = MembershipChangedPayload['scope'];
type Loader = (userId: string) => Promise<string[]>;

/** One user's memberships. Held per connected user, so nothing is kept that isn't needed: no empty sets, no settled promise. */
interface Entry {
  refs: number;
  group?: Set<string>;
  project?: Set<string>;
  /** Changes seen while the initial load was in flight, replayed over its result. */
  pending?: MembershipChangedPayload[];
  /** The initial load, while it is in flight. */
  ready?: Promise<void>;
}

/**
 * In-memory group and project membership of the users who hold subscriptions on this
 * instance, kept current by MembershipChanged events from every instance. Subscription
 * filters ask it instead of the database, so a delivery costs a Set lookup per subscriber.
 */
export class MembershipIndex {
  private readonly users = new Map<string, Entry>();
  private off?: () => void;

  constructor(
    private readonly pubsub: PubSub,
    private readonly loaders: Record<Scope, Loader>,
  ) {}

  start(): void {
    this.off = this.pubsub.on(Topic.MembershipChanged, (p) => {
      for (const c of p.changes) {
        const e = this.users.get(c.userId);
        if (!e) continue;
        if (e.pending) e.pending.push({ scope: p.scope, id: p.id, changes: [c] });
        else apply(e, { scope: p.scope, id: p.id, changes: [c] });
      }
    });
  }

  /**
   * Starts tracking a user (reference-counted); resolves once their memberships are loaded.
   * When the load fails this call's reference is released, so callers untrack only after success.
   */
  async track(userId: string): Promise<void> {
    const e = this.users.get(userId);
    if (e) {
      e.refs++;
      if (!e.ready) return;
      try {
        return await e.ready;
      } catch (err) {
        this.release(userId, e);
        throw err;
      }
    }
    const entry: Entry = { refs: 1, pending: [] };
    entry.ready = (async () => {
      const [groups, projects] = await Promise.all([this.loaders.group(userId), this.loaders.project(userId)]);
      const pending = entry.pending ?? [];
      entry.pending = undefined;
      entry.ready = undefined;
      if (groups.length) entry.group = new Set(groups);
      if (projects.length) entry.project = new Set(projects);
      for (const p of pending) apply(entry, p);
    })();
    this.users.set(userId, entry);
    try {
      await entry.ready;
    } catch (err) {
      this.release(userId, entry);
      throw err;
    }
  }

  untrack(userId: string): void {
    const e = this.users.get(userId);
    if (e) this.release(userId, e);
  }

  /** Drops one reference to `entry`, and only to it: a newer entry of the same user is someone else's. */
  private release(userId: string, entry: Entry): void {
    if (this.users.get(userId) !== entry) return;
    if (--entry.refs <= 0) this.users.delete(userId);
  }

  has(scope: Scope, userId: string, id: string): boolean {
    return this.users.get(userId)?.[scope]?.has(id) ?? false;
  }

  dispose(): void {
    this.off?.();
    this.users.clear();
  }
}

function apply(e: Entry, p: MembershipChangedPayload): void {
  for (const c of p.changes) {
    if (c.member) (e[p.scope] ??= new Set()).add(p.id);
    else if (e[p.scope]?.delete(p.id) && !e[p.scope]!.size) e[p.scope] = undefined;
  }
}
