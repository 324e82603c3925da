import { Migration } from '@mikro-orm/migrations';

/**
 * Sessions by expiry, for the purge of expired ones (jobs/presence-sweep.job.ts): every login adds
 * a row, and nothing removed those that expired, so the table only grew (a security review).
 */
export class Migration20261127110000_SessionExpiry extends Migration {
  /** Concurrently, outside a transaction: logins and logouts go on while it builds (docs/ARCHITECTURE.md, "Deploys"). */
  override isTransactional(): boolean {
    return false;
  }

  override async up(): Promise<void> {
    // A build that failed half-way leaves an invalid index of that name, which `if not exists` would keep.
    this.addSql(`drop index concurrently if exists "sessions_expires_at_index";`);
    this.addSql(`create index concurrently "sessions_expires_at_index" on "sessions" ("expires_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index concurrently if exists "sessions_expires_at_index";`);
  }
}
