import type { EntityManager } from '@mikro-orm/postgresql';
import { groupBy, pgArray, prepared } from '../../shared/sql';
import { conversationRepository } from '../conversation/conversation.repository';
import { User } from '../user/user.entity';
import { likePattern } from '../user/user.repository';
import { Group, GroupMember } from './group.entity';
import { groupKey } from '../conversation/conversation.keys';

export const groupRepository = {
  async byId(em: EntityManager, id: string): Promise<Group | null> {
    return em.findOne(Group, { id });
  },

  /** Throws when there is no such group. */
  async byIdOrFail(em: EntityManager, id: string): Promise<Group> {
    return em.findOneOrFail(Group, { id });
  },

  async byIds(em: EntityManager, ids: readonly string[]): Promise<Group[]> {
    return em.find(Group, { id: { $in: [...ids] } });
  },

  /** Of `ids`, the groups the viewer may see: public ones, and private ones the viewer is a member of. */
  async visibleByIds(em: EntityManager, ids: readonly string[], viewerId: string): Promise<Group[]> {
    if (!ids.length) return [];
    const groups = await em.find(Group, { id: { $in: [...ids] } });
    const hidden = groups.filter((g) => g.isPrivate).map((g) => g.id);
    if (!hidden.length) return groups;
    // A second query only for private groups: are they the viewer's?
    const mine: { group_id: string }[] = await em.execute('select group_id from group_members where user_id = ? and group_id = any(?::uuid[])', [viewerId, pgArray(hidden)]);
    const member = new Set(mine.map((r) => r.group_id));
    return groups.filter((g) => !g.isPrivate || member.has(g.id));
  },

  /** A new group, no members yet (addMember counts them). */
  async insert(em: EntityManager, g: { name: string; ownerId: string; isPrivate: boolean }): Promise<Group> {
    const group = em.create(Group, { name: g.name, owner: em.getReference(User, g.ownerId), isPrivate: g.isPrivate, memberCount: 0 });
    await em.flush();
    return group;
  },

  /** Reads the group again: its memberCount after addMember. */
  async reload(em: EntityManager, group: Group): Promise<void> {
    await em.refresh(group);
  },

  /** Locks the group row for the rest of the transaction: members leaving one group do it one at a time. */
  async lock(em: EntityManager, id: string): Promise<void> {
    await em.execute('select id from groups where id = ? for update', [id]);
  },

  /** Deletes the group, its memberships (cascade) and its conversation with the attachments in it. */
  async destroy(em: EntityManager, groupId: string): Promise<void> {
    await em.execute('with m as (delete from messages where conversation_key = ? returning attachment_id) delete from attachments where id in (select attachment_id from m)', [
      groupKey(groupId),
    ]);
    await em.execute('delete from groups where id = ?', [groupId]);
    await conversationRepository.drop(em, groupKey(groupId));
  },

  async lobby(em: EntityManager): Promise<Group | null> {
    return em.findOne(Group, { isLobby: true });
  },

  /** Creates the lobby unless it exists; safe when many instances start at once (partial unique index). */
  async ensureLobby(em: EntityManager, id: string): Promise<void> {
    await em.execute(`insert into groups (id, name, is_private, is_lobby, member_count, created_at) values (?, 'Lobby', false, true, 0, now()) on conflict do nothing`, [id]);
  },

  /** A group's visibility and whether `userId` belongs to it, in one round trip; null when it does not exist. */
  async access(em: EntityManager, groupId: string, userId: string): Promise<{ id: string; name: string; ownerId: string | null; isPrivate: boolean; member: boolean } | null> {
    // Prepared: every send and subscription to a group asks it first.
    const rows = await prepared<{ id: string; name: string; owner_id: string | null; is_private: boolean; member: boolean }>(
      em,
      'select g.id, g.name, g.owner_id, g.is_private, exists (select 1 from group_members m where m.group_id = g.id and m.user_id = ?) as member from groups g where g.id = ?',
      [userId, groupId],
    );
    const r = rows[0];
    return r ? { id: r.id, name: r.name, ownerId: r.owner_id, isPrivate: r.is_private, member: r.member } : null;
  },

  async membership(em: EntityManager, groupId: string, userId: string): Promise<GroupMember | null> {
    return em.findOne(GroupMember, { group: groupId, user: userId });
  },

  async memberIds(em: EntityManager, groupId: string): Promise<string[]> {
    const rows: { user_id: string }[] = await em.execute('select user_id from group_members where group_id = ?', [groupId]);
    return rows.map((r) => r.user_id);
  },

  async groupIdsOf(em: EntityManager, userId: string): Promise<string[]> {
    const rows: { group_id: string }[] = await em.execute('select group_id from group_members where user_id = ?', [userId]);
    return rows.map((r) => r.group_id);
  },

  /** The groups of each of many users, in one query (a burst of sockets connecting loads together). */
  async groupIdsOfMany(em: EntityManager, userIds: readonly string[]): Promise<Map<string, string[]>> {
    const rows: { user_id: string; group_id: string }[] = await em.execute('select user_id, group_id from group_members where user_id = any(?::uuid[])', [pgArray([...userIds])]);
    return groupBy(rows, (r) => r.user_id, (r) => r.group_id);
  },

  /** The longest-standing member other than `exceptUserId`. */
  async successor(em: EntityManager, groupId: string, exceptUserId: string): Promise<GroupMember | null> {
    return em.findOne(GroupMember, { group: groupId, user: { $ne: exceptUserId } }, { orderBy: { joinedAt: 'asc', id: 'asc' } });
  },

  /**
   * Inserts a membership and counts it; false when it already existed. The join time in
   * milliseconds, as the members page's cursor carries it: with microseconds, "after" the cursor
   * took in the row it was cut at.
   */
  async addMember(em: EntityManager, groupId: string, userId: string, id: string): Promise<boolean> {
    const conn = em;
    const res = await conn.execute(
      "insert into group_members (id, group_id, user_id, joined_at) values (?, ?, ?, date_trunc('milliseconds', now())) on conflict (group_id, user_id) do nothing returning id",
      [id, groupId, userId],
    );
    if (!res.length) return false;
    await conn.execute('update groups set member_count = member_count + 1 where id = ?', [groupId]);
    await conversationRepository.join(em, { key: groupKey(groupId), userId, kind: 'GROUP', groupId });
    return true;
  },

  async removeMember(em: EntityManager, groupId: string, userId: string): Promise<boolean> {
    const conn = em;
    const res = await conn.execute('delete from group_members where group_id = ? and user_id = ? returning id', [groupId, userId]);
    if (!res.length) return false;
    await conn.execute('update groups set member_count = member_count - 1 where id = ?', [groupId]);
    await conversationRepository.leave(em, groupKey(groupId), userId);
    return true;
  },

  /** Public groups and the viewer's own, by lower(name), id. */
  /** A page of the groups the viewer may see by (lower(name), id): after `from`, or before it when `backward` (fetched nearest first). */
  async visible(em: EntityManager, viewerId: string, opts: { search: string | null; from: { k: string; id: string } | null; backward: boolean; limit: number }) {
    const where = ['(not g.is_private or exists (select 1 from group_members m where m.group_id = g.id and m.user_id = ?))'];
    const params: unknown[] = [viewerId];
    if (opts.search) {
      where.push('g.name ilike ?');
      params.push(likePattern(opts.search));
    }
    const conn = em;
    const [{ count }] = await conn.execute(`select count(*)::int as count from groups g where ${where.join(' and ')}`, params);
    const dir = opts.backward ? 'desc' : 'asc';
    if (opts.from) {
      where.push(`(lower(g.name), g.id) ${opts.backward ? '<' : '>'} (?, ?)`);
      params.push(opts.from.k, opts.from.id);
    }
    const ids: { id: string }[] = await conn.execute(
      `select g.id from groups g where ${where.join(' and ')} order by lower(g.name) ${dir}, g.id ${dir} limit ?`,
      [...params, opts.limit + 1],
    );
    const groups = await em.find(Group, { id: { $in: ids.map((r) => r.id) } });
    const byId = new Map(groups.map((g) => [g.id, g]));
    return { rows: ids.map((r) => byId.get(r.id)!).filter(Boolean), total: count as number };
  },

  /** A page of members by (joinedAt, id): after `from`, or before it when `backward` (fetched nearest first). */
  async members(em: EntityManager, groupId: string, opts: { from: { at: Date; id: string } | null; backward: boolean; limit: number }): Promise<GroupMember[]> {
    const [op, dir] = opts.backward ? (['$lt', 'desc'] as const) : (['$gt', 'asc'] as const);
    const { from } = opts;
    return em.find(
      GroupMember,
      from ? { group: groupId, $or: [{ joinedAt: { [op]: from.at } }, { joinedAt: from.at, id: { [op]: from.id } }] } : { group: groupId },
      { orderBy: { joinedAt: dir, id: dir }, limit: opts.limit + 1, populate: ['user'] },
    );
  },
};
