import type { EntityManager } from '@mikro-orm/postgresql';
import type { MembershipIndex } from '../membership/membership.index';
import type { Logger } from '../../shared/logger';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type UserPayload } from '../../shared/pubsub/topics';
import type { RedisClient } from '../../shared/redis';
import { scopeOf } from '../message/message.mapper';
import type { ConversationArgs, MessageService } from '../message/message.service';
import type { Conversation } from '../message/message.types';
import { toUserPayload } from '../user/user.mapper';
import { userRepository } from '../user/user.repository';

/**
 * Who is typing where, with a deadline each: in Redis when configured (so every instance sees
 * the same state), in memory otherwise. Nothing of it is ever written to PostgreSQL.
 */
export interface TypingStore {
  /** Typing until `deadline` (ms); true when the others should be told now: it started, or `throttleMs` passed since they last were. */
  start(slot: string, deadline: number, throttleMs: number): Promise<boolean>;
  /** Ends it; true when it was on (then the others are told, once). */
  stop(slot: string): Promise<boolean>;
  /** A lapse timer fired: 0 when this call ended it, -1 when it had ended already, else the later deadline it was refreshed to. */
  lapse(slot: string, now: number): Promise<number>;
}

export class MemoryTypingStore implements TypingStore {
  private readonly slots = new Map<string, { deadline: number; toldAt: number }>();

  async start(slot: string, deadline: number, throttleMs: number): Promise<boolean> {
    const now = Date.now();
    const s = this.slots.get(slot);
    const tell = !s || now - s.toldAt >= throttleMs;
    this.slots.set(slot, { deadline, toldAt: tell ? now : s!.toldAt });
    return tell;
  }

  async stop(slot: string): Promise<boolean> {
    return this.slots.delete(slot);
  }

  async lapse(slot: string, now: number): Promise<number> {
    const s = this.slots.get(slot);
    if (!s) return -1;
    if (s.deadline > now) return s.deadline;
    this.slots.delete(slot);
    return 0;
  }
}

// KEYS[1] the deadline, KEYS[2] the throttle; both expire on their own, well after any use.
const START = `
local was = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if was == 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) return 1 end
if redis.call('SET', KEYS[2], '1', 'PX', ARGV[2], 'NX') then return 1 end
return 0`;
const LAPSE = `
local d = redis.call('GET', KEYS[1])
if not d then return -1 end
if tonumber(d) > tonumber(ARGV[1]) then return tonumber(d) end
redis.call('DEL', KEYS[1])
return 0`;

export class RedisTypingStore implements TypingStore {
  constructor(private readonly redis: RedisClient) {}

  // One hash slot per typist and conversation, so the scripts run on a cluster too.
  private keys(slot: string): [string, string] {
    return [`typing:{${slot}}`, `typing:{${slot}}:told`];
  }

  async start(slot: string, deadline: number, throttleMs: number): Promise<boolean> {
    return (await this.redis.eval(START, 2, ...this.keys(slot), deadline, throttleMs, 60_000)) === 1;
  }

  async stop(slot: string): Promise<boolean> {
    return (await this.redis.del(this.keys(slot)[0])) > 0;
  }

  async lapse(slot: string, now: number): Promise<number> {
    return Number(await this.redis.eval(LAPSE, 1, this.keys(slot)[0], now));
  }
}

export interface TypingOptions {
  store: TypingStore;
  pubsub: PubSub;
  messages: MessageService;
  memberships: MembershipIndex;
  logger: Logger;
  /** Typing ends this long after the last refresh. @default 6000 */
  lapseMs?: number;
  /** At most one `typing: true` per user and conversation this often. @default 2000 */
  throttleMs?: number;
}

/**
 * setTyping and the typing events. A refresh within the throttle window tells no one; a stop,
 * a sent message or a lapse tells everyone once. The instance that last saw a user typing keeps
 * a timer; when it fires, the store says whether the lapse is real (a refresh through another
 * instance pushes the deadline on) and which single instance ends it.
 */
const PROFILE_TTL_MS = 60_000;
const PROFILES_MAX = 50_000;

export class TypingService {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Typists' public profiles, as events carry them: a refresh every 2 s costs no user query. */
  private readonly profiles = new Map<string, { user: UserPayload; at: number }>();
  private readonly lapseMs: number;
  private readonly throttleMs: number;

  constructor(private readonly o: TypingOptions) {
    this.lapseMs = o.lapseMs ?? 6000;
    this.throttleMs = o.throttleMs ?? 2000;
  }

  async set(em: EntityManager, viewerId: string, input: ConversationArgs, typing: boolean): Promise<boolean> {
    const conv = this.member(viewerId, input) ?? (await this.o.messages.conversation(em, viewerId, input));
    const viewer = await this.profile(em, viewerId);
    const slot = `${conv.key}:${viewer.id}`;
    if (!typing) {
      await this.end(conv, viewer, slot);
      return true;
    }
    const tell = await this.o.store.start(slot, Date.now() + this.lapseMs, this.throttleMs);
    this.arm(conv, viewer, slot, this.lapseMs);
    if (tell) await this.publish(conv, viewer, true);
    return true;
  }

  /**
   * A group or project the membership index already knows the viewer in (they hold a socket
   * here, as a typing client does): no query. Anything else goes through the full check.
   */
  private member(viewerId: string, c: ConversationArgs): Conversation | null {
    const base = { peerId: null, privateWith: null, title: '', ownerId: null };
    if (c.groupId && !c.projectId && !c.userId && this.o.memberships.has('group', viewerId, c.groupId)) {
      return { ...base, key: `g:${c.groupId}`, kind: 'group', groupId: c.groupId, projectId: null };
    }
    if (c.projectId && !c.groupId && !c.userId && this.o.memberships.has('project', viewerId, c.projectId)) {
      return { ...base, key: `p:${c.projectId}`, kind: 'project', groupId: null, projectId: c.projectId };
    }
    return null;
  }

  private async profile(em: EntityManager, userId: string): Promise<UserPayload> {
    const hit = this.profiles.get(userId);
    if (hit && Date.now() - hit.at < PROFILE_TTL_MS) return hit.user;
    const user = toUserPayload(await userRepository.profile(em, userId));
    if (this.profiles.size >= PROFILES_MAX) this.profiles.clear();
    this.profiles.set(userId, { user, at: Date.now() });
    return user;
  }

  /** A message was sent: the sender is no longer typing there. */
  sent(user: UserPayload, conv: Conversation): void {
    this.end(conv, user, `${conv.key}:${user.id}`).catch((e) => this.o.logger.warn({ err: e }, 'typing stop failed'));
  }

  private async end(conv: Conversation, viewer: UserPayload, slot: string): Promise<void> {
    this.disarm(slot);
    if (await this.o.store.stop(slot)) await this.publish(conv, viewer, false);
  }

  private arm(conv: Conversation, viewer: UserPayload, slot: string, ms: number): void {
    this.disarm(slot);
    const timer = setTimeout(() => {
      this.timers.delete(slot);
      const now = Date.now();
      this.o.store
        .lapse(slot, now)
        .then(async (r) => {
          if (r === 0) await this.publish(conv, viewer, false);
          else if (r > 0) this.arm(conv, viewer, slot, Math.max(10, r - now));
        })
        .catch((e) => this.o.logger.warn({ err: e }, 'typing lapse failed'));
    }, ms);
    timer.unref();
    this.timers.set(slot, timer);
  }

  private disarm(slot: string): void {
    const t = this.timers.get(slot);
    if (t) clearTimeout(t);
    this.timers.delete(slot);
  }

  private publish(conv: Conversation, user: UserPayload, typing: boolean): Promise<boolean> {
    return this.o.pubsub.publishSafe(Topic.Typing, { ...scopeOf(conv, user.id), userId: user.id, user, typing });
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.profiles.clear();
  }
}
