import type { MikroORM } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import type { Logger } from '../../shared/logger';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type PresencePayload } from '../../shared/pubsub/topics';
import type { PresenceStore } from './presence.store';

/** A PostgreSQL array literal: knex would expand a JS array into a list. Only for ids and ISO times. */
function pgArray(values: string[]): string {
  return `{${values.join(',')}}`;
}

export interface PresenceState {
  userId: string;
  status: 'ONLINE' | 'OFFLINE';
  /** Last activity while online; the persisted lastSeenAt otherwise (null: never seen). */
  lastSeenAt: Date | null;
}

export interface PresenceOptions {
  store: PresenceStore;
  pubsub: PubSub;
  orm: MikroORM;
  env: Pick<Env, 'PRESENCE_TIMEOUT' | 'PRESENCE_GRACE' | 'PRESENCE_PERSIST_INTERVAL'>;
  logger: Logger;
  instanceId: string;
}

/**
 * Who is online. Activity, heartbeats and sockets go to the presence store only; PostgreSQL
 * sees lastSeenAt on OFFLINE transitions and in one batched write per persist interval.
 */
export class PresenceService {
  private readonly sockets = new Map<string, number>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  /** When this instance last told the store about a user: activity in between stays in memory. */
  private readonly touched = new Map<string, number>();
  /** Users active since the last lastSeenAt flush. */
  private readonly dirty = new Map<string, number>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly off: (() => void)[] = [];
  private readonly touchEveryMs: number;
  private readonly refreshEveryMs: number;

  constructor(private readonly o: PresenceOptions) {
    const timeoutMs = o.env.PRESENCE_TIMEOUT * 1000;
    this.touchEveryMs = Math.min(5000, timeoutMs / 10);
    this.refreshEveryMs = Math.max(250, Math.min(10_000, timeoutMs / 4));
  }

  /** Starts the live-socket refresh and the lastSeenAt flush. */
  start(): void {
    // An OFFLINE decided anywhere (logout, sweep) must make the next activity here count again.
    this.off.push(this.o.pubsub.on(Topic.PresenceChanged, (p) => p.status === 'OFFLINE' && this.touched.delete(p.userId)));
    const refresh = setInterval(() => void this.refreshSockets(), this.refreshEveryMs);
    const flush = setInterval(() => void this.flushLastSeen(), this.o.env.PRESENCE_PERSIST_INTERVAL * 1000);
    refresh.unref();
    flush.unref();
    this.timers.push(refresh, flush);
    void this.refreshSockets();
  }

  /** Any authenticated activity. Cheap: at most one store call per user per few seconds. */
  async touch(userId: string): Promise<void> {
    const now = Date.now();
    this.dirty.set(userId, now);
    const last = this.touched.get(userId);
    if (last !== undefined && now - last < this.touchEveryMs) return;
    this.touched.set(userId, now);
    try {
      if (await this.o.store.touch(userId, now)) await this.publish({ userId, status: 'ONLINE', lastSeenAt: new Date(now).toISOString() });
    } catch (e) {
      this.touched.delete(userId);
      this.o.logger.warn({ err: e }, 'presence store unavailable; activity not recorded');
    }
  }

  /** Login: ONLINE at once, whatever the throttle says. */
  async online(userId: string): Promise<void> {
    this.touched.delete(userId);
    await this.touch(userId);
  }

  async heartbeat(userId: string): Promise<PresenceState> {
    await this.touch(userId);
    return (await this.states([userId]))[0];
  }

  /** Logout: OFFLINE unless the user still has a live socket somewhere. */
  async loggedOut(userId: string): Promise<void> {
    if ((this.sockets.get(userId) ?? 0) > 0) return;
    if (await this.o.store.hasSocketElsewhere(userId, this.o.instanceId).catch(() => false)) return;
    await this.goOffline(userId, Date.now());
  }

  /** Account deleted: OFFLINE at once, sockets or not. */
  async forget(userId: string): Promise<void> {
    this.sockets.delete(userId);
    await this.goOffline(userId, Date.now());
  }

  socketOpened(userId: string): void {
    this.sockets.set(userId, (this.sockets.get(userId) ?? 0) + 1);
    const t = this.graceTimers.get(userId);
    if (t) {
      clearTimeout(t);
      this.graceTimers.delete(userId);
    }
    void this.online(userId);
  }

  socketClosed(userId: string): void {
    const n = (this.sockets.get(userId) ?? 1) - 1;
    if (n > 0) {
      this.sockets.set(userId, n);
      return;
    }
    this.sockets.delete(userId);
    this.dirty.set(userId, Date.now());
    // A reload reconnects within the grace period and cancels this.
    const timer = setTimeout(() => {
      this.graceTimers.delete(userId);
      void this.afterGrace(userId);
    }, this.o.env.PRESENCE_GRACE * 1000);
    timer.unref();
    this.graceTimers.set(userId, timer);
  }

  private async afterGrace(userId: string): Promise<void> {
    if (this.sockets.has(userId)) return;
    try {
      if (await this.o.store.hasSocketElsewhere(userId, this.o.instanceId)) return;
      await this.goOffline(userId, Date.now());
    } catch (e) {
      this.o.logger.warn({ err: e, userId }, 'presence: could not settle a closed socket; the sweep will');
    }
  }

  private async goOffline(userId: string, at: number): Promise<void> {
    this.touched.delete(userId);
    this.dirty.delete(userId);
    if (!(await this.o.store.remove(userId))) return;
    await this.persistLastSeen([[userId, at]]);
    await this.publish({ userId, status: 'OFFLINE', lastSeenAt: new Date(at).toISOString() });
  }

  async states(userIds: string[]): Promise<PresenceState[]> {
    let active: (number | null)[];
    try {
      active = await this.o.store.lastActive(userIds);
    } catch {
      active = userIds.map(() => null);
    }
    const offline = userIds.filter((_, i) => active[i] === null);
    const stored = new Map<string, Date | null>();
    if (offline.length) {
      const rows: { id: string; last_seen_at: Date | null }[] = await this.o.orm.em
        .getConnection()
        .execute('select id, last_seen_at from users where id = any(?::uuid[])', [pgArray(offline)]);
      for (const r of rows) stored.set(r.id, r.last_seen_at ? new Date(r.last_seen_at) : null);
    }
    return userIds.map((userId, i) => {
      const a = active[i];
      return a === null
        ? { userId, status: 'OFFLINE' as const, lastSeenAt: stored.get(userId) ?? null }
        : { userId, status: 'ONLINE' as const, lastSeenAt: new Date(a) };
    });
  }

  async page(afterId: string | null, limit: number): Promise<string[]> {
    return this.o.store.page(afterId, limit);
  }

  count(): Promise<number> {
    return this.o.store.count();
  }

  /**
   * Marks OFFLINE everyone idle for longer than PRESENCE_TIMEOUT, once per `tickKey`
   * across all instances. Returns how many it expired (0 when another instance had the tick).
   */
  async sweep(tickKey: string, now = Date.now()): Promise<{ ran: boolean; expired: number }> {
    if (!(await this.o.store.claim(`sweep:${tickKey}`, 120_000))) return { ran: false, expired: 0 };
    const cutoff = now - this.o.env.PRESENCE_TIMEOUT * 1000;
    const removed = await this.o.store.expire(cutoff, (id) => this.sockets.has(id));
    if (removed.length) {
      for (const r of removed) this.touched.delete(r.userId);
      await this.persistLastSeen(removed.map((r) => [r.userId, r.lastActive]));
      const pipeline: Promise<unknown>[] = [];
      for (const r of removed) {
        pipeline.push(this.publish({ userId: r.userId, status: 'OFFLINE', lastSeenAt: new Date(r.lastActive).toISOString() }));
      }
      await Promise.all(pipeline);
    }
    return { ran: true, expired: removed.length };
  }

  /** Keeps users with a socket here ONLINE and tells other instances which users those are. */
  private async refreshSockets(): Promise<void> {
    const users = [...this.sockets.keys()];
    const now = Date.now();
    try {
      await this.o.store.setInstanceSockets(this.o.instanceId, users, this.refreshEveryMs * 3);
      const cameOnline = await this.o.store.touchMany(users, now);
      for (const userId of cameOnline) await this.publish({ userId, status: 'ONLINE', lastSeenAt: new Date(now).toISOString() });
    } catch (e) {
      this.o.logger.debug({ err: e }, 'presence socket refresh failed');
    }
  }

  private async flushLastSeen(): Promise<void> {
    if (!this.dirty.size) return;
    const batch = [...this.dirty.entries()];
    this.dirty.clear();
    await this.persistLastSeen(batch).catch((e) => this.o.logger.warn({ err: e }, 'lastSeenAt flush failed'));
  }

  /** One UPDATE for any number of users. */
  private async persistLastSeen(entries: [string, number][]): Promise<void> {
    const conn = this.o.orm.em.getConnection();
    for (let i = 0; i < entries.length; i += 10_000) {
      const chunk = entries.slice(i, i + 10_000);
      await conn.execute(
        `update users u set last_seen_at = v.at from (select unnest(?::uuid[]) as id, unnest(?::timestamptz[]) as at) v
         where u.id = v.id and (u.last_seen_at is null or u.last_seen_at < v.at)`,
        [pgArray(chunk.map((e) => e[0])), pgArray(chunk.map((e) => new Date(e[1]).toISOString()))],
      );
    }
  }

  private async publish(p: PresencePayload): Promise<void> {
    await this.o.pubsub.publishSafe(Topic.PresenceChanged, p);
  }

  async dispose(): Promise<void> {
    // Others must not count this instance's sockets any more; its users who don't reconnect
    // elsewhere are expired by the sweep.
    await this.o.store.setInstanceSockets(this.o.instanceId, [], 1).catch(() => undefined);
    for (const t of this.timers) clearInterval(t);
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
    this.off.forEach((f) => f());
    await this.flushLastSeen();
  }
}
