import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray, pgTextArray } from '../../shared/sql';
import type { ReportStatusValue } from './report.entity';

export interface ReportRow {
  id: string;
  message_id: string;
  reporter_id: string;
  group_id: string | null;
  reason: string;
  status: ReportStatusValue;
  created_at: Date;
}

const COLUMNS = 'r.id, r.message_id, r.reporter_id, r.group_id, r.reason, r.status, r.created_at';

export const reportRepository = {
  /** A new report; null when the reporter reported that message before (one per user and message). */
  async insert(em: EntityManager, r: { id: string; messageId: string; reporterId: string; groupId: string | null; reason: string }): Promise<ReportRow | null> {
    const rows: ReportRow[] = await em.execute(
      `insert into reports as r (id, message_id, reporter_id, group_id, reason, status, created_at) values (?, ?, ?, ?, ?, 'OPEN', date_trunc('milliseconds', now()))
       on conflict (message_id, reporter_id) do nothing returning ${COLUMNS}`,
      [r.id, r.messageId, r.reporterId, r.groupId, r.reason],
    );
    return rows[0] ?? null;
  },

  async byId(em: EntityManager, id: string): Promise<ReportRow | null> {
    const rows: ReportRow[] = await em.execute(`select ${COLUMNS} from reports r where r.id = ?`, [id]);
    return rows[0] ?? null;
  },

  async byIds(em: EntityManager, ids: readonly string[]): Promise<ReportRow[]> {
    if (!ids.length) return [];
    return em.execute(`select ${COLUMNS} from reports r where r.id = any(?::uuid[])`, [pgArray([...ids])]);
  },

  /** Marks it handled; false when it was already. */
  async resolve(em: EntityManager, id: string, byId: string): Promise<boolean> {
    const rows = await em.execute(`update reports set status = 'RESOLVED', resolved_at = now(), resolved_by = ? where id = ? and status = 'OPEN' returning id`, [byId, id]);
    return rows.length > 0;
  },

  /**
   * The reports of `status` in the given groups, and (with `ungrouped`) those of direct and
   * project messages, newest first: older than `from`, or with `backward` newer than it (fetched
   * nearest first, oldest of them first).
   */
  async page(
    em: EntityManager,
    opts: { groupIds: readonly string[]; ungrouped: boolean; status: ReportStatusValue; from: { at: Date; id: string } | null; backward: boolean; limit: number },
  ): Promise<ReportRow[]> {
    const scope = `(r.group_id = any(?::uuid[])${opts.ungrouped ? ' or r.group_id is null' : ''})`;
    const params: unknown[] = [pgArray([...opts.groupIds]), opts.status];
    let where = `${scope} and r.status = ?`;
    if (opts.from) {
      where += ` and (r.created_at, r.id) ${opts.backward ? '>' : '<'} (?, ?)`;
      params.push(opts.from.at, opts.from.id);
    }
    const dir = opts.backward ? 'asc' : 'desc';
    return em.execute(`select ${COLUMNS} from reports r where ${where} order by r.created_at ${dir}, r.id ${dir} limit ?`, [...params, opts.limit + 1]);
  },

  async count(em: EntityManager, opts: { groupIds: readonly string[]; ungrouped: boolean; status: ReportStatusValue }): Promise<number> {
    const rows: { n: number }[] = await em.execute(
      `select count(*)::int as n from reports r where (r.group_id = any(?::uuid[])${opts.ungrouped ? ' or r.group_id is null' : ''}) and r.status = ?`,
      [pgArray([...opts.groupIds]), opts.status],
    );
    return rows[0].n;
  },

  /** Which of these users' usernames (lower-cased) are in `usernames`. */
  async usersNamed(em: EntityManager, usernames: readonly string[]): Promise<string[]> {
    if (!usernames.length) return [];
    const rows: { id: string }[] = await em.execute('select id from users where lower(username) = any(?::text[]) and deleted_at is null', [pgTextArray(usernames)]);
    return rows.map((r) => r.id);
  },
};
