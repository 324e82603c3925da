import type { EntityManager } from '@mikro-orm/postgresql';
import type { User } from '../user/user.entity';
import { Session } from './session.entity';
import { pgTextArray } from '../../shared/sql';

/** Issued tokens (only their hashes); the accounts themselves are userRepository's. */
export const sessionRepository = {
  /** What a token stands for: its session, user and expiry. */
  async byTokenHash(em: EntityManager, tokenHash: string) {
    return em.findOne(Session, { tokenHash }, { fields: ['id', 'user', 'expiresAt'] });
  },

  /** Of `tokenHashes`, those whose session is still stored (not revoked; expired or not). */
  async stored(em: EntityManager, tokenHashes: readonly string[]): Promise<Set<string>> {
    const rows: { token_hash: string }[] = await em.execute('select token_hash from sessions where token_hash = any(?::text[])', [pgTextArray(tokenHashes)]);
    return new Set(rows.map((r) => r.token_hash));
  },

  async insert(em: EntityManager, s: { user: User; tokenHash: string; expiresAt: Date }): Promise<Session> {
    const session = em.create(Session, s);
    await em.flush();
    return session;
  },

  async delete(em: EntityManager, id: string): Promise<void> {
    await em.nativeDelete(Session, { id });
  },

  /** Every session of a user, with what revoking them needs. */
  async ofUser(em: EntityManager, userId: string) {
    return em.find(Session, { user: userId }, { fields: ['id', 'tokenHash'] });
  },

  /** Whether a session is still stored (not logged out, nor revoked). */
  async stands(em: EntityManager, id: string): Promise<boolean> {
    return (await em.execute('select 1 from sessions where id = ?', [id])).length > 0;
  },

  /** Deletes a user's sessions but `keep`: the ids and token hashes of those it deleted, and whether each had expired. */
  async deleteOthersOf(em: EntityManager, userId: string, keep: string): Promise<{ id: string; token_hash: string; expired: boolean }[]> {
    return em.execute('delete from sessions where user_id = ? and id <> ? returning id, token_hash, expires_at <= now() as expired', [userId, keep]);
  },

  /** Deletes up to `limit` sessions that expired before `before` (oldest first): how many. */
  async purgeExpired(em: EntityManager, before: Date, limit: number): Promise<number> {
    const rows: unknown[] = await em.execute(
      'delete from sessions where id in (select id from sessions where expires_at < ? order by expires_at limit ?) returning id',
      [before, limit],
    );
    return rows.length;
  },

  async deleteAllOf(em: EntityManager, userId: string): Promise<void> {
    await em.nativeDelete(Session, { user: userId });
  },
};
