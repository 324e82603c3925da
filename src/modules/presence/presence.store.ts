import { randomUUID } from 'node:crypto';
import { ENVELOPE_ORIGIN, SWEEP_BATCH_FIELD } from '../../shared/pubsub/pubsub';
import { Topic } from '../../shared/pubsub/topics';
import { keyPrefixOf, onReconnect, type RedisClient } from '../../shared/redis';

/** A user the sweep took offline, with their last activity (ms) and the transition's version (0: HIDDEN, not announced). */
export interface Expired {
  userId: string;
  lastActive: number;
  v: number;
}

/** A user who came online, with the transition's version. */
export interface CameOnline {
  userId: string;
  v: number;
}

/**
 * Where the store itself publishes the sweep's OFFLINE transitions: one topic-wide channel (in the
 * sweep-batch form), or with `perUser` the user's own presence channel, `name` + user id (one
 * PubSub envelope each).
 */
export interface StoreChannel {
  name: string;
  perUser: boolean;
}

/** One user's activity: when, and in which session (null: none named). */
export interface Activity {
  userId: string;
  sessionId: string | null;
  now: number;
  /**
   * Told again to a store that lost its data, for a user who left (their last socket closed, or they
   * logged out) and whose OFFLINE was never announced: it lets that OFFLINE be a transition. Their
   * coming back into the store is not announced (watchers heard ONLINE, then OFFLINE two seconds
   * later, a user who had left: an outside probe, 18 of 18), and it is not taken when the store has
   * taken them OFFLINE since the loss (see GONE): brought back, they were announced OFFLINE twice.
   */
  quiet?: boolean;
}

/**
 * A user taken OFFLINE by one call: false when not; 'hidden' when the user hides their presence
 * (nothing is published); else the transition's version (PresencePayload.v).
 */
export type Gone = false | 'hidden' | number;
/** A closed socket's user kept ONLINE by another live instance's socket: until when that instance's listing holds unless renewed (ms). */
export type HeldElsewhere = { heldUntil: number };
/** A user the store had no record of when their close or logout was settled: settled before, or lost with its data (a Redis restarted empty). */
export const ABSENT = 'absent';

/**
 * Hot presence state. Redis when configured (shared by all instances), memory otherwise.
 * A user is ONLINE while they are in the `active` set; its score is their last activity (ms).
 * Every transition is decided by one atomic step, so each is reported to exactly one caller,
 * on one instance, however many instances race for it; the step numbers it (one counter for all
 * users, growing in the order the steps ran), so a transition published late, after a later one
 * of the same user, is known as older wherever it arrives.
 */
export interface PresenceStore {
  /**
   * Records each activity at its `now`, for its session too when given (kept `sessionTtlMs`), all in one step.
   * @returns the users who just came online and are not HIDDEN (the transitions to publish), each once.
   */
  touch(activity: readonly Activity[], sessionTtlMs: number): Promise<CameOnline[]>;
  /**
   * Marks the user offline whatever else holds them (account deleted); truthy when they were online.
   * Their sessions' activity written after it is not taken (see endSession), for `sessionTtlMs`.
   */
  remove(userId: string, sessionTtlMs: number): Promise<Gone>;
  /**
   * A session ended. The user goes offline unless `liveHere` (a socket of another session on
   * this instance), a socket on another live instance, or another session active since `cutoff`.
   * Activity of that session written after it (a request answered on another instance just before
   * the logout, its batch on its way) is not taken, for `sessionTtlMs`: it brought its user back
   * ONLINE until the sweep (an outside probe, 2 of 8).
   * @returns a Gone (truthy when this call took the user offline), or ABSENT when the store had no
   * record of the user (false when none because they were taken offline since their last activity).
   */
  endSession(userId: string, sessionId: string, o: { instanceId: string; liveHere: boolean; cutoff: number; now: number; sessionTtlMs: number }): Promise<Gone | typeof ABSENT>;
  /**
   * The user's last socket on `instanceId` closed at `closedAt` and the grace period is over.
   * The user goes offline unless a socket is live on another instance or they were active after `closedAt`;
   * with `ended` (the socket's session was revoked: a logout), nor while another session was active since its `cutoff`, as endSession.
   * @returns a Gone when this call decided (truthy when it took the user offline), HeldElsewhere
   * (an object: truthy, yet the user stays ONLINE) when another live instance lists a socket of
   * theirs, or ABSENT when the store had no record of the user (as endSession).
   */
  socketsGone(userId: string, o: { instanceId: string; closedAt: number; now: number; ended?: { sessionId: string; cutoff: number } }): Promise<Gone | HeldElsewhere | typeof ABSENT>;
  /**
   * Last activity (ms, null when offline) and whether HIDDEN, of each user, in one round trip;
   * `lost` when this read found the store's data lost (see onDataLost): its answer is an empty store's.
   */
  read(userIds: string[]): Promise<{ active: (number | null)[]; hidden: boolean[]; lost?: boolean }>;
  /**
   * Hides (or shows) a user's presence: a HIDDEN user is left out of `page` and `count`, and their
   * transitions are not reported for publishing. @returns their last activity when online (with
   * the version of what others now read: OFFLINE on hiding, ONLINE on showing), else null.
   */
  setHidden(userId: string, hidden: boolean): Promise<{ active: number; v: number } | null>;
  /** Marks these users HIDDEN (the database's list at start-up: the store is a mirror of it). */
  seedHidden(userIds: string[]): Promise<void>;
  /** Calls `listener` each time the store is reachable again after losing its connection; returns the unsubscribe. */
  onReconnect?(listener: () => void): () => void;
  /**
   * Whether the store lost its data since this instance last looked: its HIDDEN mirror's marker gone
   * (a restart without persistence), or written again since by another instance that found it gone
   * first (the marker holds a generation).
   */
  emptied?(): Promise<boolean>;
  /**
   * Calls `listener` each time this instance finds the store without its data (its HIDDEN mirror
   * gone) and has written the mirror again, with the generation the store's data now has (see
   * SEEDED): one loss found by several instances is one generation. Returns the unsubscribe.
   */
  onDataLost?(listener: (generation: string | null) => void): () => void;
  /** Online users who are not HIDDEN, in id order after `fromId`, or (`backward`) before it nearest first. */
  page(fromId: string | null, limit: number, backward?: boolean): Promise<string[]>;
  /** Of `userIds`, those online and not HIDDEN (in the order given). */
  onlineOf(userIds: string[]): Promise<string[]>;
  /** How many users are online and not HIDDEN. */
  count(): Promise<number>;
  /**
   * Removes users idle since before `cutoff` who hold no socket on a live instance; returns those removed.
   * With `channel`, a store that can publishes each OFFLINE there in the same atomic step and says so.
   * `onBatch` sees each batch as soon as it is removed, so the caller's follow-up work can overlap the next one.
   */
  expire(cutoff: number, now: number, channel?: StoreChannel, onBatch?: (batch: Expired[]) => void): Promise<{ removed: Expired[]; published: boolean }>;
  /** This instance holds a socket of the user (its first one), so other instances see it at once. */
  addSocket(instanceId: string, userId: string, ttlMs: number): Promise<void>;
  /** Replaces this instance's live-socket users, valid for `ttlMs`: a crashed instance's list dies with it. */
  setInstanceSockets(instanceId: string, userIds: string[], ttlMs: number): Promise<void>;
  /**
   * Of these users, those holding a socket or SSE stream on a live instance (the memory store knows
   * none: its one instance asks itself). For each, an instance last heard from (see `beat`) more than
   * `heardWithinMs` ago does not count, whatever its list's expiry: killed, it stops beating at once.
   * `except`: an instance whose list is not asked (the caller's own, which knows its live sockets).
   */
  withSockets(users: { userId: string; heardWithinMs: number }[], now: number, except?: string): Promise<string[]>;
  /** This instance is alive now, by the store's clock (one command a beat). */
  beat(instanceId: string): Promise<void>;
  /** A stopping instance's beat forgotten: its last list then counts by its lifetime alone (see WITH_SOCKETS). */
  forgetBeat(instanceId: string): Promise<void>;
  /** Takes a lock; true for exactly one caller per key until `ttlMs` passes. */
  claim(key: string, ttlMs: number): Promise<boolean>;
}

const ACTIVE = '{presence}:active';
const ONLINE = '{presence}:online';
const INSTANCES = '{presence}:instances';
const SOCKETS_PREFIX = '{presence}:sockets:';
const SESSIONS_PREFIX = '{presence}:sessions:';
const HIDDEN = '{presence}:hidden';
/** Each instance's last beat, in the store's milliseconds (see beat). */
const BEATS = '{presence}:beats';
/** The transitions' counter (see PresenceStore). */
const SEQ = '{presence}:seq';
/**
 * Users taken OFFLINE and not active since, by when (the store's clock): a close or a logout
 * settled after another took its user OFFLINE finds them here and has nothing to settle, where
 * one that finds no record at all may have met a loss of the store's data (ABSENT: its user is
 * told again and settled again). Kept for PRESENCE_TIMEOUT (the sweep trims it), as the closes
 * and logouts waiting to be settled are.
 */
const GONE = '{presence}:gone';
/**
 * Set once HIDDEN holds the database's list: a Redis that lost its data (restarted without
 * persistence) lacks it. Its value is the generation of that data, new at each seeding after a
 * loss: an instance cut off while another found the loss and seeded again sees another generation.
 */
const SEEDED = '{presence}:hidden:seeded';
/** An ended session's score among its user's sessions (see endSession): below any activity's time. */
const ENDED = -1;
const socketsKey = (id: string) => SOCKETS_PREFIX + id;
const sessionsKey = (userId: string) => SESSIONS_PREFIX + userId;

// The store's clock in milliseconds: beats are written and read by it, so hosts' clocks never disagree here.
const CLOCK = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`;

// Every key shares the {presence} hash tag, so the scripts below stay in one slot on a Redis Cluster too.
// Keys the scripts name themselves take REDIS_KEY_PREFIX from KEYS[1] (ACTIVE as the connection prefixed it).
// stamp() numbers a transition. The counter starts from Redis's clock in milliseconds, so after a
// Redis that lost its data it starts above what instances remember (unless more than one transition
// a millisecond was counted, on average, since it last started); 13 digits, which cjson writes
// exactly. From the clock's seconds (* 1000), a loss within the second the counter last started
// restarted it below the versions it had given: transitions of that second's users were dropped
// as older than those delivered, for up to a minute (an outside probe, FLUSHALLs in a row).
const STAMP = `
local P = string.sub(KEYS[1], 1, #KEYS[1] - ${ACTIVE.length})
local function stamp()
  local key = P .. '${SEQ}'
  local v = redis.call('INCR', key)
  if v == 1 then
    local t = redis.call('TIME')
    v = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 1
    redis.call('SET', key, v)
  end
  return v
end`;

// `held(user)` is true when a live instance other than ARGV-given `me` lists a socket of the user.
// drop(user) answers 1 for a HIDDEN user, else the transition's version (above 1). absent(user)
// tells a user with no record (ABSENT) from one taken OFFLINE since their last activity (0).
const HELD = `${STAMP}${CLOCK}
local function live_instances(now, me)
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf')) do
    if id ~= me then out[#out + 1] = P .. '${SOCKETS_PREFIX}' .. id end
  end
  return out
end
local function held(instances, user)
  for _, key in ipairs(instances) do
    if redis.call('SISMEMBER', key, user) == 1 then return true end
  end
  return false
end
local function drop(user)
  redis.call('ZREM', KEYS[1], user)
  redis.call('ZREM', KEYS[2], user)
  -- Ended sessions stay (see ended).
  redis.call('ZREMRANGEBYSCORE', P .. '${SESSIONS_PREFIX}' .. user, 0, '+inf')
  redis.call('ZADD', P .. '${GONE}', clock(), user)
  if redis.call('SISMEMBER', P .. '${HIDDEN}', user) == 1 then return 1 end
  return stamp()
end
local function absent(user)
  if redis.call('ZSCORE', P .. '${GONE}', user) then return 0 end
  return '${ABSENT}'
end
-- An ended session stays among its user's sessions at ${ENDED}, below any activity, for the sessions'
-- TTL: activity of it written late is not taken (see TOUCH_SESSIONS).
local function ended(key, session, ttl)
  redis.call('ZADD', key, ${ENDED}, session)
  redis.call('PEXPIRE', key, ttl)
end`;

// ZADD GT answers 1 only when the member is new: that caller alone sees the OFFLINE -> ONLINE transition.
// GT keeps the newest activity when instances' clocks disagree a little. A HIDDEN user is active
// (their sessions and sockets count as ever) but neither listed online nor announced.
// KEYS: active, online, hidden, seeded, then the sessions key of each activity that names a
// session, in order (the sockets' refresh names none: no key a user). ARGV: sessionTtl, '1' to
// refuse (-1) while HIDDEN is not seeded, then userId, sessionId or '', now, '1' if quiet or '' of
// each activity. The same user twice in one call comes online once; an ended session's activity is
// not taken (see END_SESSION), nor a quiet one of a user taken OFFLINE since the loss (see GONE).
// Returns each who came online and their version.
const TOUCH_SESSIONS = `${STAMP}
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
local out = {}
local k = 4
for i = 0, (#ARGV - 2) / 4 - 1 do
  local user, session, now, quiet = ARGV[4 * i + 3], ARGV[4 * i + 4], ARGV[4 * i + 5], ARGV[4 * i + 6]
  local key
  if session ~= '' then
    k = k + 1
    key = KEYS[k]
  end
  if (not key or tonumber(redis.call('ZSCORE', key, session)) ~= ${ENDED}) and (quiet == '' or not redis.call('ZSCORE', P .. '${GONE}', user)) then
    if redis.call('ZADD', KEYS[1], 'GT', now, user) == 1 then
      redis.call('ZREM', P .. '${GONE}', user)
      if redis.call('SISMEMBER', KEYS[3], user) == 0 then
        redis.call('ZADD', KEYS[2], 0, user)
        out[#out + 1] = user
        out[#out + 1] = stamp()
      end
    end
    if key then
      redis.call('ZADD', key, 'GT', now, session)
      redis.call('PEXPIRE', key, ARGV[1])
    end
  end
end
return out`;

// KEYS: active, online, hidden. ARGV: userId, '1' to hide or '0' to show. Returns the last activity when online, and a version.
const SET_HIDDEN = `${STAMP}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[3], ARGV[1])
  if score then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end
end
if score then return { score, stamp() } end
return false`;

// KEYS: active, online, instances, sessions. ARGV: userId, sessionTtl. Every session the user had is ended.
const REMOVE = `${HELD}
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
for _, session in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do ended(KEYS[4], session, ARGV[2]) end
local gone = drop(ARGV[1])
if was then return gone end
return 0`;

// KEYS: active, online, instances, sessions. ARGV: userId, sessionId, instanceId, liveHere, cutoff, now, sessionTtl.
// Returns as gone() reads it, or ABSENT for a user with no record (see GONE).
const END_SESSION = `${HELD}
ended(KEYS[4], ARGV[2], ARGV[7])
if ARGV[4] == '1' then return 0 end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return absent(ARGV[1]) end
if held(live_instances(ARGV[6], ARGV[3]), ARGV[1]) then return 0 end
if #redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[5], '+inf', 'LIMIT', 0, 1) > 0 then return 0 end
return drop(ARGV[1])`;

// KEYS: active, online, instances, sessions. ARGV: userId, instanceId, closedAt, now[, ended session, cutoff].
// Returns as gone() reads it, a held-until negated, or ABSENT for a user with no record (see GONE).
// Activity after the close keeps the user ONLINE only while a session it came from remains: one
// logged out since (on another instance, during this grace) no longer does (a recheck probe: ONLINE
// until the sweep).
const SOCKETS_GONE = `${HELD}
redis.call('SREM', P .. '${SOCKETS_PREFIX}' .. ARGV[2], ARGV[1])
if ARGV[5] and tonumber(redis.call('ZSCORE', KEYS[4], ARGV[5])) ~= ${ENDED} then redis.call('ZREM', KEYS[4], ARGV[5]) end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return absent(ARGV[1]) end
if tonumber(score) > tonumber(ARGV[3]) and #redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[3], '+inf', 'LIMIT', 0, 1) > 0 then return 0 end
if ARGV[5] and #redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[6], '+inf', 'LIMIT', 0, 1) > 0 then return 0 end
-- Held by another live instance: until when its listing holds (negated), the latest of them.
local held_until = 0
local listed = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[4], '+inf', 'WITHSCORES')
for i = 1, #listed, 2 do
  if listed[i] ~= ARGV[2] and redis.call('SISMEMBER', P .. '${SOCKETS_PREFIX}' .. listed[i], ARGV[1]) == 1 then
    held_until = math.max(held_until, tonumber(listed[i + 1]))
  end
end
if held_until > 0 then return -held_until end
return drop(ARGV[1])`;

// Epoch milliseconds to ISO-8601 UTC (days to civil date: H. Hinnant's algorithm), as Date#toISOString writes it.
const ISO = `
local function iso(ms)
  ms = tonumber(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms - secs * 1000)
end`;

// One batch of the sweep, read, removed and announced in one atomic step: a user touched meanwhile
// is not in the range any more, one whose socket is held stays (counted so the caller skips past
// them), and each removal is published with it, so not even a crash between the two can lose or
// repeat a transition. The payloads are what PubSub.publish would send for Topic.PresenceChanged,
// ANNOUNCE_BATCH to a message in PubSub's batch form.
// A HIDDEN user's removal is not announced. With ARGV[6] = '1' each transition goes on its user's own
// channel (ARGV[5] .. userId) as a PubSub envelope (PRESENCE_VISIBILITY=contacts): a PUBLISH to a
// channel no instance takes costs Redis next to nothing, and each instance gets only its contacts'.
// KEYS: active, online, instances, hidden. ARGV: cutoff (exclusive), now, offset, batch, channel ('' = don't publish), perUser, topic.
// Returns { skipped, user1, score1, version1 (0: HIDDEN), user2, ..., read }.
// The removals go out as a few commands of many members each (what drop() does, in bulk): one
// ZREM or DEL per user was most of a sweep's time in Redis.
const ANNOUNCE_BATCH = 1000;
const EXPIRE = `${HELD}${ISO}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', ARGV[3], ARGV[4])
local instances = live_instances(ARGV[2], '')
local check = #instances > 0
local out = { 0 }
local gone, sessions, announced = {}, {}, {}
for i = 1, #ids, 2 do
  if check and held(instances, ids[i]) then
    out[1] = out[1] + 1
  else
    gone[#gone + 1] = ids[i]
    sessions[#sessions + 1] = P .. '${SESSIONS_PREFIX}' .. ids[i]
    local v = 0
    if redis.call('SISMEMBER', KEYS[4], ids[i]) == 0 then
      v = stamp()
      if ARGV[5] ~= '' then announced[#announced + 1] = { userId = ids[i], status = 'OFFLINE', lastSeenAt = iso(ids[i + 1]), v = v } end
    end
    out[#out + 1] = ids[i]
    out[#out + 1] = ids[i + 1]
    out[#out + 1] = v
  end
end
-- A few messages of many transitions each (PubSub splits them): one PUBLISH per user, written to
-- every subscribed instance, was most of a 100,000-user sweep.
if ARGV[6] == '1' then
  for _, p in ipairs(announced) do
    redis.call('PUBLISH', ARGV[5] .. p.userId, cjson.encode({ ${ENVELOPE_ORIGIN} = 'presence-store', topic = ARGV[7], payload = p }))
  end
  announced = {}
end
for i = 1, #announced, ${ANNOUNCE_BATCH} do
  local batch = {}
  for j = i, math.min(i + ${ANNOUNCE_BATCH - 1}, #announced) do batch[#batch + 1] = announced[j] end
  redis.call('PUBLISH', ARGV[5], cjson.encode({ ${SWEEP_BATCH_FIELD} = batch }))
end
local at = clock()
-- unpack() is bounded by Lua's stack: 1,000 members a command.
for i = 1, #gone, 1000 do
  local j = math.min(i + 999, #gone)
  redis.call('ZREM', KEYS[1], unpack(gone, i, j))
  redis.call('ZREM', KEYS[2], unpack(gone, i, j))
  redis.call('DEL', unpack(sessions, i, j))
  local tombs = {}
  for k = i, j do
    tombs[#tombs + 1] = at
    tombs[#tombs + 1] = gone[k]
  end
  redis.call('ZADD', P .. '${GONE}', unpack(tombs))
end
-- Those taken OFFLINE longer ago than the timeout (ARGV[2] - ARGV[1]) have nothing left to settle.
redis.call('ZREMRANGEBYSCORE', P .. '${GONE}', '-inf', '(' .. (at - (tonumber(ARGV[2]) - tonumber(ARGV[1]))))
out[#out + 1] = #ids / 2
return out`;

// KEYS: beats. ARGV: instanceId. A beat an hour old is a gone instance's: dropped.
const BEAT = `${CLOCK}
local now = clock()
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)`;

// KEYS: active, online, instances, beats. ARGV: now, then userId, heardWithinMs pairs. Returns the
// users an instance lists whose list is unexpired and whose beat is recent enough for that user (one
// with no beat, an instance of an older release or before its first, counts by its list alone).
const WITH_SOCKETS = `${CLOCK}
local P = string.sub(KEYS[1], 1, #KEYS[1] - ${ACTIVE.length})
local at = clock()
local lists, beats = {}, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[1], '+inf')) do
  if id ~= ARGV[2] then
    lists[#lists + 1] = P .. '${SOCKETS_PREFIX}' .. id
    beats[#beats + 1] = tonumber(redis.call('ZSCORE', KEYS[4], id) or at)
  end
end
local out = {}
for i = 3, #ARGV, 2 do
  local since = at - tonumber(ARGV[i + 1])
  for k = 1, #lists do
    if beats[k] >= since and redis.call('SISMEMBER', lists[k], ARGV[i]) == 1 then
      out[#out + 1] = ARGV[i]
      break
    end
  end
end
return out`;

const SCRIPTS = { TOUCH_SESSIONS, SET_HIDDEN, REMOVE, END_SESSION, SOCKETS_GONE, EXPIRE, WITH_SOCKETS, BEAT };

const gone = (n: number): Gone => (n === 1 ? 'hidden' : n > 1 ? n : false);
type ScriptName = keyof typeof SCRIPTS;

export class RedisPresenceStore implements PresenceStore {
  private reseeding?: Promise<void>;
  private readonly lost = new Set<(generation: string | null) => void>();
  /** The generation of the store's data this instance last saw (see SEEDED); null before it looked. */
  private generation: string | null = null;

  constructor(
    private readonly redis: RedisClient,
    /** Users read and removed per sweep round trip. */
    private readonly sweepBatch = 10_000,
    /**
     * The database's HIDDEN users, to mirror again when Redis lost them (a restart without
     * persistence): until then activity is not recorded and reads wait, so a HIDDEN user is never
     * listed or announced ONLINE meanwhile. Without it (the sweep's command line) the mirror is
     * taken as it is.
     */
    private readonly hiddenOf?: () => Promise<string[]>,
  ) {
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      // defineCommand: EVALSHA with a fallback to EVAL, so the script text crosses the wire once.
      if (!(name in this.redis)) this.redis.defineCommand(name, { lua });
    }
  }

  /** The HIDDEN mirror written again from the database, once however many callers found it missing. */
  private reseed(): Promise<void> {
    if (!this.hiddenOf) return Promise.resolve();
    return (this.reseeding ??= (async () => {
      try {
        await this.seedHidden(await this.hiddenOf!());
      } finally {
        this.reseeding = undefined;
      }
      for (const listener of this.lost) listener(this.generation);
    })());
  }

  onDataLost(listener: (generation: string | null) => void): () => void {
    this.lost.add(listener);
    return () => void this.lost.delete(listener);
  }

  onReconnect(listener: () => void): () => void {
    return onReconnect(this.redis, listener);
  }

  async emptied(): Promise<boolean> {
    const seen = this.generation;
    const now = await this.redis.get(SEEDED);
    if (now !== null) this.generation = now;
    // Found by another instance first, which wrote the mirror again: the loss is ours to mend too.
    // (Its PresenceStoreLost went out while this one was still cut off from the pub/sub.)
    return now === null || (seen !== null && seen !== now);
  }

  private run<T>(name: ScriptName, keys: string[], args: (string | number)[]): Promise<T> {
    return (this.redis as unknown as Record<ScriptName, (...a: unknown[]) => Promise<T>>)[name](keys.length, ...keys, ...args);
  }

  async touch(activity: readonly Activity[], sessionTtlMs: number): Promise<CameOnline[]> {
    const cameOnline: CameOnline[] = [];
    // 1,000 a script at most: one script never holds Redis long (the sockets' refresh passes every connected user).
    for (let i = 0; i < activity.length; i += 1000) {
      const part = activity.slice(i, i + 1000);
      const keys = [ACTIVE, ONLINE, HIDDEN, SEEDED];
      for (const a of part) if (a.sessionId) keys.push(sessionsKey(a.userId));
      const args = part.flatMap((a) => [a.userId, a.sessionId ?? '', a.now, a.quiet ? '1' : '']);
      const ttl = Math.ceil(sessionTtlMs);
      let out = await this.run<(string | number)[] | -1>('TOUCH_SESSIONS', keys, [ttl, this.hiddenOf ? '1' : '0', ...args]);
      if (out === -1) {
        await this.reseed();
        // Seeded now (or lost again at once: the activity is recorded all the same).
        out = (await this.run<(string | number)[] | -1>('TOUCH_SESSIONS', keys, [ttl, '0', ...args])) as (string | number)[];
      }
      for (let j = 0; j < out.length; j += 2) cameOnline.push({ userId: String(out[j]), v: Number(out[j + 1]) });
    }
    return cameOnline;
  }

  async remove(userId: string, sessionTtlMs: number): Promise<Gone> {
    return gone(await this.run<number>('REMOVE', [ACTIVE, ONLINE, INSTANCES, sessionsKey(userId)], [userId, Math.ceil(sessionTtlMs)]));
  }

  async endSession(userId: string, sessionId: string, o: { instanceId: string; liveHere: boolean; cutoff: number; now: number; sessionTtlMs: number }): Promise<Gone | typeof ABSENT> {
    const keys = [ACTIVE, ONLINE, INSTANCES, sessionsKey(userId)];
    const n = await this.run<number | typeof ABSENT>('END_SESSION', keys, [userId, sessionId, o.instanceId, o.liveHere ? '1' : '0', o.cutoff, o.now, Math.ceil(o.sessionTtlMs)]);
    return n === ABSENT ? n : gone(n);
  }

  async socketsGone(userId: string, o: { instanceId: string; closedAt: number; now: number; ended?: { sessionId: string; cutoff: number } }): Promise<Gone | HeldElsewhere | typeof ABSENT> {
    const keys = [ACTIVE, ONLINE, INSTANCES, sessionsKey(userId)];
    const args: (string | number)[] = [userId, o.instanceId, o.closedAt, o.now];
    if (o.ended) args.push(o.ended.sessionId, o.ended.cutoff);
    const n = await this.run<number | typeof ABSENT>('SOCKETS_GONE', keys, args);
    if (n === ABSENT) return n;
    return n < 0 ? { heldUntil: -n } : gone(n);
  }

  async read(userIds: string[]): Promise<{ active: (number | null)[]; hidden: boolean[]; lost?: boolean }> {
    if (!userIds.length) return { active: [], hidden: [] };
    for (let attempt = 1; ; attempt++) {
      const res = await this.redis.multi().zmscore(ACTIVE, ...userIds).smismember(HIDDEN, ...userIds).get(SEEDED).exec();
      const [[e1, scores], [e2, flags], [e3, seeded]] = res as [[Error | null, (string | null)[]], [Error | null, number[]], [Error | null, string | null]];
      if (e1 || e2 || e3) throw e1 ?? e2 ?? e3;
      // Seeded again by another instance since this one last looked: it found a loss a moment ago,
      // which this instance may not have heard of yet (the listeners tell it, once a generation).
      const since = seeded !== null && this.generation !== null && seeded !== this.generation;
      if (since) {
        this.generation = seeded;
        for (const listener of this.lost) listener(seeded);
      }
      if (seeded || !this.hiddenOf || attempt > 1) return { active: scores.map((s) => (s === null ? null : Number(s))), hidden: flags.map((f) => f === 1), lost: attempt > 1 || since };
      await this.reseed();
    }
  }

  async setHidden(userId: string, hidden: boolean): Promise<{ active: number; v: number } | null> {
    const out = await this.run<[string, number] | null>('SET_HIDDEN', [ACTIVE, ONLINE, HIDDEN], [userId, hidden ? '1' : '0']);
    return out ? { active: Number(out[0]), v: Number(out[1]) } : null;
  }

  async seedHidden(userIds: string[]): Promise<void> {
    for (let i = 0; i < userIds.length; i += 10_000) await this.redis.sadd(HIDDEN, ...userIds.slice(i, i + 10_000));
    if (userIds.length) await this.redis.zrem(ONLINE, ...userIds);
    // A new generation only where there was none: an instance starting beside others keeps theirs.
    await this.redis.set(SEEDED, randomUUID(), 'NX');
    this.generation = await this.redis.get(SEEDED);
  }

  async onlineOf(userIds: string[]): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < userIds.length; i += 10_000) {
      const chunk = userIds.slice(i, i + 10_000);
      const scores = (await this.redis.zmscore(ONLINE, ...chunk)) as (string | null)[];
      chunk.forEach((u, j) => scores[j] !== null && out.push(u));
    }
    return out;
  }

  async page(fromId: string | null, limit: number, backward = false): Promise<string[]> {
    if (backward) return this.redis.zrevrangebylex(ONLINE, fromId ? `(${fromId}` : '+', '-', 'LIMIT', 0, limit);
    return this.redis.zrangebylex(ONLINE, fromId ? `(${fromId}` : '-', '+', 'LIMIT', 0, limit);
  }

  count(): Promise<number> {
    return this.redis.zcard(ONLINE);
  }

  async expire(cutoff: number, now: number, channel?: StoreChannel, onBatch?: (batch: Expired[]) => void): Promise<{ removed: Expired[]; published: boolean }> {
    const removed: Expired[] = [];
    // A HIDDEN user's removal is not announced: the mirror first, if Redis lost it.
    if (this.hiddenOf && !(await this.redis.exists(SEEDED))) await this.reseed();
    // Removal shrinks the range, so each round reads from the first user it kept.
    let offset = 0;
    for (;;) {
      // The script's PUBLISH is not the connection's own command: its channel takes REDIS_KEY_PREFIX here.
      const args = [cutoff, now, offset, this.sweepBatch, channel ? keyPrefixOf(this.redis) + channel.name : '', channel?.perUser ? '1' : '0', Topic.PresenceChanged];
      const out = await this.run<(string | number)[]>('EXPIRE', [ACTIVE, ONLINE, INSTANCES, HIDDEN], args);
      const read = Number(out[out.length - 1]);
      offset += Number(out[0]);
      const batch: Expired[] = [];
      for (let i = 1; i < out.length - 1; i += 3) batch.push({ userId: String(out[i]), lastActive: Number(out[i + 1]), v: Number(out[i + 2]) });
      for (const e of batch) removed.push(e);
      if (batch.length) onBatch?.(batch);
      if (read < this.sweepBatch) break;
    }
    return { removed, published: !!channel };
  }

  async addSocket(instanceId: string, userId: string, ttlMs: number): Promise<void> {
    const key = socketsKey(instanceId);
    const until = Date.now() + ttlMs;
    await this.redis.multi().sadd(key, userId).pexpire(key, ttlMs).zadd(INSTANCES, 'GT', until, instanceId).exec();
  }

  async setInstanceSockets(instanceId: string, userIds: string[], ttlMs: number): Promise<void> {
    const key = socketsKey(instanceId);
    const now = Date.now();
    const multi = this.redis.multi().del(key);
    for (let i = 0; i < userIds.length; i += 10_000) multi.sadd(key, ...userIds.slice(i, i + 10_000));
    multi.pexpire(key, ttlMs).zadd(INSTANCES, now + ttlMs, instanceId).zremrangebyscore(INSTANCES, '-inf', now);
    await multi.exec();
  }

  async withSockets(users: { userId: string; heardWithinMs: number }[], now: number, except = ''): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < users.length; i += 1000) {
      const args: (string | number)[] = [now, except];
      for (const u of users.slice(i, i + 1000)) args.push(u.userId, Math.round(u.heardWithinMs));
      out.push(...(await this.run<string[]>('WITH_SOCKETS', [ACTIVE, ONLINE, INSTANCES, BEATS], args)));
    }
    return out;
  }

  async beat(instanceId: string): Promise<void> {
    await this.run('BEAT', [BEATS], [instanceId]);
  }

  async forgetBeat(instanceId: string): Promise<void> {
    await this.redis.zrem(BEATS, instanceId);
  }

  async claim(key: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(`{presence}:lock:${key}`, '1', 'PX', Math.ceil(ttlMs), 'NX')) === 'OK';
  }
}

/** The same contract in one process, for running without Redis (one instance: no socket lists to share). */
export class MemoryPresenceStore implements PresenceStore {
  private readonly active = new Map<string, number>();
  private readonly sessions = new Map<string, Map<string, number>>();
  private readonly locks = new Map<string, number>();
  private readonly hidden = new Set<string>();
  /** Users taken OFFLINE and not active since, by when (see GONE). */
  private readonly gone = new Map<string, number>();
  /** Ended sessions ('userId sessionId'), until when their late activity is not taken (see endSession). */
  private readonly ended = new Map<string, number>();
  /** The transitions' counter (see PresenceStore): its first is 2, as the Redis store's are above 1. */
  private seq = 1;

  async touch(activity: readonly Activity[]) {
    const out: CameOnline[] = [];
    for (const { userId, sessionId, now, quiet } of activity) {
      if (sessionId && (this.ended.get(`${userId} ${sessionId}`) ?? 0) > Date.now()) continue;
      if (quiet && this.gone.has(userId)) continue;
      if (!this.active.has(userId)) {
        this.gone.delete(userId);
        if (!this.hidden.has(userId)) out.push({ userId, v: ++this.seq });
      }
      this.active.set(userId, Math.max(now, this.active.get(userId) ?? 0));
      if (sessionId) {
        let s = this.sessions.get(userId);
        if (!s) this.sessions.set(userId, (s = new Map()));
        s.set(sessionId, Math.max(now, s.get(sessionId) ?? 0));
      }
    }
    return out;
  }
  private drop(userId: string): Gone {
    this.sessions.delete(userId);
    this.gone.set(userId, Date.now());
    if (!this.active.delete(userId)) return false;
    return this.hidden.has(userId) ? 'hidden' : ++this.seq;
  }
  private end(userId: string, sessionId: string, ttlMs: number): void {
    this.ended.set(`${userId} ${sessionId}`, Date.now() + ttlMs);
  }
  async remove(userId: string, sessionTtlMs: number) {
    for (const sessionId of this.sessions.get(userId)?.keys() ?? []) this.end(userId, sessionId, sessionTtlMs);
    return this.drop(userId);
  }
  async endSession(userId: string, sessionId: string, o: { liveHere: boolean; cutoff: number; sessionTtlMs: number }) {
    const s = this.sessions.get(userId);
    s?.delete(sessionId);
    this.end(userId, sessionId, o.sessionTtlMs);
    if (o.liveHere) return false;
    if (!this.active.has(userId)) return this.absent(userId);
    if (s && [...s.values()].some((at) => at >= o.cutoff)) return false;
    return this.drop(userId);
  }
  async socketsGone(userId: string, o: { closedAt: number; ended?: { sessionId: string; cutoff: number } }) {
    const s = this.sessions.get(userId);
    if (o.ended) s?.delete(o.ended.sessionId);
    const at = this.active.get(userId);
    if (at === undefined) return this.absent(userId);
    // Activity after the close counts while a session it came from remains (see SOCKETS_GONE).
    if (at > o.closedAt && s && [...s.values()].some((t) => t >= o.closedAt)) return false;
    if (o.ended && s && [...s.values()].some((t) => t >= o.ended!.cutoff)) return false;
    return this.drop(userId);
  }
  private absent(userId: string): false | typeof ABSENT {
    return this.gone.has(userId) ? false : ABSENT;
  }
  async read(userIds: string[]) {
    return { active: userIds.map((id) => this.active.get(id) ?? null), hidden: userIds.map((id) => this.hidden.has(id)) };
  }
  async setHidden(userId: string, hidden: boolean) {
    if (hidden) this.hidden.add(userId);
    else this.hidden.delete(userId);
    const active = this.active.get(userId);
    return active === undefined ? null : { active, v: ++this.seq };
  }
  async seedHidden(userIds: string[]) {
    for (const id of userIds) this.hidden.add(id);
  }
  async page(fromId: string | null, limit: number, backward = false) {
    const ids = [...this.active.keys()].filter((id) => !this.hidden.has(id) && (fromId === null || (backward ? id < fromId : id > fromId))).sort();
    return backward ? ids.reverse().slice(0, limit) : ids.slice(0, limit);
  }
  async onlineOf(userIds: string[]) {
    return userIds.filter((id) => this.active.has(id) && !this.hidden.has(id));
  }
  async count() {
    let n = 0;
    for (const id of this.active.keys()) if (!this.hidden.has(id)) n++;
    return n;
  }
  async expire(cutoff: number, now: number, _channel?: StoreChannel, onBatch?: (batch: Expired[]) => void) {
    const removed: Expired[] = [];
    for (const [userId, at] of this.gone) if (at < Date.now() - (now - cutoff)) this.gone.delete(userId);
    for (const [key, until] of this.ended) if (until <= Date.now()) this.ended.delete(key);
    for (const [userId, at] of this.active) {
      if (at < cutoff) {
        const gone = this.drop(userId);
        removed.push({ userId, lastActive: at, v: typeof gone === 'number' ? gone : 0 });
      }
    }
    if (removed.length) onBatch?.(removed);
    return { removed, published: false };
  }
  async addSocket() {}
  async setInstanceSockets() {}
  async withSockets() {
    return [];
  }
  async beat() {}
  async forgetBeat() {}
  async claim(key: string, ttlMs: number) {
    const now = Date.now();
    for (const [k, until] of this.locks) if (until <= now) this.locks.delete(k);
    if (this.locks.has(key)) return false;
    this.locks.set(key, now + ttlMs);
    return true;
  }
}
