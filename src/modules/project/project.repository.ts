import type { EntityManager } from '@mikro-orm/postgresql';

export const projectRepository = {
  async projectIdsOf(em: EntityManager, userId: string): Promise<string[]> {
    const rows: { project_id: string }[] = await em.execute('select project_id from project_members where user_id = ?', [userId]);
    return rows.map((r) => r.project_id);
  },
};
