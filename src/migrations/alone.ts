import type { Knex } from '@mikro-orm/postgresql';

export interface PgClient {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>;
}

/**
 * Runs `work` on a pooled connection of its own, without the statement timeout, which it gets back
 * after: an index built concurrently can't run in a transaction, and on a large table takes longer
 * than DB_STATEMENT_TIMEOUT (a migration that returns false from isTransactional).
 */
export async function alone(knex: Knex, work: (db: PgClient) => Promise<void>): Promise<void> {
  const db = (await knex.client.acquireConnection()) as PgClient;
  try {
    await db.query('set statement_timeout = 0');
    await work(db);
  } finally {
    await db.query('reset statement_timeout').catch(() => undefined);
    await knex.client.releaseConnection(db);
  }
}
