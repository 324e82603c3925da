import type { MembershipChangedPayload } from '../../shared/pubsub/topics';

/** Each user's contacts, many users per statement. */
type Load = (userIds: readonly string[]) => Promise<Map<string, string[]>>;

/** One connected user: how many sockets hold them, and their contacts once loaded (themselves included). */
interface Entry {
  refs: number;
  contacts?: Set<string>;
  /** The initial load, while in flight. */
  ready?: Promise<void>;
  /** Bumped by each load: an older load's answer is dropped. */
  version: number;
  /** The newest load, while in flight (see settled). */
  loading?: Promise<void>;
}

/** Told when a local viewer gains or loses a contact: the pub/sub channel routing, and the live catch-up. */
export interface ContactWatcher {
  /** This instance starts needing `subjectId`'s transitions (their presence channel): resolves once it receives them. */
  taken(subjectId: string): Promise<unknown>;
  /** No local viewer may see `subjectId` any more. */
  dropped(subjectId: string): void;
  /** A connected viewer gained (true) or lost (false) a contact, after it was first loaded. */
  changed?(viewerId: string, subjectId: string, gained: boolean): void;
}

/**
 * PRESENCE_VISIBILITY=contacts: the contacts of every user connected to this instance, and the other
 * way (a user -> the local viewers who may see them). The instance takes the presence channel of
 * every user some local viewer may see (reference-counted, like conversation channels), so it
 * receives only the transitions one of its sockets may be shown; and a transition is handed only to
 * the subscriptions of those viewers. Kept current by friendship and membership changes from every
 * instance (see PresenceVisibility.start).
 */
export class ContactIndex {
  private readonly users = new Map<string, Entry>();
  /** subject -> local viewers who may see them (their contacts connected here, and they themselves). */
  private readonly watchers = new Map<string, Set<string>>();
  private watcher?: ContactWatcher;

  constructor(private readonly load: Load) {}

  watch(watcher: ContactWatcher): void {
    this.watcher = watcher;
  }

  /**
   * Starts tracking a connected user (reference-counted); resolves once their contacts are loaded
   * and this instance receives their contacts' transitions. A failed load leaves them with no
   * contact but themselves until the next change reloads them (it never fails the connection).
   */
  async track(userId: string): Promise<void> {
    const e = this.users.get(userId);
    if (e) {
      e.refs++;
      return e.ready;
    }
    const entry: Entry = { refs: 1, version: 0 };
    this.users.set(userId, entry);
    entry.ready = this.reload([userId]).finally(() => (entry.ready = undefined));
    return entry.ready;
  }

  untrack(userId: string): void {
    const e = this.users.get(userId);
    if (!e || --e.refs > 0) return;
    this.users.delete(userId);
    for (const s of e.contacts ?? []) this.unwatch(s, userId);
  }

  /** Whether `viewerId` (connected here) counts `subjectId` among their contacts. */
  isContact(viewerId: string, subjectId: string): boolean {
    return this.users.get(viewerId)?.contacts?.has(subjectId) ?? false;
  }

  /** A connected viewer's contacts (themselves included); undefined when not connected here or not loaded yet. */
  contactsOf(viewerId: string): ReadonlySet<string> | undefined {
    return this.users.get(viewerId)?.contacts;
  }

  /** The local viewers who may see `subjectId` (undefined: none). */
  watchersOf(subjectId: string): ReadonlySet<string> | undefined {
    return this.watchers.get(subjectId);
  }

  isLocal(userId: string): boolean {
    return this.users.has(userId);
  }

  /** Reloads the contacts of those of `userIds` connected here (a friendship or membership changed). */
  async refresh(userIds: Iterable<string>): Promise<void> {
    const local = [...new Set(userIds)].filter((u) => this.users.has(u));
    if (local.length) await this.reload(local);
  }

  /**
   * Resolves once the loads of `viewerId`'s contacts begun so far are over: what an event heard
   * after a friendship change (an unblock right after the block that unfriended) reads then is
   * current, not the contacts from before that change.
   */
  settled(viewerId: string): Promise<void> {
    return this.users.get(viewerId)?.loading ?? Promise.resolve();
  }

  /** The users whose contacts a membership change may alter: those who changed and the scope's local members. */
  affectedBy(p: MembershipChangedPayload, localMembers: Iterable<string> | undefined): string[] {
    const out = new Set<string>();
    for (const c of p.changes) if (this.users.has(c.userId)) out.add(c.userId);
    for (const u of localMembers ?? []) if (this.users.has(u)) out.add(u);
    return [...out];
  }

  dispose(): void {
    this.users.clear();
    this.watchers.clear();
  }

  private reload(userIds: string[]): Promise<void> {
    const loading = this.loadAndApply(userIds);
    for (const u of userIds) {
      const e = this.users.get(u)!;
      e.loading = loading;
      const done = () => {
        if (e.loading === loading) e.loading = undefined;
      };
      loading.then(done, done);
    }
    return loading;
  }

  private async loadAndApply(userIds: string[]): Promise<void> {
    const versions = userIds.map((u) => ++this.users.get(u)!.version);
    let found: Map<string, string[]>;
    try {
      found = await this.load(userIds);
    } catch {
      found = new Map();
    }
    const taking: Promise<unknown>[] = [];
    userIds.forEach((u, i) => {
      const e = this.users.get(u);
      // Untracked meanwhile, or a newer load is under way: this answer is not the latest.
      if (!e || e.version !== versions[i]) return;
      this.apply(u, e, new Set(found.get(u) ?? []).add(u), taking);
    });
    await Promise.all(taking);
  }

  private apply(viewer: string, e: Entry, next: Set<string>, taking: Promise<unknown>[]): void {
    const prev = e.contacts;
    e.contacts = next;
    for (const s of next) {
      if (prev?.has(s)) continue;
      this.watchSubject(s, viewer, taking);
      if (prev) this.watcher?.changed?.(viewer, s, true);
    }
    for (const s of prev ?? []) {
      if (next.has(s)) continue;
      this.unwatch(s, viewer);
      this.watcher?.changed?.(viewer, s, false);
    }
  }

  private watchSubject(subject: string, viewer: string, taking: Promise<unknown>[]): void {
    let set = this.watchers.get(subject);
    if (!set) {
      this.watchers.set(subject, (set = new Set()));
      const took = this.watcher?.taken(subject);
      if (took) taking.push(took);
    }
    set.add(viewer);
  }

  private unwatch(subject: string, viewer: string): void {
    const set = this.watchers.get(subject);
    if (!set?.delete(viewer) || set.size) return;
    this.watchers.delete(subject);
    this.watcher?.dropped(subject);
  }
}
