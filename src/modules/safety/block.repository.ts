import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray } from '../../shared/sql';

/**
 * The one SQL predicate of a block, for any query that leaves a blocked sender's rows out of a
 * viewer's view: true when `viewer` (a placeholder or column) blocks the user in `sender` (a
 * column). One probe of user_blocks' primary key per row; none found for a viewer who blocks no one.
 * Threads' mention counts plug in here too: `and not ${blockedBy('?', 'm.sender_id')}`.
 */
export const blockedBy = (viewer: string, sender: string): string =>
  `exists (select 1 from user_blocks ub where ub.blocker_id = ${viewer} and ub.blocked_id = ${sender})`;

/**
 * True when `viewer` blocks anyone: asked first, it spares the per-row probes (and the lookups that
 * feed them) for a viewer who blocks no one, as most don't.
 */
export const blocksAnyone = (viewer: string): string => `exists (select 1 from user_blocks ub0 where ub0.blocker_id = ${viewer})`;

/**
 * `not blockedBy` for a viewer given as a parameter (two `?`, both the viewer) over many rows: the
 * first test is one probe for the whole statement (an InitPlan), so the per-row probe runs only for
 * a viewer who blocks someone (a history page: 0.108 ms of execution against 0.135).
 */
export const notBlockedByViewer = (sender: string): string => `(not ${blocksAnyone('?')} or not ${blockedBy('?', sender)})`;

/** Whether `viewerId` blocks `senderId` (never themselves): that sender's messages are out of the viewer's sight. */
export async function blocksSender(em: EntityManager, viewerId: string, senderId: string): Promise<boolean> {
  return senderId !== viewerId && (await blockRepository.blockedAmong(em, viewerId, [senderId])).size > 0;
}

export const blockRepository = {
  /** True when the row is new (a block already there changes nothing). */
  async block(em: EntityManager, blockerId: string, blockedId: string): Promise<boolean> {
    const rows = await em.execute(
      'insert into user_blocks (blocker_id, blocked_id, created_at) values (?, ?, now()) on conflict do nothing returning blocked_id',
      [blockerId, blockedId],
    );
    return rows.length > 0;
  },

  /**
   * True when there was a block to remove. The threads in which the blocked user's replies mentioned
   * the blocker meanwhile, which did not make them a follower then (see thread.repository), do now,
   * as the mentions show again: each from its first such reply, its replies unread.
   */
  async unblock(em: EntityManager, blockerId: string, blockedId: string): Promise<boolean> {
    const rows = await em.execute(
      `with lifted as (delete from user_blocks where blocker_id = ? and blocked_id = ? returning blocker_id, blocked_id), followed as (
         insert into thread_members (root_id, user_id, conversation_key, joined_at, replied, read_at)
         select distinct on (m.parent_id) m.parent_id, mn.user_id, m.conversation_key, m.created_at, false, null::timestamptz
         from lifted join message_mentions mn on mn.user_id = lifted.blocker_id join messages m on m.id = mn.message_id
         where m.sender_id = lifted.blocked_id and m.parent_id is not null and m.deleted_at is null
           and exists (select 1 from conversation_members cm where cm.conversation_key = m.conversation_key and cm.user_id = mn.user_id)
         order by m.parent_id, m.created_at
         on conflict (root_id, user_id) do nothing)
       select blocked_id from lifted`,
      [blockerId, blockedId],
    );
    return rows.length > 0;
  },

  /** Whether either of the two blocks the other, and which way. */
  async between(em: EntityManager, a: string, b: string): Promise<{ aBlocksB: boolean; bBlocksA: boolean }> {
    const rows: { blocker_id: string }[] = await em.execute(
      'select blocker_id from user_blocks where (blocker_id = ? and blocked_id = ?) or (blocker_id = ? and blocked_id = ?)',
      [a, b, b, a],
    );
    return { aBlocksB: rows.some((r) => r.blocker_id === a), bBlocksA: rows.some((r) => r.blocker_id === b) };
  },

  /** Whom the user blocks, most recent first. */
  async blockedIds(em: EntityManager, blockerId: string): Promise<string[]> {
    const rows: { blocked_id: string }[] = await em.execute('select blocked_id from user_blocks where blocker_id = ? order by created_at desc, blocked_id', [blockerId]);
    return rows.map((r) => r.blocked_id);
  },

  /** Of `ids`, those the viewer blocks. */
  async blockedAmong(em: EntityManager, blockerId: string, ids: readonly string[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const rows: { blocked_id: string }[] = await em.execute('select blocked_id from user_blocks where blocker_id = ? and blocked_id = any(?::uuid[])', [
      blockerId,
      pgArray(ids),
    ]);
    return new Set(rows.map((r) => r.blocked_id));
  },

  /** Whom each of several users blocks, in one query (sessions connecting in a burst). */
  async blockedOfMany(em: EntityManager, blockerIds: readonly string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!blockerIds.length) return out;
    const rows: { blocker_id: string; blocked_id: string }[] = await em.execute(
      'select blocker_id, blocked_id from user_blocks where blocker_id = any(?::uuid[])',
      [pgArray(blockerIds)],
    );
    for (const r of rows) {
      const list = out.get(r.blocker_id);
      if (list) list.push(r.blocked_id);
      else out.set(r.blocker_id, [r.blocked_id]);
    }
    return out;
  },

  /** Of (recipient, sender) pairs, those where the recipient blocks the sender, as `recipient|sender`. */
  async blockingPairs(em: EntityManager, pairs: readonly { recipientId: string; senderId: string }[]): Promise<Set<string>> {
    if (!pairs.length) return new Set();
    const rows: { blocker_id: string; blocked_id: string }[] = await em.execute(
      `select ub.blocker_id, ub.blocked_id from unnest(?::uuid[], ?::uuid[]) as x(r, s) join user_blocks ub on ub.blocker_id = x.r and ub.blocked_id = x.s`,
      [pgArray(pairs.map((p) => p.recipientId)), pgArray(pairs.map((p) => p.senderId))],
    );
    return new Set(rows.map((r) => `${r.blocker_id}|${r.blocked_id}`));
  },
};
