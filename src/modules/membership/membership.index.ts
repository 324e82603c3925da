import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type MembershipChangedPayload } from '../../shared/pubsub/topics';
import { eachAtMost } from '../../shared/concurrency';

type Scope = MembershipChangedPayload['scope'];
type Loader = (userId: string) => Promise<string[]>;

/** Users whose memberships a resync reads at once. */
const RESYNC_CONCURRENCY = 8;

/** One user's memberships. Held per connected user, so nothing is kept that isn't needed: no empty sets, no settled promise. */
interface Entry {
  refs: number;
  // Exact-size arrays, replaced on a change (rare): a user is in a few groups, and a Set of a few
  // costs many times the array's memory, held for every connected user.
  group?: readonly string[];
  project?: readonly string[];
  /** Changes seen while the initial load was in flight, replayed over its result. */
  pending?: MembershipChangedPayload[];
  /** The initial load, while it is in flight. */
  ready?: Promise<void>;
}

/**
 * Told when this instance starts or stops having a local member of a group or project, and when
 * it starts or stops tracking a user: what the instance must receive follows from these.
 * `taken` resolves once the instance receives what it took (a pub/sub channel subscribed).
 */
export interface MembershipWatcher {
  taken(scope: Scope | 'user', id: string, cause: 'connect' | 'join'): Promise<unknown>;
  dropped(scope: Scope | 'user', id: string): void;
}

/**
 * In-memory group and project membership of the users who hold subscriptions on this
 * instance, kept current by MembershipChanged events from every instance. Subscription
 * filters ask it instead of the database, so a delivery costs a Set lookup per subscriber;
 * and it is indexed the other way too (group -> its local members), so an event is handed
 * only to the subscriptions of the users it reaches here.
 */
export class MembershipIndex {
  private readonly users = new Map<string, Entry>();
  /** The other way: group or project id -> its members tracked here (loaded entries only). */
  private readonly local: Record<Scope, Map<string, Set<string>>> = { group: new Map(), project: new Map() };
  private off?: () => void;
  private watcher?: MembershipWatcher;

  constructor(
    private readonly pubsub: PubSub,
    private readonly loaders: Record<Scope, Loader>,
  ) {}

  /** Sets the one watcher (the pub/sub channel routing). */
  watch(watcher: MembershipWatcher): void {
    this.watcher = watcher;
  }

  start(): void {
    this.off = this.pubsub.on(Topic.MembershipChanged, (p) => {
      for (const c of p.changes) {
        const e = this.users.get(c.userId);
        if (!e) continue;
        const one = { scope: p.scope, id: p.id, changes: [c] };
        if (e.pending) e.pending.push(one);
        else this.apply(c.userId, e, one, 'join');
      }
    });
  }

  /**
   * Starts tracking a user (reference-counted); resolves once their memberships are loaded and
   * this instance receives their events. When the load fails this call's reference is released,
   * so callers untrack only after success.
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
      if (this.users.get(userId) !== entry) return; // released while loading: take nothing
      const taking: Promise<unknown>[] = [];
      if (this.watcher) taking.push(this.watcher.taken('user', userId, 'connect'));
      for (const [scope, ids] of [['group', groups], ['project', projects]] as const) {
        if (!ids.length) continue;
        entry[scope] = ids.slice(); // one row per membership (unique index)
        for (const id of ids) this.addLocal(scope, id, userId, 'connect', taking);
      }
      for (const p of pending) this.apply(userId, entry, p, 'join', taking);
      await Promise.all(taking);
    })();
    this.users.set(userId, entry);
    try {
      await entry.ready;
    } catch (err) {
      this.release(userId, entry);
      throw err;
    }
  }

  /**
   * Reads every tracked user's memberships again, and applies what changed: changes are told over
   * Redis, so those made while this instance was off it never came, and a user removed or banned
   * meanwhile still got the group's messages here (a review of the read-back after an outage).
   * Changes that arrive while a user's read is in flight are applied over it, as at track().
   */
  async resync(): Promise<void> {
    const users = [...this.users.entries()].filter(([, e]) => !e.pending);
    await eachAtMost(users, RESYNC_CONCURRENCY, async ([userId, e]) => {
      if (this.users.get(userId) !== e || e.pending) return;
      e.pending = [];
      try {
        const [groups, projects] = await Promise.all([this.loaders.group(userId), this.loaders.project(userId)]);
        if (this.users.get(userId) !== e) return;
        for (const [scope, now] of [['group', groups], ['project', projects]] as const) {
          const was = e[scope] ?? [];
          const changes = [...was.filter((id) => !now.includes(id)).map((id) => ({ id, member: false })), ...now.filter((id) => !was.includes(id)).map((id) => ({ id, member: true }))];
          for (const c of changes) this.apply(userId, e, { scope, id: c.id, changes: [{ userId, member: c.member }] }, 'join');
        }
      } catch {
        // The database is away too: the next reconnect, or the user's next connection, reads it.
      } finally {
        const pending = e.pending ?? [];
        e.pending = undefined;
        if (this.users.get(userId) === e) for (const p of pending) this.apply(userId, e, p, 'join');
      }
    });
  }

  /**
   * The local members of these groups and projects read again, and those no longer members let go:
   * for an instance off Redis, where removals made elsewhere are not told (see
   * PubSub.checkLocallyWhileOff). One batched read of the members' memberships.
   */
  async recheck(targets: readonly { scope: Scope; id: string }[]): Promise<void> {
    await Promise.all(
      targets.map(async ({ scope, id }) => {
        const members = this.local[scope].get(id);
        if (!members?.size) return;
        await Promise.all(
          [...members].map(async (userId) => {
            const ids = await this.loaders[scope](userId);
            const e = this.users.get(userId);
            if (ids.includes(id) || !e || e.pending) return;
            this.apply(userId, e, { scope, id, changes: [{ userId, member: false }] }, 'join');
          }),
        );
      }),
    );
  }

  untrack(userId: string): void {
    const e = this.users.get(userId);
    if (e) this.release(userId, e);
  }

  /** Drops one reference to `entry`, and only to it: a newer entry of the same user is someone else's. */
  private release(userId: string, entry: Entry): void {
    if (this.users.get(userId) !== entry) return;
    if (--entry.refs > 0) return;
    this.users.delete(userId);
    if (entry.pending) return; // never loaded: nothing was taken
    for (const scope of ['group', 'project'] as const) for (const id of entry[scope] ?? []) this.removeLocal(scope, id, userId);
    this.watcher?.dropped('user', userId);
  }

  has(scope: Scope, userId: string, id: string): boolean {
    // Asked from the conversation's side: an event's filters ask right after its audience was read
    // from the same Set, which is warm, where each member's own entry and Set would be one more
    // cache miss per recipient. Both sides hold the same memberships (loaded entries only).
    return this.local[scope].get(id)?.has(userId) ?? false;
  }

  /** The members of a group or project tracked on this instance (undefined: none). */
  localMembers(scope: Scope, id: string): ReadonlySet<string> | undefined {
    return this.local[scope].get(id);
  }

  /** Whether a user is tracked (connected) here. */
  isLocal(userId: string): boolean {
    return this.users.has(userId);
  }

  dispose(): void {
    this.off?.();
    this.users.clear();
    this.local.group.clear();
    this.local.project.clear();
  }

  private apply(userId: string, e: Entry, p: MembershipChangedPayload, cause: 'connect' | 'join', taking?: Promise<unknown>[]): void {
    for (const c of p.changes) {
      const ids = e[p.scope];
      const at = ids ? ids.indexOf(p.id) : -1;
      if (c.member) {
        if (at >= 0) continue;
        e[p.scope] = ids ? ids.concat(p.id) : [p.id];
        this.addLocal(p.scope, p.id, userId, cause, taking);
      } else if (at >= 0) {
        e[p.scope] = ids!.length > 1 ? ids!.slice(0, at).concat(ids!.slice(at + 1)) : undefined;
        this.removeLocal(p.scope, p.id, userId);
      }
    }
  }

  private addLocal(scope: Scope, id: string, userId: string, cause: 'connect' | 'join', taking?: Promise<unknown>[]): void {
    let members = this.local[scope].get(id);
    if (!members) {
      this.local[scope].set(id, (members = new Set()));
      const took = this.watcher?.taken(scope, id, cause);
      if (took) taking?.push(took);
    }
    members.add(userId);
  }

  private removeLocal(scope: Scope, id: string, userId: string): void {
    const members = this.local[scope].get(id);
    if (!members?.delete(userId) || members.size) return;
    this.local[scope].delete(id);
    this.watcher?.dropped(scope, id);
  }
}
