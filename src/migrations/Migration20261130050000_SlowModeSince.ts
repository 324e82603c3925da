import { Migration } from '@mikro-orm/migrations';

/**
 * When a group's slow mode began (null while it is off): a member's stamp, rebuilt from their
 * messages when they come back, are re-added or lose an exempt role, counts only what they sent
 * since. Expand only: the previous release leaves it null, read as "any time" (as before).
 */
export class Migration20261130050000_SlowModeSince extends Migration {
  override async up(): Promise<void> {
    this.addSql('alter table "groups" add column if not exists "slow_mode_since" timestamptz null;');
  }

  override async down(): Promise<void> {
    this.addSql('alter table "groups" drop column if exists "slow_mode_since";');
  }
}
