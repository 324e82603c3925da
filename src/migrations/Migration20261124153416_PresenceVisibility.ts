import { Migration } from '@mikro-orm/migrations';

/**
 * Each user's presence visibility (VISIBLE or HIDDEN). Expand only: a column with a default, which
 * the previous release ignores; an index on the few HIDDEN users, read at start-up to mirror them in
 * the presence store.
 */
export class Migration20261124153416_PresenceVisibility extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "users" add column "presence_visibility" varchar(8) not null default 'VISIBLE';`);
    this.addSql(`alter table "users" add constraint "users_presence_visibility_check" check ("presence_visibility" in ('VISIBLE', 'HIDDEN'));`);
    this.addSql(`create index "users_presence_hidden" on "users" ("id") where "presence_visibility" = 'HIDDEN';`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index if exists "users_presence_hidden";`);
    this.addSql(`alter table "users" drop constraint if exists "users_presence_visibility_check";`);
    this.addSql(`alter table "users" drop column if exists "presence_visibility";`);
  }
}
