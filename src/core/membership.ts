import type { PubSub } from '../shared/pubsub/pubsub';
import { Topic, type MembershipChangedPayload } from '../shared/pubsub/topics';

type Scope = MembershipChangedPayload['scope'];
type Loader = (userId: string) => Promise<string[]>;

interface Entry {
  refs: number;
  sets: Record<Scope, Set<string>>;
  /** Changes seen while the initial load was in flight, replayed over its result. */
  pending?: MembershipChangedPayload[];
  ready: Promise<void>;
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

  /** Starts tracking a user (reference-counted); resolves once their memberships are loaded. */
  async track(userId: string): Promise<void> {
    let e = this.users.get(userId);
    if (e) {
      e.refs++;
      return e.ready;
    }
    const entry: Entry = { refs: 1, sets: { group: new Set(), project: new Set() }, pending: [], ready: Promise.resolve() };
    entry.ready = (async () => {
      const [groups, projects] = await Promise.all([this.loaders.group(userId), this.loaders.project(userId)]);
      const pending = entry.pending ?? [];
      entry.pending = undefined;
      entry.sets = { group: new Set(groups), project: new Set(projects) };
      for (const p of pending) apply(entry, p);
    })();
    this.users.set(userId, entry);
    try {
      await entry.ready;
    } catch (err) {
      this.untrack(userId);
      throw err;
    }
  }

  untrack(userId: string): void {
    const e = this.users.get(userId);
    if (e && --e.refs <= 0) this.users.delete(userId);
  }

  has(scope: Scope, userId: string, id: string): boolean {
    return this.users.get(userId)?.sets[scope].has(id) ?? false;
  }

  dispose(): void {
    this.off?.();
    this.users.clear();
  }
}

function apply(e: Entry, p: MembershipChangedPayload): void {
  for (const c of p.changes) {
    if (c.member) e.sets[p.scope].add(p.id);
    else e.sets[p.scope].delete(p.id);
  }
}
