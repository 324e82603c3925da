import { Migration } from '@mikro-orm/migrations';
import type { Knex } from '@mikro-orm/postgresql';
import { alone, type PgClient } from './alone';

/** Trigram indexes for the name searches' `ilike '%…%'` (users by username or display name, groups by name). */
const INDEXES: [name: string, table: string, column: string][] = [
  ['users_username_trgm', 'users', 'username'],
  ['users_display_name_trgm', 'users', 'display_name'],
  ['groups_name_trgm', 'groups', 'name'],
];

/**
 * `users(search:)` and `groups(search:)` match anywhere in a name, which no b-tree serves: each
 * call read the whole table twice (its count, its page), ~60 ms a scan at 50,000 users and growing
 * with them (an outside volume probe). pg_trgm's GIN indexes serve `ilike '%…%'` from three
 * characters on. pg_trgm ships with PostgreSQL (contrib) and is trusted from version 13, so the
 * database's owner may create it; where it can't be (no contrib, no right), searches scan as before.
 * Expand only: built concurrently, on a connection of its own with no statement timeout (a large
 * users table takes longer than DB_STATEMENT_TIMEOUT to index), while the previous release serves.
 */
export class Migration20261128000000_NameSearch extends Migration {
  override isTransactional(): boolean {
    return false;
  }

  override async up(): Promise<void> {
    await this.alone(async (db) => {
      try {
        await db.query('create extension if not exists pg_trgm');
      } catch {
        return;
      }
      for (const [name, table, column] of INDEXES) {
        // A build that failed half-way leaves an invalid index of that name, which `if not exists` would keep.
        await db.query(`drop index concurrently if exists "${name}"`);
        await db.query(`create index concurrently "${name}" on "${table}" using gin ("${column}" gin_trgm_ops)`);
      }
    });
  }

  override async down(): Promise<void> {
    await this.alone(async (db) => {
      for (const [name] of INDEXES) await db.query(`drop index concurrently if exists "${name}"`);
    });
  }

  private alone(work: (db: PgClient) => Promise<void>): Promise<void> {
    return alone(this.getKnex() as Knex, work);
  }
}
