import type { EntityManager } from '@mikro-orm/postgresql';
import { groupBy, pgArray, pgTextArray, prepared } from '../../shared/sql';
import { conversationRepository, leaveAllOf } from '../conversation/conversation.repository';
import { User } from '../user/user.entity';
import { nameMatch } from '../user/user.repository';
import { Group, GroupMember, type MemberRole } from './group.entity';
import { groupKey } from '../conversation/conversation.keys';

/** A private group `g` the viewer (two `?`) may see: they are a member, or it invites them. */
const SEES_PRIVATE = '(exists (select 1 from group_members m where m.group_id = g.id and m.user_id = ?) or exists (select 1 from group_invites i where i.group_id = g.id and i.user_id = ?))';

/** The newest messages of a group read to stamp slow mode (see stampSlowMode): a bounded read whatever its traffic. */
const SLOW_STAMP_SCAN = 10_000;
/**
 * A message of `m` sent since slow mode began in group `g` (its start unknown, set by a release
 * before slow_mode_since: any). One sent before it never counts (an outside probe: a member who
 * left and came back, was re-added or demoted could not send, held to a message from before).
 */
const SINCE_SLOW_MODE = (m: string, g: string) => `(${g}.slow_mode_since is null or ${m}.created_at >= ${g}.slow_mode_since)`;

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

  /** Of `ids`, the groups the viewer may see, as `visible` and GroupService.visible decide: public ones, and private ones that are theirs or invite them. */
  async visibleByIds(em: EntityManager, ids: readonly string[], viewerId: string): Promise<Group[]> {
    if (!ids.length) return [];
    const groups = await em.find(Group, { id: { $in: [...ids] } });
    const hidden = groups.filter((g) => g.isPrivate).map((g) => g.id);
    if (!hidden.length) return groups;
    // A second query only for private groups: are they the viewer's?
    const mine: { group_id: string }[] = await em.execute(
      `select g.id as group_id from groups g where g.id = any(?::uuid[]) and ${SEES_PRIVATE}`,
      [pgArray(hidden), viewerId, viewerId],
    );
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
    // The members' rows first, as a send takes them (its gate's key-share lock, then the head's), and
    // as a project's deletion does: closing the head first deadlocked with a send that held its
    // sender's row (PostgreSQL's log, 5 in a run of the suite; the send ran again after 1 s).
    await em.execute('select 1 from group_members where group_id = ? order by user_id for update', [groupId]);
    // Closed then: the sends under way commit before the messages are deleted, and later ones write nothing.
    await conversationRepository.close(em, groupKey(groupId));
    await conversationRepository.deleteMessages(em, groupKey(groupId));
    await em.execute('delete from groups where id = ?', [groupId]);
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

  /** Those with a pending invitation to the group (they see it, its name, until they answer). */
  async inviteeIds(em: EntityManager, groupId: string): Promise<string[]> {
    const rows: { user_id: string }[] = await em.execute('select user_id from group_invites where group_id = ?', [groupId]);
    return rows.map((r) => r.user_id);
  },

  /**
   * Account deletion: the user's groups but `exceptId` (the lobby, left last), locked in one
   * statement, then each as leaving needs it, read under the locks: a group deleted or left
   * meanwhile comes back without them, or not at all. In id order, so two deletions at once wait
   * on each other instead of deadlocking (in heap order, which updates reshuffle, an outside
   * probe's concurrent deletions deadlocked until the retries ran out).
   */
  async lockGroupsOf(em: EntityManager, userId: string, exceptId: string): Promise<{ id: string; isPrivate: boolean; ownerId: string | null; members: string[] }[]> {
    const locked: { id: string }[] = await em.execute(
      'select id from groups where id in (select group_id from group_members where user_id = ?) and id <> ? order by id for update',
      [userId, exceptId],
    );
    if (!locked.length) return [];
    const rows: { id: string; is_private: boolean; owner_id: string | null; members: string[] }[] = await em.execute(
      'select g.id, g.is_private, g.owner_id, array(select m.user_id from group_members m where m.group_id = g.id)::text[] as members from groups g where g.id = any(?::uuid[]) order by g.id',
      [pgArray(locked.map((r) => r.id))],
    );
    return rows.map((r) => ({ id: r.id, isPrivate: r.is_private, ownerId: r.owner_id, members: r.members }));
  },

  /**
   * The user out of `groupIds` (each locked, each keeping other members) in one statement: their
   * memberships and sidebar rows, each group's count, and each group's place for the event that
   * tells it (by id). The sidebar rows are taken in key order (see leaveAllOf).
   */
  async leaveMany(em: EntityManager, userId: string, groupIds: readonly string[]): Promise<Map<string, number>> {
    const sidebar = leaveAllOf(userId, groupIds.map(groupKey));
    const rows: { id: string; event_seq: string }[] = await em.execute(
      `with d as (delete from group_members where user_id = ? and group_id = any(?::uuid[]) returning group_id),
            c as (${sidebar.text})
       update groups g set member_count = g.member_count - 1, event_seq = g.event_seq + 1 from d where g.id = d.group_id returning g.id, g.event_seq`,
      [userId, pgArray(groupIds), ...sidebar.params],
    );
    return new Map(rows.map((r) => [r.id, Number(r.event_seq)]));
  },

  /**
   * Each of `groupIds` handed to its successor (see successor) in one statement, with the place of
   * the event that tells it: group id to the new owner and that place.
   */
  async handOver(em: EntityManager, groupIds: readonly string[], exceptUserId: string): Promise<Map<string, { ownerId: string; pos: number }>> {
    // Each group's first in successor's order, as its own top-1 (a sort of one group's members at a time).
    const rows: { id: string; owner_id: string; event_seq: string }[] = await em.execute(
      `with s as (select o.id, (select user_id from group_members where group_id = o.id and user_id <> ? order by (role = 'ADMIN') desc, joined_at, id limit 1) as user_id
                  from unnest(?::uuid[]) as o(id))
       update groups g set owner_id = s.user_id, event_seq = g.event_seq + 1 from s where g.id = s.id and s.user_id is not null returning g.id, g.owner_id, g.event_seq`,
      [exceptUserId, pgArray(groupIds)],
    );
    return new Map(rows.map((r) => [r.id, { ownerId: r.owner_id, pos: Number(r.event_seq) }]));
  },

  /** The groups of each of many users, in one query (a burst of sockets connecting loads together). */
  async groupIdsOfMany(em: EntityManager, userIds: readonly string[]): Promise<Map<string, string[]>> {
    const rows: { user_id: string; group_id: string }[] = await em.execute('select user_id, group_id from group_members where user_id = any(?::uuid[])', [pgArray([...userIds])]);
    return groupBy(rows, (r) => r.user_id, (r) => r.group_id);
  },

  /** Who takes over from a leaving owner: the longest-standing admin, else the longest-standing member (other than `exceptUserId`). */
  async successor(em: EntityManager, groupId: string, exceptUserId: string): Promise<string | null> {
    const rows: { user_id: string }[] = await em.execute(
      `select user_id from group_members where group_id = ? and user_id <> ? order by (role = 'ADMIN') desc, joined_at, id limit 1`,
      [groupId, exceptUserId],
    );
    return rows[0]?.user_id ?? null;
  },

  /**
   * Holds the group's row until the transaction ends (KEY SHARE): a removal, ban, role change or
   * handover under way (each locks it FOR UPDATE) is waited for, and one after waits in turn, while
   * sends and joins pass. Rights read after it are those the transaction commits with.
   */
  async hold(em: EntityManager, id: string): Promise<void> {
    await em.execute('select 1 from groups where id = ? for key share', [id]);
  },

  /** A member joined the lobby (added uncounted): counted, and the event's place taken, in one update of its row. */
  async joinedLobby(em: EntityManager, id: string): Promise<number> {
    const [row]: { event_seq: string }[] = await em.execute('update groups set member_count = member_count + 1, event_seq = event_seq + 1 where id = ? returning event_seq', [id]);
    return Number(row.event_seq);
  },

  /** The next event's place among the group's (under its row lock: in commit order). */
  async nextEventPosition(em: EntityManager, id: string): Promise<number> {
    const [row]: { event_seq: string }[] = await em.execute('update groups set event_seq = event_seq + 1 where id = ? returning event_seq', [id]);
    return Number(row.event_seq);
  },

  /**
   * Where a user stands in a group, in one query: null when the group does not exist. `role` is
   * their row's (ADMIN or MEMBER; the owner is `ownerId`), null when not a member.
   */
  async standing(em: EntityManager, groupId: string, userId: string): Promise<Standing | null> {
    const rows: StandingRow[] = await em.execute(
      `select g.owner_id, g.is_lobby, g.is_private, m.role, m.slow_sent_at, g.slow_mode_seconds, now() as now,
         exists (select 1 from group_bans b where b.group_id = g.id and b.user_id = ?) as banned,
         exists (select 1 from group_invites i where i.group_id = g.id and i.user_id = ?) as invited
       from groups g left join group_members m on m.group_id = g.id and m.user_id = ? where g.id = ?`,
      [userId, userId, userId, groupId],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      ownerId: r.owner_id,
      isLobby: r.is_lobby,
      isPrivate: r.is_private,
      role: r.role,
      banned: r.banned,
      invited: r.invited,
      slowModeSeconds: r.slow_mode_seconds,
      slowSentAt: r.slow_sent_at ? new Date(r.slow_sent_at) : null,
      now: new Date(r.now),
    };
  },

  /** The user's row role in each of these groups with the group's owner, in one query (groups they are not in: absent). */
  async rolesOf(em: EntityManager, userId: string, groupIds: readonly string[]): Promise<Map<string, { role: MemberRole; ownerId: string | null }>> {
    const rows: { group_id: string; role: MemberRole; owner_id: string | null }[] = await em.execute(
      'select m.group_id, m.role, g.owner_id from group_members m join groups g on g.id = m.group_id where m.user_id = ? and m.group_id = any(?::uuid[])',
      [userId, pgArray([...groupIds])],
    );
    return new Map(rows.map((r) => [r.group_id, { role: r.role, ownerId: r.owner_id }]));
  },

  async setRole(em: EntityManager, groupId: string, userId: string, role: MemberRole): Promise<boolean> {
    const res = await em.execute('update group_members set role = ? where group_id = ? and user_id = ? and role <> ? returning id', [role, groupId, userId, role]);
    return res.length > 0;
  },

  async setOwner(em: EntityManager, groupId: string, userId: string | null): Promise<void> {
    await em.execute('update groups set owner_id = ? where id = ?', [userId, groupId]);
  },

  /**
   * A member who lost an exempt role (an admin made MEMBER) under slow mode: their stamp as their
   * sends would have left it, their newest message of the last `seconds` (among the group's newest
   * SLOW_STAMP_SCAN) sent since slow mode began. An exempt send stamps nothing (only a plain
   * member's does, to cost the others nothing), so one who had just sent as an admin could send
   * again at once.
   */
  async stampSlowMode(em: EntityManager, groupId: string, seconds: number, userId: string): Promise<void> {
    await em.execute(
      `update group_members gm set slow_sent_at = greatest(gm.slow_sent_at, (select max(x.created_at) from (select m.sender_id, m.created_at from messages m
               where m.conversation_key = ? and m.created_at > now() - ? * interval '1 second' and ${SINCE_SLOW_MODE('m', 'g')} order by m.created_at desc limit ${SLOW_STAMP_SCAN}) x
             where x.sender_id = gm.user_id))
        from groups g
       where g.id = gm.group_id and gm.group_id = ? and gm.user_id = ? and gm.role = 'MEMBER'`,
      [groupKey(groupId), seconds, groupId, userId],
    );
  },

  async setSlowMode(em: EntityManager, groupId: string, seconds: number): Promise<boolean> {
    // Its start kept while it lasts (a new interval is not a new spell): what a member sent before it never counts.
    const res: { was: number }[] = await em.execute(
      `update groups g set slow_mode_seconds = ?, slow_mode_since = case when ? = 0 then null when o.was = 0 then now() else g.slow_mode_since end
         from (select slow_mode_seconds as was from groups where id = ? for update) o where g.id = ? and g.slow_mode_seconds <> ? returning o.was`,
      [seconds, seconds, groupId, groupId, seconds],
    );
    // Turned on again, it begins afresh: stamps of an earlier spell count no more.
    if (res.length && res[0].was === 0) await em.execute('update group_members set slow_sent_at = null where group_id = ? and slow_sent_at is not null', [groupId]);
    return res.length > 0;
  },

  /** Every pending invitation of a user (their account is being deleted). */
  async dropInvitesOf(em: EntityManager, userId: string): Promise<void> {
    await em.execute('delete from group_invites where user_id = ?', [userId]);
  },

  /** The pending invitations `inviterId` made to `userId` (a block of the inviter by the invitee). */
  async dropInvitesBetween(em: EntityManager, userId: string, inviterId: string): Promise<void> {
    await em.execute('delete from group_invites where user_id = ? and invited_by = ?', [userId, inviterId]);
  },

  /** Bans a user; false when they were banned already. Their invitation goes. */
  async ban(em: EntityManager, groupId: string, userId: string, byId: string): Promise<boolean> {
    await em.execute('delete from group_invites where group_id = ? and user_id = ?', [groupId, userId]);
    const res = await em.execute('insert into group_bans (group_id, user_id, banned_by, created_at) values (?, ?, ?, now()) on conflict do nothing returning user_id', [groupId, userId, byId]);
    return res.length > 0;
  },

  async unban(em: EntityManager, groupId: string, userId: string): Promise<boolean> {
    const res = await em.execute('delete from group_bans where group_id = ? and user_id = ? returning user_id', [groupId, userId]);
    return res.length > 0;
  },

  /** The banned users, most recently banned first (at most `limit`). */
  async bannedIds(em: EntityManager, groupId: string, limit: number): Promise<string[]> {
    // A deleted account is no one to unban (unbanFromGroup: NOT_FOUND), so it is not listed either.
    const rows: { user_id: string }[] = await em.execute(
      'select b.user_id from group_bans b join users u on u.id = b.user_id and u.deleted_at is null where b.group_id = ? order by b.created_at desc, b.user_id limit ?',
      [groupId, limit],
    );
    return rows.map((r) => r.user_id);
  },

  /** Invites a user; false when an invitation was pending already. */
  async invite(em: EntityManager, groupId: string, userId: string, byId: string): Promise<boolean> {
    const res = await em.execute('insert into group_invites (group_id, user_id, invited_by, created_at) values (?, ?, ?, now()) on conflict do nothing returning user_id', [groupId, userId, byId]);
    return res.length > 0;
  },

  /** Takes a pending invitation away; false when there was none. */
  async uninvite(em: EntityManager, groupId: string, userId: string): Promise<boolean> {
    const res = await em.execute('delete from group_invites where group_id = ? and user_id = ? returning user_id', [groupId, userId]);
    return res.length > 0;
  },

  /** The owner and the admins of a group: who handles its reports. */
  async moderatorIds(em: EntityManager, groupId: string): Promise<string[]> {
    const rows: { user_id: string }[] = await em.execute(
      `select m.user_id from group_members m join groups g on g.id = m.group_id where m.group_id = ? and (m.role = 'ADMIN' or m.user_id = g.owner_id)`,
      [groupId],
    );
    return rows.map((r) => r.user_id);
  },

  /** The groups where a user is owner or admin. */
  async moderatedBy(em: EntityManager, userId: string): Promise<string[]> {
    const rows: { group_id: string }[] = await em.execute(
      `select m.group_id from group_members m join groups g on g.id = m.group_id where m.user_id = ? and (m.role = 'ADMIN' or g.owner_id = m.user_id)`,
      [userId],
    );
    return rows.map((r) => r.group_id);
  },

  /** The lobby's admins as configured (lower-cased usernames): every other lobby member is a MEMBER. */
  async syncLobbyAdmins(em: EntityManager, lobbyId: string, usernames: readonly string[]): Promise<void> {
    await em.execute(
      `update group_members m set role = x.role from (
         select m2.id, case when lower(u.username) = any(?::text[]) then 'ADMIN' else 'MEMBER' end as role
         from group_members m2 join users u on u.id = m2.user_id where m2.group_id = ?) x
       where m.id = x.id and m.role <> x.role`,
      [pgTextArray(usernames), lobbyId],
    );
  },

  /**
   * Inserts a membership and counts it; false when it already existed. The join time in
   * milliseconds, as the members page's cursor carries it: with microseconds, "after" the cursor
   * took in the row it was cut at. `counted: false` leaves the group's member count to the caller
   * (the lobby's: see joinedLobby).
   */
  async addMember(em: EntityManager, groupId: string, userId: string, id: string, role: MemberRole = 'MEMBER', counted = true): Promise<boolean> {
    const conn = em;
    // Slow mode's stamp outlives a membership: one who left (or was removed) and came back within
    // the interval is still under their last message since slow mode began, not free to send at
    // once (the group's messages of the interval only, by the conversation's index).
    const res = await conn.execute(
      `insert into group_members (id, group_id, user_id, joined_at, role, slow_sent_at)
       select ?, g.id, ?, date_trunc('milliseconds', now()), ?,
         (select m.created_at from messages m where g.slow_mode_seconds > 0 and m.conversation_key = ? and m.created_at > now() - g.slow_mode_seconds * interval '1 second'
            and ${SINCE_SLOW_MODE('m', 'g')} and m.sender_id = ? order by m.created_at desc limit 1)
       from groups g where g.id = ?
       on conflict (group_id, user_id) do nothing returning id`,
      [id, userId, role, groupKey(groupId), userId, groupId],
    );
    if (!res.length) return false;
    if (counted) await conn.execute('update groups set member_count = member_count + 1 where id = ?', [groupId]);
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

  /** A page of the groups the viewer may see (public, theirs, or private and inviting them) by (lower(name), id): after `from`, or before it when `backward` (fetched nearest first). */
  async visible(em: EntityManager, viewerId: string, opts: { search: string | null; from: { k: string; id: string } | null; backward: boolean; limit: number }) {
    const where = [`(not g.is_private or ${SEES_PRIVATE})`];
    const params: unknown[] = [viewerId, viewerId];
    if (opts.search) {
      const m = nameMatch('g.name', opts.search);
      where.push(m.sql);
      params.push(m.param);
    }
    const conn = em;
    const [{ count }] = await conn.execute(`select count(*)::int as count from groups g where ${where.join(' and ')}`, params);
    const dir = opts.backward ? 'desc' : 'asc';
    if (opts.from) {
      where.push(`(lower(g.name), g.id) ${opts.backward ? '<' : '>'} (?, ?)`);
      params.push(opts.from.k, opts.from.id);
    }
    // Each row's key as PostgreSQL lowers it, for its cursor: JavaScript's toLowerCase differs on some
    // letters (a final sigma, a dotted İ), and a key lowered there skipped and repeated groups.
    const ids: { id: string; k: string }[] = await conn.execute(
      `select g.id, lower(g.name) as k from groups g where ${where.join(' and ')} order by lower(g.name) ${dir}, g.id ${dir} limit ?`,
      [...params, opts.limit + 1],
    );
    const groups = await em.find(Group, { id: { $in: ids.map((r) => r.id) } });
    const byId = new Map(groups.map((g) => [g.id, g]));
    const keys = new Map(ids.map((r) => [r.id, r.k]));
    return { rows: ids.map((r) => byId.get(r.id)!).filter(Boolean), total: count as number, keyOf: (id: string) => keys.get(id)! };
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

interface StandingRow {
  owner_id: string | null;
  is_lobby: boolean;
  is_private: boolean;
  role: MemberRole | null;
  slow_sent_at: Date | string | null;
  slow_mode_seconds: number;
  now: Date | string;
  banned: boolean;
  invited: boolean;
}

/** See groupRepository.standing. */
export interface Standing {
  ownerId: string | null;
  isLobby: boolean;
  isPrivate: boolean;
  role: MemberRole | null;
  banned: boolean;
  invited: boolean;
  slowModeSeconds: number;
  slowSentAt: Date | null;
  /** The database's clock, for slow mode's arithmetic. */
  now: Date;
}
