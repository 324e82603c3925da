import type { Viewer } from './auth.viewer';
import type { RedisClient } from '../../shared/redis';
import { hashToken, newToken } from './auth.tokens';

/** How long a ticket can be redeemed, in seconds (the contract says 60). */
export const STREAM_TICKET_TTL = 60;
const PREFIX = 'stream-ticket:';
/**
 * The most tickets this process keeps at once (without Redis): beyond it the oldest goes (its
 * client asks again). Issuing is rate-limited per user (see the resolver); this bounds the sum.
 */
const MAX_IN_MEMORY = 100_000;

/**
 * Single-use tickets that stand for a session in an SSE URL, since a plain EventSource cannot
 * send an Authorization header. Only a ticket's hash is stored, with its session's token hash
 * (never the token): in Redis when configured, so any instance can redeem it, in this process
 * otherwise.
 */
export class StreamTickets {
  /** Ticket hash -> token hash and expiry, in issue order (so in expiry order). */
  private readonly memory = new Map<string, { tokenHash: string; expires: number }>();

  constructor(private readonly redis?: RedisClient) {}

  /** A new ticket for the viewer's session. */
  async issue(viewer: Viewer): Promise<string> {
    const ticket = newToken();
    const key = hashToken(ticket);
    if (this.redis) {
      await this.redis.set(PREFIX + key, viewer.tokenHash, 'EX', STREAM_TICKET_TTL);
      return ticket;
    }
    const now = Date.now();
    this.expire(now);
    if (this.memory.size >= MAX_IN_MEMORY) this.memory.delete(this.memory.keys().next().value!);
    this.memory.set(key, { tokenHash: viewer.tokenHash, expires: now + STREAM_TICKET_TTL * 1000 });
    return ticket;
  }

  /** The token hash a ticket stands for, once: null when it is unknown, used or expired. */
  async redeem(ticket: string): Promise<string | null> {
    if (!ticket || ticket.length > 128) return null;
    const key = hashToken(ticket);
    if (this.redis) return this.redis.getdel(PREFIX + key);
    const entry = this.memory.get(key);
    this.memory.delete(key);
    const now = Date.now();
    this.expire(now);
    return entry && entry.expires > now ? entry.tokenHash : null;
  }

  /** Unredeemed tickets go once expired; the oldest come first, so this stops at the first live one. */
  private expire(now: number): void {
    for (const [k, e] of this.memory) {
      if (e.expires > now) break;
      this.memory.delete(k);
    }
  }

  /** Tickets held in this process (for tests). */
  get held(): number {
    return this.memory.size;
  }

  dispose(): void {
    this.memory.clear();
  }
}
