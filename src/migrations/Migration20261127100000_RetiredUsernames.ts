import { Migration } from '@mikro-orm/migrations';

/**
 * Names LOBBY_ADMINS or MODERATORS gave rights to, given up by their holder (a rename away, the
 * account deleted): never taken again, so those rights don't pass to whoever signs up first under
 * the freed name (a security review). Lower-cased, as names compare.
 */
export class Migration20261127100000_RetiredUsernames extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table if not exists "retired_usernames" ("username" text primary key, "retired_at" timestamptz not null default now());`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "retired_usernames";`);
  }
}
