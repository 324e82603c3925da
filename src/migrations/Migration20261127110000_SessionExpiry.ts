import { Migration } from '@mikro-orm/migrations';

/**
 * Sessions by expiry, for the purge of expired ones (jobs/presence-sweep.job.ts): every login adds
 * a row, and nothing removed those that expired, so the table only grew (a security review).
 */
export class Migration20261127110000_SessionExpiry extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create index if not exists "sessions_expires_at_index" on "sessions" ("expires_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index if exists "sessions_expires_at_index";`);
  }
}
