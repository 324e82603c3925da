import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray } from '../../shared/sql';

/** Mutes live on the member's own conversation row (conversation_members.muted_until): they go with it. */
export const muteRepository = {
  /**
   * Sets (a date) or clears (null) the member's mute: null when the user has no row in that
   * conversation, else whether the mute in effect changed (a lapsed one reads as none) and its
   * version: the database's clock, in µs, once the row was locked, so two changes of one mute are
   * numbered in the order they were applied (see SafetyLists).
   */
  async set(em: EntityManager, key: string, userId: string, until: Date | null): Promise<{ changed: boolean; v: number } | null> {
    // The row as it stands, locked (a mute committed meanwhile is read, not the statement's snapshot), then changed.
    const rows: { changed: boolean; v: string }[] = await em.execute(
      `with old as (select case when muted_until > now() then muted_until end as was from conversation_members where conversation_key = ? and user_id = ? for update)
       update conversation_members cm set muted_until = ? from old where cm.conversation_key = ? and cm.user_id = ?
       returning old.was is distinct from case when cm.muted_until > now() then cm.muted_until end as changed,
         (extract(epoch from clock_timestamp()) * 1000000)::bigint as v`,
      [key, userId, until, key, userId],
    );
    return rows[0] ? { changed: rows[0].changed, v: Number(rows[0].v) } : null;
  },

  /** The user's mutes not yet over, by conversation key (ms). */
  async activeOfMany(em: EntityManager, userIds: readonly string[]): Promise<Map<string, Map<string, number>>> {
    const out = new Map<string, Map<string, number>>();
    if (!userIds.length) return out;
    const rows: { user_id: string; conversation_key: string; muted_until: Date }[] = await em.execute(
      'select user_id, conversation_key, muted_until from conversation_members where user_id = any(?::uuid[]) and muted_until > now()',
      [pgArray(userIds)],
    );
    for (const r of rows) {
      let m = out.get(r.user_id);
      if (!m) out.set(r.user_id, (m = new Map()));
      m.set(r.conversation_key, new Date(r.muted_until).getTime());
    }
    return out;
  },

  /** The viewer's mute of each of `keys` not yet over (absent: not muted). */
  async of(em: EntityManager, userId: string, keys: readonly string[]): Promise<Map<string, Date>> {
    const out = new Map<string, Date>();
    if (!keys.length) return out;
    const rows: { conversation_key: string; muted_until: Date }[] = await em.execute(
      'select conversation_key, muted_until from conversation_members where user_id = ? and conversation_key = any(?::text[]) and muted_until > now()',
      [userId, pgArray(keys)],
    );
    for (const r of rows) out.set(r.conversation_key, new Date(r.muted_until));
    return out;
  },

  /** Of (recipient, conversation) pairs, the mutes that were on at `at` or came since (as `recipient|key` to until when). */
  async mutedPairs(em: EntityManager, pairs: readonly { recipientId: string; conversationKey: string; at: Date }[]): Promise<Map<string, Date>> {
    if (!pairs.length) return new Map();
    const rows: { user_id: string; conversation_key: string; muted_until: Date }[] = await em.execute(
      `select distinct cm.user_id, cm.conversation_key, cm.muted_until from unnest(?::uuid[], ?::text[]) as x(u, k)
       join conversation_members cm on cm.conversation_key = x.k and cm.user_id = x.u where cm.muted_until > ?`,
      [pgArray(pairs.map((p) => p.recipientId)), pgArray(pairs.map((p) => p.conversationKey)), new Date(pairs.reduce((min, p) => Math.min(min, p.at.getTime()), Infinity))],
    );
    return new Map(rows.map((r) => [`${r.user_id}|${r.conversation_key}`, new Date(r.muted_until)]));
  },
};
