import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray } from '../../shared/sql';

/** Who counts as whose contact, and each user's presence visibility. */
export const presenceRepository = {
  /**
   * The contacts of each of `userIds`: friends, direct-message peers, and the members of the groups
   * and projects they share with at most `groupMax` members (the lobby never counts). One statement
   * for a batch of users (sockets connect in bursts).
   */
  async contactsOfMany(em: EntityManager, userIds: readonly string[], groupMax: number): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>(userIds.map((id) => [id, []]));
    if (!userIds.length) return out;
    const rows: { user_id: string; contact: string }[] = await em.execute(
      `with me as (select unnest(?::uuid[]) as id)
       select me.id as user_id, c.contact from me cross join lateral (
         select f.user_b_id as contact from friendships f where f.user_a_id = me.id
         union select f.user_a_id from friendships f where f.user_b_id = me.id
         union select cm.peer_id from conversation_members cm where cm.user_id = me.id and cm.kind = 'DIRECT' and cm.peer_id is not null
         union select o.user_id from group_members m
           join groups g on g.id = m.group_id and not g.is_lobby and g.member_count <= ?
           join group_members o on o.group_id = m.group_id
           where m.user_id = me.id
         union select o.user_id from project_members m
           join project_members o on o.project_id = m.project_id
           where m.user_id = me.id and (select count(*) from (select 1 from project_members n where n.project_id = m.project_id limit ?) x) <= ?
       ) c where c.contact <> me.id`,
      [`{${userIds.join(',')}}`, groupMax, groupMax + 1, groupMax],
    );
    for (const r of rows) out.get(r.user_id)?.push(r.contact);
    return out;
  },

  /**
   * Whether a membership change of this group or project can change anyone's contacts: not in a
   * group larger than `groupMax` + `changed` (before and after the change), never in the lobby.
   */
  async scopeMayMakeContacts(em: EntityManager, scope: 'group' | 'project', id: string, groupMax: number, changed: number): Promise<boolean | 'lobby'> {
    const limit = groupMax + changed;
    if (scope === 'group') {
      const rows: { lobby: boolean; small: boolean }[] = await em.execute('select is_lobby as lobby, member_count <= ? as small from groups where id = ?', [limit, id]);
      // A deleted group: its former members lose whatever it gave them.
      if (!rows[0]) return true;
      return rows[0].lobby ? 'lobby' : rows[0].small;
    }
    const rows: { small: boolean }[] = await em.execute('select count(*) <= ? as small from (select 1 from project_members where project_id = ? limit ?) x', [limit, id, limit + 1]);
    return rows[0]?.small ?? true;
  },

  /** The users who hide their presence (few: a partial index), mirrored in the presence store at start-up. */
  async hiddenUserIds(em: EntityManager): Promise<string[]> {
    const rows: { id: string }[] = await em.execute(`select id from users where presence_visibility = 'HIDDEN'`);
    return rows.map((r) => r.id);
  },

  /** Of `userIds`, those HIDDEN (the database holds the choice; the store mirrors it). */
  async hiddenAmong(em: EntityManager, userIds: readonly string[]): Promise<Set<string>> {
    const rows: { id: string }[] = await em.execute("select id from users where id = any(?::uuid[]) and presence_visibility = 'HIDDEN'", [pgArray(userIds)]);
    return new Set(rows.map((r) => r.id));
  },

  async presenceVisibilityOf(em: EntityManager, userId: string): Promise<string | null> {
    const rows: { v: string }[] = await em.execute('select presence_visibility as v from users where id = ? and deleted_at is null', [userId]);
    return rows[0]?.v ?? null;
  },

  /** The user's choice, their row locked to the end of the transaction (null: no such user). */
  async lockPresenceVisibility(em: EntityManager, userId: string): Promise<string | null> {
    const rows: { v: string }[] = await em.execute('select presence_visibility as v from users where id = ? and deleted_at is null for update', [userId]);
    return rows[0]?.v ?? null;
  },

  /** Sets the choice, in the transaction that locked the row (see lockPresenceVisibility). */
  async setPresenceVisibility(em: EntityManager, userId: string, visibility: string): Promise<void> {
    await em.execute('update users set presence_visibility = ? where id = ?', [visibility, userId]);
  },
};
