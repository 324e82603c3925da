import type { RedisClient } from '../../shared/redis';

/**
 * Hot presence state. Redis when configured (shared by all instances), memory otherwise.
 * A user is ONLINE while they are in the `active` set; its score is their last activity (ms).
 * Transitions are atomic, so each one is reported to exactly one caller, on one instance.
 */
export interface PresenceStore {
  /** Records activity at `now`; true when the user just came online. */
  touch(userId: string, now: number): Promise<boolean>;
  /** Refreshes many users at once (live sockets); returns those who just came online. */
  touchMany(userIds: string[], now: number): Promise<string[]>;
  /** Marks the user offline; true when they were online. */
  remove(userId: string): Promise<boolean>;
  /** Last activity (ms) of each user, null when offline. */
  lastActive(userIds: string[]): Promise<(number | null)[]>;
  /** Online users ordered by id, after `afterId`. */
  page(afterId: string | null, limit: number): Promise<string[]>;
  count(): Promise<number>;
  /** Removes users idle since before `cutoff` who are not in `keep`; returns those removed. */
  expire(cutoff: number, keep: (userId: string) => boolean, batch?: number): Promise<{ userId: string; lastActive: number }[]>;
  /** Publishes this instance's live-socket users, valid for `ttlMs`. */
  setInstanceSockets(instanceId: string, userIds: string[], ttlMs: number): Promise<void>;
  /** Whether any live instance other than `exceptInstance` holds a socket of the user. */
  hasSocketElsewhere(userId: string, exceptInstance: string): Promise<boolean>;
  /** Takes a lock for one sweep tick; true for exactly one caller per key. */
  claim(key: string, ttlMs: number): Promise<boolean>;
}

const ACTIVE = '{presence}:active';
const ONLINE = '{presence}:online';
const INSTANCES = '{presence}:instances';
const socketsKey = (id: string) => `{presence}:sockets:${id}`;

// ZADD returns 1 only when the member is new: that caller alone sees the OFFLINE -> ONLINE transition.
const TOUCH = `
local out = {}
for i = 2, #ARGV do
  if redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out`;

const REMOVE = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed`;

// Removes stale users in one atomic step; a user touched after the range read keeps their newer score.
const EXPIRE = `
local out = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    out[#out + 1] = ARGV[i]
    out[#out + 1] = score
  end
end
return out`;

export class RedisPresenceStore implements PresenceStore {
  constructor(private readonly redis: RedisClient) {}

  async touch(userId: string, now: number): Promise<boolean> {
    const out = (await this.redis.eval(TOUCH, 2, ACTIVE, ONLINE, now, userId)) as string[];
    return out.length > 0;
  }

  async touchMany(userIds: string[], now: number): Promise<string[]> {
    const cameOnline: string[] = [];
    for (let i = 0; i < userIds.length; i += 1000) {
      const out = (await this.redis.eval(TOUCH, 2, ACTIVE, ONLINE, now, ...userIds.slice(i, i + 1000))) as string[];
      cameOnline.push(...out);
    }
    return cameOnline;
  }

  async remove(userId: string): Promise<boolean> {
    return (await this.redis.eval(REMOVE, 2, ACTIVE, ONLINE, userId)) === 1;
  }

  async lastActive(userIds: string[]): Promise<(number | null)[]> {
    if (!userIds.length) return [];
    const scores = (await this.redis.zmscore(ACTIVE, ...userIds)) as (string | null)[];
    return scores.map((s) => (s === null ? null : Number(s)));
  }

  async page(afterId: string | null, limit: number): Promise<string[]> {
    return this.redis.zrangebylex(ONLINE, afterId ? `(${afterId}` : '-', '+', 'LIMIT', 0, limit);
  }

  count(): Promise<number> {
    return this.redis.zcard(ONLINE);
  }

  async expire(cutoff: number, keep: (userId: string) => boolean, batch = 5000) {
    const removed: { userId: string; lastActive: number }[] = [];
    // Read in batches from the oldest; removal shrinks the range, so always read from 0.
    let offset = 0;
    for (;;) {
      const ids = await this.redis.zrangebyscore(ACTIVE, '-inf', `(${cutoff}`, 'LIMIT', offset, batch);
      if (!ids.length) break;
      const candidates = ids.filter((id) => !keep(id));
      offset += ids.length - candidates.length;
      if (candidates.length) {
        const out = (await this.redis.eval(EXPIRE, 2, ACTIVE, ONLINE, cutoff, ...candidates)) as string[];
        for (let i = 0; i < out.length; i += 2) removed.push({ userId: out[i], lastActive: Number(out[i + 1]) });
        // Candidates touched meanwhile stay; skip past them.
        offset += candidates.length - out.length / 2;
      }
      if (ids.length < batch) break;
    }
    return removed;
  }

  async setInstanceSockets(instanceId: string, userIds: string[], ttlMs: number): Promise<void> {
    const key = socketsKey(instanceId);
    const multi = this.redis.multi().del(key);
    if (userIds.length) multi.sadd(key, ...userIds);
    multi.pexpire(key, ttlMs).zadd(INSTANCES, Date.now() + ttlMs, instanceId).zremrangebyscore(INSTANCES, '-inf', Date.now());
    await multi.exec();
  }

  async hasSocketElsewhere(userId: string, exceptInstance: string): Promise<boolean> {
    const live = await this.redis.zrangebyscore(INSTANCES, Date.now(), '+inf');
    const others = live.filter((id) => id !== exceptInstance);
    if (!others.length) return false;
    const pipe = this.redis.pipeline();
    for (const id of others) pipe.sismember(socketsKey(id), userId);
    const res = (await pipe.exec()) ?? [];
    return res.some(([, v]) => v === 1);
  }

  async claim(key: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(`{presence}:lock:${key}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
  }
}

/** The same contract in one process, for running without Redis. */
export class MemoryPresenceStore implements PresenceStore {
  private readonly active = new Map<string, number>();
  private readonly locks = new Map<string, number>();
  private readonly instances = new Map<string, { users: Set<string>; until: number }>();

  async touch(userId: string, now: number) {
    const fresh = !this.active.has(userId);
    this.active.set(userId, Math.max(now, this.active.get(userId) ?? 0));
    return fresh;
  }
  async touchMany(userIds: string[], now: number) {
    const out: string[] = [];
    for (const id of userIds) if (await this.touch(id, now)) out.push(id);
    return out;
  }
  async remove(userId: string) {
    return this.active.delete(userId);
  }
  async lastActive(userIds: string[]) {
    return userIds.map((id) => this.active.get(id) ?? null);
  }
  async page(afterId: string | null, limit: number) {
    return [...this.active.keys()].sort().filter((id) => afterId === null || id > afterId).slice(0, limit);
  }
  async count() {
    return this.active.size;
  }
  async expire(cutoff: number, keep: (userId: string) => boolean) {
    const removed: { userId: string; lastActive: number }[] = [];
    for (const [userId, at] of this.active) {
      if (at < cutoff && !keep(userId)) {
        this.active.delete(userId);
        removed.push({ userId, lastActive: at });
      }
    }
    return removed;
  }
  async setInstanceSockets(instanceId: string, userIds: string[], ttlMs: number) {
    this.instances.set(instanceId, { users: new Set(userIds), until: Date.now() + ttlMs });
  }
  async hasSocketElsewhere(userId: string, exceptInstance: string) {
    const now = Date.now();
    for (const [id, inst] of this.instances) if (id !== exceptInstance && inst.until > now && inst.users.has(userId)) return true;
    return false;
  }
  async claim(key: string, ttlMs: number) {
    const now = Date.now();
    if ((this.locks.get(key) ?? 0) > now) return false;
    this.locks.set(key, now + ttlMs);
    return true;
  }
}
