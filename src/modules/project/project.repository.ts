import type { EntityManager } from '@mikro-orm/postgresql';
import type { ProjectActionKind, ProjectRole } from './project.entity';
import type { ProjectMemberShape } from './project.types';
import type { ProjectActionEntryPayload } from '../../shared/pubsub/topics';
import { groupBy, lockNames, pgArray } from '../../shared/sql';
import { conversationRepository, leaveAllOf } from '../conversation/conversation.repository';
import { projectKey } from '../conversation/conversation.keys';

export interface ProjectRow {
  id: string;
  title: string;
  owner_id: string;
  created_at: Date;
}

export interface ActionRow {
  id: string;
  recipient_id: string;
  kind: ProjectActionKind;
  message: string;
  project_id: string;
  project_title: string;
  actor_id: string | null;
  target_id: string | null;
  previous_title: string | null;
  created_at: Date;
}

/** One inbox entry to insert: the published entry's shape (shared/pubsub/topics.ts), typed kind, Date. */
export type NewAction = Omit<ProjectActionEntryPayload, 'kind' | 'createdAt'> & { kind: ProjectActionKind; createdAt: Date };

const ACTION_COLUMNS = 'id, recipient_id, kind, message, project_id, project_title, actor_id, target_id, previous_title, created_at';

export const projectRepository = {
  /**
   * Account deletion: the user's projects, locked in one statement in id order (so two deletions
   * at once wait on each other instead of deadlocking). Their members are read
   * after it, under the locks: one deleted meanwhile is not here, one they left is without them.
   */
  async lockProjectsOf(em: EntityManager, userId: string): Promise<ProjectRow[]> {
    return em.execute(
      'select id, title, owner_id, created_at from projects where id in (select project_id from project_members where user_id = ?) order by id for update',
      [userId],
    );
  },

  /** The projects of each of many users, in one query (a burst of sockets connecting loads together). */
  async projectIdsOfMany(em: EntityManager, userIds: readonly string[]): Promise<Map<string, string[]>> {
    const rows: { user_id: string; project_id: string }[] = await em.execute('select user_id, project_id from project_members where user_id = any(?::uuid[])', [pgArray([...userIds])]);
    return groupBy(rows, (r) => r.user_id, (r) => r.project_id);
  },

  async byId(em: EntityManager, id: string): Promise<ProjectRow | null> {
    const rows: ProjectRow[] = await em.execute('select id, title, owner_id, created_at from projects where id = ?', [id]);
    return rows[0] ?? null;
  },

  /** The project with `userId`'s role in it; null when it does not exist or they are not a member. */
  async membership(em: EntityManager, projectId: string, userId: string): Promise<{ project: ProjectRow; role: ProjectRole } | null> {
    const rows: (ProjectRow & { role: ProjectRole })[] = await em.execute(
      `select p.id, p.title, p.owner_id, p.created_at, m.role from projects p
       join project_members m on m.project_id = p.id and m.user_id = ? where p.id = ?`,
      [userId, projectId],
    );
    if (!rows.length) return null;
    const { role, ...project } = rows[0];
    return { project, role };
  },

  async isMember(em: EntityManager, projectId: string, userId: string): Promise<boolean> {
    const rows = await em.execute('select 1 from project_members where project_id = ? and user_id = ?', [projectId, userId]);
    return rows.length > 0;
  },

  /** Locks the project row for the rest of the transaction, so membership changes to one project run one at a time. */
  async lock(em: EntityManager, id: string): Promise<ProjectRow | null> {
    const rows: ProjectRow[] = await em.execute('select id, title, owner_id, created_at from projects where id = ? for update', [id]);
    return rows[0] ?? null;
  },

  /** Holds the project's row until the transaction ends (KEY SHARE): a change of its members under way (each locks it FOR UPDATE) is waited for, and one after waits in turn. */
  async hold(em: EntityManager, id: string): Promise<void> {
    await em.execute('select 1 from projects where id = ? for key share', [id]);
  },

  /** The viewer's projects, oldest first. */
  /** The user's projects, oldest first; with `ids`, only those of them. */
  async ofUser(em: EntityManager, userId: string, ids?: readonly string[]): Promise<ProjectRow[]> {
    return em.execute(
      `select p.id, p.title, p.owner_id, p.created_at from projects p join project_members m on m.project_id = p.id
       where m.user_id = ?${ids ? ' and p.id = any(?::uuid[])' : ''} order by p.created_at, p.id`,
      ids ? [userId, pgArray(ids)] : [userId],
    );
  },

  /** Members of several projects in one query, longest-standing first. */
  async members(em: EntityManager, projectIds: string[]): Promise<Map<string, ProjectMemberShape[]>> {
    const out = new Map<string, ProjectMemberShape[]>(projectIds.map((id) => [id, []]));
    if (!projectIds.length) return out;
    const rows: { project_id: string; user_id: string; role: ProjectRole; joined_at: Date }[] = await em.execute(
      'select project_id, user_id, role, joined_at from project_members where project_id = any(?::uuid[]) order by joined_at, id',
      [pgArray(projectIds)],
    );
    for (const r of rows) out.get(r.project_id)!.push({ userId: r.user_id, role: r.role, joinedAt: new Date(r.joined_at) });
    return out;
  },

  async insertProject(em: EntityManager, p: { id: string; title: string; ownerId: string }): Promise<void> {
    await em.execute('insert into projects (id, title, owner_id, created_at) values (?, ?, ?, clock_timestamp())', [p.id, p.title, p.ownerId]);
  },

  /** Adds a member; false when they were one already. */
  async addMember(em: EntityManager, m: { id: string; projectId: string; userId: string; role: ProjectRole }): Promise<boolean> {
    const rows = await em.execute(
      `insert into project_members (id, project_id, user_id, role, joined_at) values (?, ?, ?, ?, clock_timestamp())
       on conflict (project_id, user_id) do nothing returning id`,
      [m.id, m.projectId, m.userId, m.role],
    );
    if (rows.length) await conversationRepository.join(em, { key: projectKey(m.projectId), userId: m.userId, kind: 'PROJECT', projectId: m.projectId });
    return rows.length > 0;
  },

  async removeMember(em: EntityManager, projectId: string, userId: string): Promise<void> {
    await em.execute('delete from project_members where project_id = ? and user_id = ?', [projectId, userId]);
    await conversationRepository.leave(em, projectKey(projectId), userId);
  },

  /**
   * removeMember of many projects at once: the members' rows, then the sidebar's, in that order, as
   * a send takes them (its gate's key share, then the members' sort keys). In one statement the
   * sidebar's went first (a data-modifying CTE that nothing reads runs last), and a send of theirs
   * from another session could deadlock with it (a review).
   */
  async removeMemberFromAll(em: EntityManager, projectIds: readonly string[], userId: string): Promise<void> {
    await em.execute('delete from project_members where user_id = ? and project_id = any(?::uuid[])', [userId, pgArray(projectIds)]);
    const rows = leaveAllOf(userId, projectIds.map(projectKey));
    await em.execute(rows.text, rows.params);
  },

  /** Each project (by id) to its heir, in one statement: their role OWNER, and the project's owner. */
  async handOver(em: EntityManager, heirs: ReadonlyMap<string, string>): Promise<void> {
    if (!heirs.size) return;
    await em.execute(
      `with h as (select * from unnest(?::uuid[], ?::uuid[]) as h(project_id, user_id)),
            r as (update project_members m set role = 'OWNER' from h where m.project_id = h.project_id and m.user_id = h.user_id)
       update projects p set owner_id = h.user_id from h where p.id = h.project_id`,
      [pgArray([...heirs.keys()]), pgArray([...heirs.values()])],
    );
  },

  async setRole(em: EntityManager, projectId: string, userId: string, role: ProjectRole): Promise<void> {
    await em.execute('update project_members set role = ? where project_id = ? and user_id = ?', [role, projectId, userId]);
  },

  async setOwner(em: EntityManager, projectId: string, ownerId: string): Promise<void> {
    await em.execute('update projects set owner_id = ? where id = ?', [ownerId, projectId]);
  },

  async rename(em: EntityManager, projectId: string, title: string): Promise<void> {
    await em.execute('update projects set title = ? where id = ?', [title, projectId]);
  },

  /** Deletes the project, its memberships (cascade) and its conversation with the attachments in it. Inbox entries stay. */
  async destroy(em: EntityManager, projectId: string): Promise<void> {
    // The members' rows first, as a send takes them (its gate's key-share lock, then the head's):
    // closing the head first deadlocked with a send that held its sender's row (races.test).
    // In user order (a batch of several senders may take theirs in another: PostgreSQL finds that cycle, and the loser runs again).
    await em.execute('select 1 from project_members where project_id = ? order by user_id for update', [projectId]);
    // Closed then: the sends under way commit before the messages are deleted, and later ones write nothing.
    await conversationRepository.close(em, projectKey(projectId));
    // By its conversation's key (every message of the project's carries it): by project_id, with no index, it read the whole table.
    await conversationRepository.deleteMessages(em, projectKey(projectId));
    await em.execute('delete from projects where id = ?', [projectId]);
  },

  async usernames(em: EntityManager, ids: string[]): Promise<Map<string, string>> {
    const rows: { id: string; username: string }[] = ids.length ? await em.execute('select id, username from users where id = any(?::uuid[])', [pgArray(ids)]) : [];
    return new Map(rows.map((r) => [r.id, r.username]));
  },

  /** The next change's place among the project's (under its row lock: in commit order). */
  async nextActionPosition(em: EntityManager, projectId: string): Promise<number> {
    return (await this.nextActionPositions(em, [projectId])).get(projectId)!;
  },

  /** nextActionPosition of many projects at once, by id. */
  async nextActionPositions(em: EntityManager, projectIds: readonly string[]): Promise<Map<string, number>> {
    const rows: { id: string; action_seq: string }[] = await em.execute('update projects set action_seq = action_seq + 1 where id = any(?::uuid[]) returning id, action_seq', [pgArray(projectIds)]);
    return new Map(rows.map((r) => [r.id, Number(r.action_seq)]));
  },

  /**
   * Each recipient's inbox lock, held to the transaction's end, taken in key order (so no two
   * writers wait on each other): an inbox's entries are stamped and committed one writer at a time.
   */
  async lockInboxes(em: EntityManager, recipientIds: string[]): Promise<void> {
    await lockNames(em, recipientIds.map((id) => `inbox:${id}`));
  },

  /**
   * Inserts the entries, each stamped under its inbox's lock (lockInboxes) after the newest entry
   * of that inbox: an inbox's keys (created_at, id) then grow in commit order, so a reader paging
   * forward with `after` never passes an entry that commits later (stamped before the insert, by
   * this process's clock, one did: 5-7 of 240 in an outside probe's catch-up). Milliseconds, as a
   * cursor holds them. A recipient's several entries (the changes of several projects at once)
   * are a millisecond apart, in the order given. Returns each entry's stamp by id.
   */
  async insertActions(em: EntityManager, actions: Omit<NewAction, 'createdAt'>[]): Promise<Map<string, Date>> {
    if (!actions.length) return new Map();
    await this.lockInboxes(em, actions.map((a) => a.recipientId));
    const values = actions.map(() => '(?::uuid, ?::uuid, ?, ?, ?::uuid, ?, ?::uuid, ?::uuid, ?, ?::int)').join(', ');
    const params = actions.flatMap((a, i) => [a.id, a.recipientId, a.kind, a.message, a.projectId, a.projectTitle, a.actorId, a.targetId, a.previousTitle, i]);
    const rows: { id: string; created_at: Date | string }[] = await em.execute(
      `insert into project_actions (${ACTION_COLUMNS})
       select v.id, v.recipient_id, v.kind::project_action_kind, v.message, v.project_id, v.project_title, v.actor_id, v.target_id, v.previous_title,
              greatest(c.t, (select max(p.created_at) from project_actions p where p.recipient_id = v.recipient_id) + interval '1 millisecond')
                + (row_number() over (partition by v.recipient_id order by v.ord) - 1) * interval '1 millisecond'
         from (values ${values}) v(id, recipient_id, kind, message, project_id, project_title, actor_id, target_id, previous_title, ord),
              (select date_trunc('milliseconds', clock_timestamp()) as t) c
       returning id, created_at`,
      params,
    );
    return new Map(rows.map((r) => [r.id, new Date(r.created_at)]));
  },

  /** One page of a viewer's inbox by keyset on (created_at, id): back from `from` newest first (the page nearest it), or forward after it oldest first. */
  async actions(em: EntityManager, recipientId: string, opts: { projectId: string | null; from: { at: Date; id: string } | null; backward: boolean; limit: number }): Promise<ActionRow[]> {
    const where = ['recipient_id = ?'];
    const params: unknown[] = [recipientId];
    if (opts.projectId) {
      where.push('project_id = ?');
      params.push(opts.projectId);
    }
    const [op, dir] = opts.backward ? ['<', 'desc'] : ['>', 'asc'];
    if (opts.from) {
      where.push(`(created_at, id) ${op} (?, ?)`);
      params.push(opts.from.at, opts.from.id);
    }
    return em.execute(`select ${ACTION_COLUMNS} from project_actions where ${where.join(' and ')} order by created_at ${dir}, id ${dir} limit ?`, [
      ...params,
      opts.limit + 1,
    ]);
  },

  /** The entries among `ids` addressed to `recipientId` (`node`/`nodes`: no one else's). */
  async actionsByIds(em: EntityManager, ids: readonly string[], recipientId: string): Promise<ActionRow[]> {
    return ids.length ? em.execute(`select ${ACTION_COLUMNS} from project_actions where id = any(?::uuid[]) and recipient_id = ?`, [pgArray(ids), recipientId]) : [];
  },

  async countActions(em: EntityManager, recipientId: string, projectId: string | null): Promise<number> {
    const [row]: { n: number }[] = projectId
      ? await em.execute('select count(*)::int as n from project_actions where recipient_id = ? and project_id = ?', [recipientId, projectId])
      : await em.execute('select count(*)::int as n from project_actions where recipient_id = ?', [recipientId]);
    return row.n;
  },

  async deleteInbox(em: EntityManager, recipientId: string): Promise<void> {
    await em.execute('delete from project_actions where recipient_id = ?', [recipientId]);
  },
};
