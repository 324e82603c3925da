import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type SafetyChangedPayload } from '../../shared/pubsub/topics';
import { eachAtMost } from '../../shared/concurrency';
import { scopeKey } from '../conversation/conversation.keys';

/** Whom each of several users blocks and what they muted (ms), loaded together. */
export type ListsLoader = (userId: string) => Promise<{ blocked: string[]; mutes: Map<string, number> }>;

interface Entry {
  refs: number;
  /** Changes seen while the initial load was in flight, replayed over its result. */
  pending?: SafetyChangedPayload[];
  ready?: Promise<void>;
  /** Changes seen while a resync reads the lists again (applied at once too), replayed over what it read. */
  reloading?: SafetyChangedPayload[];
}

/** Users whose lists a resync reads at once. */
const RESYNC_CONCURRENCY = 8;

/**
 * The block lists and mutes of the users who hold realtime sessions on this instance, in memory,
 * kept current by SafetyChanged events from every instance (as the membership index is). A
 * subscription filter asks `hides` per event: one Map lookup that finds nothing for a user who
 * blocks no one (only non-empty lists are held), so a block costs the hot path no query and no
 * per-viewer execution.
 */
export class SafetyLists {
  private readonly users = new Map<string, Entry>();
  /** Loaded users who block someone: whom. */
  private readonly blocks = new Map<string, Set<string>>();
  /** Loaded users with a mute: conversation key -> until (ms). */
  private readonly mutes = new Map<string, Map<string, number>>();
  /** Loaded users' mute changes heard: conversation key -> the newest version applied (see SafetyChangedPayload.v). */
  private readonly muteVersions = new Map<string, Map<string, number>>();
  private off?: () => void;

  constructor(
    private readonly pubsub: PubSub,
    private readonly load: ListsLoader,
  ) {}

  start(): void {
    const offs = [
      this.pubsub.on(Topic.SafetyChanged, (p) => this.change(p)),
      // A mute lives on the member's row: leaving drops it (a rejoin starts unmuted).
      this.pubsub.on(Topic.MembershipChanged, (p) => {
        for (const c of p.changes) if (!c.member) this.change({ userId: c.userId, conversationKey: scopeKey(p.scope, p.id), mutedUntil: null });
      }),
    ];
    this.off = () => offs.forEach((off) => off());
  }

  private change(p: SafetyChangedPayload): void {
    const e = this.users.get(p.userId);
    if (!e) return;
    if (e.pending) e.pending.push(p);
    else {
      this.apply(p);
      e.reloading?.push(p);
    }
  }

  /**
   * Reads every held user's lists again: a change published while this instance was off Redis
   * never came (a block answered true on another instance, and this one kept delivering the
   * blocked user's messages to the blocker's sockets for as long as they stayed: a review). Called
   * when Redis is back, as the membership index resyncs. The lists stay in use meanwhile. `only`:
   * these users' alone (those a publish made off Redis reaches here).
   */
  async resync(only?: Iterable<string>): Promise<void> {
    const users = only
      ? [...only].flatMap((userId) => {
          const e = this.users.get(userId);
          return e && !e.pending ? [[userId, e] as const] : [];
        })
      : [...this.users.entries()].filter(([, e]) => !e.pending);
    await eachAtMost(users, RESYNC_CONCURRENCY, async ([userId, e]) => {
      if (this.users.get(userId) !== e || e.pending || e.reloading) return;
      e.reloading = [];
      try {
        const { blocked, mutes } = await this.load(userId);
        if (this.users.get(userId) !== e) return;
        if (blocked.length) this.blocks.set(userId, new Set(blocked));
        else this.blocks.delete(userId);
        if (mutes.size) this.mutes.set(userId, mutes);
        else this.mutes.delete(userId);
        // The changes heard meanwhile go again over what was read, whatever was applied before it.
        this.muteVersions.delete(userId);
        for (const p of e.reloading) this.apply(p);
      } catch {
        // The database is away too: the next reconnect reads them (or, once all their sessions here ended, their next connection).
      } finally {
        e.reloading = undefined;
      }
    });
  }

  dispose(): void {
    this.off?.();
    this.users.clear();
    this.blocks.clear();
    this.mutes.clear();
    this.muteVersions.clear();
  }

  /** Starts holding a user's lists (reference-counted, one per session); resolves once loaded. A failed load releases its reference. */
  async track(userId: string): Promise<void> {
    let e = this.users.get(userId);
    if (!e) {
      const entry: Entry = (e = { refs: 0, pending: [] });
      entry.ready = this.load(userId).then(({ blocked, mutes }) => {
        const pending = entry.pending ?? [];
        entry.pending = undefined;
        entry.ready = undefined;
        if (this.users.get(userId) !== entry) return;
        if (blocked.length) this.blocks.set(userId, new Set(blocked));
        if (mutes.size) this.mutes.set(userId, mutes);
        for (const p of pending) this.apply(p);
      });
      this.users.set(userId, entry);
    }
    e.refs++;
    try {
      if (e.ready) await e.ready;
    } catch (err) {
      this.release(userId, e);
      throw err;
    }
  }

  untrack(userId: string): void {
    const e = this.users.get(userId);
    if (e) this.release(userId, e);
  }

  /** Drops one reference to `entry`, and only to it: a newer entry of the same user is someone else's. */
  private release(userId: string, entry: Entry): void {
    if (this.users.get(userId) !== entry || --entry.refs > 0) return;
    this.users.delete(userId);
    this.blocks.delete(userId);
    this.mutes.delete(userId);
    this.muteVersions.delete(userId);
  }

  /** Whether the lists of this user are held here (loaded): `hides` and `mutedUntil` answer for them. */
  holds(userId: string): boolean {
    const e = this.users.get(userId);
    return !!e && !e.pending;
  }

  /** Whether `viewerId` blocks `subjectId`: their messages, typing and presence are hidden from the viewer. Memory only (false for a user not held here). */
  hides(viewerId: string, subjectId: string): boolean {
    const set = this.blocks.get(viewerId);
    return set !== undefined && set.has(subjectId);
  }

  /** Whether the viewer blocks anyone (held here). */
  blocksAnyone(viewerId: string): boolean {
    return this.blocks.has(viewerId);
  }

  /** Whom the viewer blocks, from memory (undefined: not held here). */
  blockedBy(viewerId: string): ReadonlySet<string> | undefined {
    return this.holds(viewerId) ? (this.blocks.get(viewerId) ?? new Set()) : undefined;
  }

  /** The viewer's mute of a conversation while it lasts (null: not muted or over; undefined: not held here). */
  mutedUntil(viewerId: string, key: string): Date | null | undefined {
    if (!this.holds(viewerId)) return undefined;
    const until = this.mutes.get(viewerId)?.get(key);
    return until !== undefined && until > Date.now() ? new Date(until) : null;
  }

  /**
   * Whether a mute's change is newer than every one applied: an older one, published late, is not
   * (the mute that lost). One without a version (a block's, a departure's) always is, and what
   * comes next is compared afresh.
   */
  private newest(p: SafetyChangedPayload): boolean {
    let versions = this.muteVersions.get(p.userId);
    if (p.v === undefined) {
      if (versions?.delete(p.conversationKey!) && !versions.size) this.muteVersions.delete(p.userId);
      return true;
    }
    const applied = versions?.get(p.conversationKey!);
    if (applied !== undefined && applied >= p.v) return false;
    if (!versions) this.muteVersions.set(p.userId, (versions = new Map()));
    versions.set(p.conversationKey!, p.v);
    return true;
  }

  private apply(p: SafetyChangedPayload): void {
    if (p.blockedId !== undefined) {
      let set = this.blocks.get(p.userId);
      if (p.blocked) {
        if (!set) this.blocks.set(p.userId, (set = new Set()));
        set.add(p.blockedId);
      } else if (set?.delete(p.blockedId) && !set.size) this.blocks.delete(p.userId);
    }
    if (p.conversationKey !== undefined && this.newest(p)) {
      let mutes = this.mutes.get(p.userId);
      if (p.mutedUntil) {
        if (!mutes) this.mutes.set(p.userId, (mutes = new Map()));
        mutes.set(p.conversationKey, Date.parse(p.mutedUntil));
      } else if (mutes?.delete(p.conversationKey) && !mutes.size) this.mutes.delete(p.userId);
    }
  }
}
