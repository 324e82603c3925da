import type { EntityManager } from '@mikro-orm/postgresql';
import { pgArray } from '../../shared/sql';

export type UuidNodeType = 'User' | 'Group' | 'Message' | 'Project' | 'ProjectAction' | 'Report';

/** The query of `node`/`nodes` that tells which type an id names. */
export const nodeRepository = {
  /**
   * The type of each id that names something, in one query (UUIDs are unique across tables). A
   * deleted account and another user's inbox entry name nothing here, as their own queries say.
   */
  async typesOf(em: EntityManager, ids: readonly string[], viewerId: string): Promise<Map<string, UuidNodeType>> {
    if (!ids.length) return new Map();
    const rows: { id: string; type: UuidNodeType }[] = await em.execute(
      `select id::text, 'User' as type from users where id = any(?::uuid[]) and deleted_at is null
       union all select id::text, 'Group' from groups where id = any(?::uuid[])
       union all select id::text, 'Message' from messages where id = any(?::uuid[])
       union all select id::text, 'Project' from projects where id = any(?::uuid[])
       union all select id::text, 'ProjectAction' from project_actions where id = any(?::uuid[]) and recipient_id = ?
       union all select id::text, 'Report' from reports where id = any(?::uuid[])`,
      [...Array.from({ length: 5 }, () => pgArray(ids)), viewerId, pgArray(ids)],
    );
    return new Map(rows.map((r) => [r.id, r.type]));
  },
};
