/**
 * The hand-written baselines' store (bench:http's endpoint, bench:fanout's storing room router):
 * what a team would write with Node's http, pg and nothing else, over Parley's own tables. Its
 * statements are prepared (named), as Parley's hot ones are.
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';

export interface Sent {
  id: string;
  content: string;
  created_at: Date;
  sender_id: string;
  username: string;
  display_name: string | null;
}

// One statement, its own commit: the membership checked, the message stored, its sender read back.
// It takes no place among its conversation's messages (seq 0, no head): a baseline sends only to groups of its own.
const SEND = `with m as (
    insert into messages (id, conversation_key, sender_id, content, group_id, seq, created_at)
    select $1, 'g:' || $2, $3, $4, $2::uuid, 0, date_trunc('milliseconds', clock_timestamp())
    where exists (select 1 from group_members where group_id = $2::uuid and user_id = $3)
    returning id, sender_id, content, created_at)
  select m.id, m.content, m.created_at, u.id as sender_id, u.username, u.display_name from m join users u on u.id = m.sender_id`;

export function handwritten(databaseUrl: string, poolMax: number) {
  // Generic plans always: PostgreSQL otherwise picks between generic and custom plans by the
  // statistics, and on a fresh bench database it planned the history page on every call (300 µs of
  // its CPU a page against 130 with the generic plan). The baselines get their best case.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolMax, options: '-c plan_cache_mode=force_generic_plan' });
  const sessions = new Map<string, { userId: string; expiresAt: number; cachedAt: number }>();
  return {
    pool,
    /** The user of a bearer token (sha256 of it in sessions, cached for a minute as Parley caches it), or null. */
    async viewer(authorization: string | undefined): Promise<string | null> {
      if (!authorization?.startsWith('Bearer ')) return null;
      const hash = createHash('sha256').update(authorization.slice(7)).digest('hex');
      const now = Date.now();
      const hit = sessions.get(hash);
      if (hit && now - hit.cachedAt < 60_000) return hit.expiresAt > now ? hit.userId : null;
      const { rows } = await pool.query({ name: 'hw_session', text: 'select user_id, expires_at from sessions where token_hash = $1', values: [hash] });
      if (!rows.length) return null;
      sessions.set(hash, { userId: rows[0].user_id, expiresAt: rows[0].expires_at.getTime(), cachedAt: now });
      return rows[0].expires_at.getTime() > now ? rows[0].user_id : null;
    },
    /** Stores a message to a group the user is a member of (committed when it returns); null when not a member. */
    async send(groupId: string, userId: string, content: string): Promise<Sent | null> {
      const { rows } = await pool.query<Sent>({ name: 'hw_send', text: SEND, values: [randomUUID(), groupId, userId, content] });
      return rows[0] ?? null;
    },
    end: () => pool.end(),
  };
}
